import { Router } from '../../src/router/router.js';
import { jobsSuite } from '../support/jobs-cases.js';

// The long-operation cases every driver passes, through one embedded router.
jobsSuite('jobs over amqp1 via the embedded router', async () => {
  const router = new Router({ port: 0 });
  const port = await router.start();
  return { url: `amqp://127.0.0.1:${port}/`, stop: () => router.stop() };
}).run();
