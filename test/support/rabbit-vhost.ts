import { RabbitNode } from '../../scripts/rabbit-node.js';

/**
 * The set-up the shared case suites take on RabbitMQ: a vhost of its own on the run's shared
 * node (named after the suite and the process, so two lines or two files never meet), the
 * suite's extra options, and a stop that deletes the vhost and lets go of the node.
 */
export function sharedVhost<T extends object>(name: string, extra?: T, query = '') {
  return async () => {
    const node = await RabbitNode.shared();
    const vhost = await node.addVhost(`${name}-${process.pid}`);
    return {
      ...(extra as T),
      url: `${node.url(vhost)}${query}`,
      stop: async () => {
        await node.deleteVhost(vhost);
        await node.release();
      },
    };
  };
}
