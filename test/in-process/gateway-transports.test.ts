import { Router } from '../../src/router/router.js';
import { gatewaySuite } from './gateway-cases.js';

// The gateway's shared cases on the memory driver and through the embedded router (real AMQP 1.0 sockets).
gatewaySuite('gateway over memory: shared cases', async () => ({ url: 'memory://', stop: async () => {} })).run();

gatewaySuite('gateway over amqp1 via the embedded router: shared cases', async () => {
  const router = new Router({ port: 0 });
  const port = await router.start();
  return { url: `amqp://127.0.0.1:${port}/`, stop: () => router.stop() };
}).run();
