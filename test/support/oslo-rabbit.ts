import { suite, type Test } from 'uvu';
import { RabbitNode } from '../../scripts/rabbit-node.js';
import { defaultConfig, getTransport, type Transport } from '../../src/index.js';
import type { Broker, InteropFlavor } from './interop.js';
import { type OsloFlavor, OsloPeer } from './oslo.js';
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

/** The context of a {@link pythonServerSuite}: its broker, the Python server, the transports made. */
export interface PythonServerCtx {
  broker: Broker;
  py: OsloPeer;
  transports: Transport[];
}

/**
 * A suite with one oslo.messaging server (topic `topic`, server `p1`) of `oslo`'s flavor on a
 * vhost of its own, for cases where hermod is configured unlike it; `transport` makes a hermod
 * transport there with `overrides`, closed after the suite.
 */
export function pythonServerSuite(
  title: string,
  tag: string,
  topic: string,
  oslo: OsloFlavor | undefined,
): { t: Test<PythonServerCtx>; transport: (ctx: PythonServerCtx, overrides: Record<string, unknown>) => Promise<Transport> } {
  const t = suite<PythonServerCtx>(title, {} as PythonServerCtx);
  t.before(async (ctx) => {
    ctx.broker = await rabbitBroker(tag);
    ctx.transports = [];
    try {
      ctx.py = await OsloPeer.start('server', { url: ctx.broker.url, topic, server: 'p1' }, oslo);
    } catch (err) {
      // uvu marks every case failed when a hook throws but does not print why.
      console.error(`${title}: setup failed:`, err);
      throw err;
    }
  });
  t.after(async (ctx) => {
    await ctx.py?.kill();
    for (const tr of ctx.transports ?? []) await tr.close();
    await ctx.broker?.stop();
  });
  const transport = async (ctx: PythonServerCtx, overrides: Record<string, unknown>) => {
    const tr = await getTransport(ctx.broker.url, { config: defaultConfig(), overrides });
    ctx.transports.push(tr);
    return tr;
  };
  return { t, transport };
}
