import { Router } from '../../src/router/router.js';
import { interopSuite } from '../support/interop.js';

// python3-oslo.messaging's amqp1 driver (pyngus + python3-qpid-proton) through hermod's router:
// a peer we did not write on both sides of hermod's AMQP 1.0 driver and of the router.
interopSuite('interop amqp1: python3-oslo.messaging through the embedded router', async () => {
  const router = new Router({ port: 0 });
  const port = await router.start();
  return { url: `amqp://127.0.0.1:${port}/`, stop: () => router.stop() };
}).run();
