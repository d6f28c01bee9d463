import * as assert from 'uvu/assert';
import { ConfigError, RPCServer, Target } from '../../src/index.js';
import { Recorder } from '../support/endpoints.js';
import { type InteropFlavor, interopSuite } from '../support/interop.js';
import { pythonServerSuite, rabbitBroker } from '../support/oslo-rabbit.js';

// oslo.messaging 18.1.0 with quorum queues bounded in memory (rabbit_quorum_max_memory_length
// and _bytes, which put x-max-in-memory-* on every quorum queue) and kombu_compression = gzip
// (every message it sends is zlib-compressed, named in a `compression` header): hermod with the
// matching quorum options joins it, reading the compressed requests, replies and notifications.
// Before, hermod could not declare those arguments at all, and took each compressed message for
// invalid JSON (a hermod caller of a compressing Python server waited out its timeout).

const flavor: InteropFlavor = {
  oslo: {
    version: '18',
    rabbit: {
      rabbit_quorum_queue: true,
      rabbit_transient_quorum_queue: true,
      rabbit_quorum_delivery_limit: 5,
      rabbit_quorum_max_memory_length: 1000,
      rabbit_quorum_max_memory_bytes: 8_000_000,
      kombu_compression: 'gzip',
    },
  },
  hermod: {
    'rabbit.quorumQueues': true,
    'rabbit.transientQuorumQueues': true,
    'rabbit.quorumDeliveryLimit': 5,
    'rabbit.quorumMaxMemoryLength': 1000,
    'rabbit.quorumMaxMemoryBytes': 8_000_000,
  },
  rabbit: true,
};
interopSuite(
  'interop rabbit: oslo.messaging 18.1.0, quorum queues bounded in memory, kombu_compression gzip',
  () => rabbitBroker('o18q'),
  flavor,
).run();

const { t, transport } = pythonServerSuite(
  'interop rabbit: hermod without the quorum memory bounds of an oslo 18 deployment',
  'o18qx',
  'qm',
  flavor.oslo,
);

t('a hermod server on the topic fails at once with a ConfigError naming rabbit.quorumMaxMemoryLength', async (ctx) => {
  const { 'rabbit.quorumMaxMemoryLength': _l, 'rabbit.quorumMaxMemoryBytes': _b, ...rest } = flavor.hermod!;
  const s = new RPCServer(await transport(ctx, rest), new Target({ topic: 'qm', server: 'h1' }), [new Recorder('h1')]);
  try {
    await s.start();
  } catch (err) {
    assert.instance(err, ConfigError, String(err));
    assert.is((err as ConfigError).key, 'rabbit.quorumMaxMemoryLength');
    // Before, the hint named rabbit.quorumQueues, which was already set.
    assert.match((err as Error).message, /x-max-in-memory-length=1000 .*rabbit_quorum_max_memory_length/);
    return;
  } finally {
    await s.stop().catch(() => undefined);
  }
  assert.unreachable('the server started');
});

t.run();
