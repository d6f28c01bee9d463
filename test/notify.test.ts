import { Router } from '../src/router/router.js';
import { RabbitNode } from './support/rabbit.js';
import { notifySuite } from './support/notify-cases.js';

// The same notification cases on all three drivers.
let memoryBrokers = 0;
notifySuite('notifications on the memory driver', async () => ({
  url: `memory://notify-${++memoryBrokers}`, pools: true, stop: async () => {},
})).run();

notifySuite('notifications over RabbitMQ', async () => {
  const node = await RabbitNode.shared();
  const vhost = await node.addVhost(`notify-${process.pid}`);
  return { url: node.url(vhost), pools: true, stop: async () => { await node.deleteVhost(vhost); await node.release(); } };
}).run();

notifySuite('notifications over the embedded AMQP 1.0 router', async () => {
  const router = new Router({ port: 0 });
  const port = await router.start();
  return { url: `amqp://127.0.0.1:${port}/`, pools: false, stop: () => router.stop() };
}).run();
