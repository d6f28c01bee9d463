import { Router } from '../../src/router/router.js';
import { contractSuite } from '../support/contract-cases.js';

// The contract cases every driver passes, through one embedded router.
contractSuite('contracts over amqp1 via the embedded router', async () => {
  const router = new Router({ port: 0 });
  const port = await router.start();
  return { url: `amqp://127.0.0.1:${port}/`, unservedTimeout: () => /nobody is serving it/, stop: () => router.stop() };
}).run();
