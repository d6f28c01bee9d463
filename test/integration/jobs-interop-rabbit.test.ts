import { RabbitNode } from '../../scripts/rabbit-node.js';
import { jobsInteropSuite } from '../support/jobs-interop.js';

// A python3-oslo.messaging client (kombu) following hermod jobs on one real RabbitMQ node.
jobsInteropSuite('jobs interop rabbit: python3-oslo.messaging client', async () => {
  const node = await RabbitNode.shared();
  const vhost = await node.addVhost(`jobs-interop-${process.pid}`);
  return {
    url: node.url(vhost),
    stop: async () => {
      await node.deleteVhost(vhost);
      await node.release();
    },
  };
}).run();
