import { RabbitNode } from '../../scripts/rabbit-node.js';
import { interopSuite } from '../support/interop.js';

// python3-oslo.messaging's rabbit driver (kombu) and hermod's RabbitMQ driver on one real
// RabbitMQ node, in a vhost of their own.
interopSuite('interop rabbit: python3-oslo.messaging on RabbitMQ', async () => {
  const node = await RabbitNode.shared();
  const vhost = await node.addVhost(`interop-${process.pid}`);
  return {
    url: node.url(vhost),
    stop: async () => {
      await node.deleteVhost(vhost);
      await node.release();
    },
  };
}).run();
