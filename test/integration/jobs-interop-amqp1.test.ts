import { Router } from '../../src/router/router.js';
import { jobsInteropSuite } from '../support/jobs-interop.js';

// A python3-oslo.messaging client (amqp1 driver) following hermod jobs through the embedded router.
jobsInteropSuite('jobs interop amqp1: python3-oslo.messaging client through the embedded router', async () => {
  const router = new Router({ port: 0 });
  const port = await router.start();
  return { url: `amqp://127.0.0.1:${port}/`, stop: () => router.stop() };
}).run();
