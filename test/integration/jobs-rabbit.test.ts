import { RabbitNode } from '../../scripts/rabbit-node.js';
import { jobsSuite } from '../support/jobs-cases.js';

// The long-operation cases every driver passes, in a vhost of their own.
jobsSuite('jobs over RabbitMQ', async () => {
  const node = await RabbitNode.shared();
  const vhost = await node.addVhost(`jobs-cases-${process.pid}`);
  return {
    url: node.url(vhost),
    stop: async () => {
      await node.deleteVhost(vhost);
      await node.release();
    },
  };
}).run();
