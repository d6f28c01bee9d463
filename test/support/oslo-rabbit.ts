import { RabbitNode } from '../../scripts/rabbit-node.js';
import type { Broker, InteropFlavor } from './interop.js';
import { removeQueueManagerFilesAtExit } from './scratch.js';

/** A vhost of its own on the run's RabbitMQ node, for one interop suite. */
export async function rabbitBroker(tag: string): Promise<Broker> {
  const node = await RabbitNode.shared();
  const vhost = await node.addVhost(`interop-${tag}-${process.pid}`);
  return {
    url: node.url(vhost),
    rabbit: { node, vhost },
    stop: async () => {
      await node.deleteVhost(vhost);
      await node.release();
    },
  };
}

/** A name no other run shares: the queue manager's counter file is per host and process name. */
const unique = (who: string) => {
  const name = `${who}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  removeQueueManagerFilesAtExit(name);
  return name;
};

/**
 * The RabbitMQ 4-era settings of a current OpenStack deployment on oslo.messaging 18, and
 * hermod's matching options (README "Joining a deployment on RabbitMQ 4-era settings").
 */
export function modernFlavor(): InteropFlavor {
  return {
    oslo: {
      version: '18',
      rabbit: {
        rabbit_quorum_queue: true,
        rabbit_transient_quorum_queue: true,
        rabbit_stream_fanout: true,
        rabbit_qos_prefetch_count: 64,
        use_queue_manager: true,
        processname: unique('oslo'),
      },
    },
    hermod: {
      'rabbit.quorumQueues': true,
      'rabbit.transientQuorumQueues': true,
      'rabbit.streamFanout': true,
      'rabbit.queueManager': true,
      'rabbit.processName': unique('hermod'),
    },
    rabbit: true,
  };
}
