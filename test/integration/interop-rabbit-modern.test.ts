import * as assert from 'uvu/assert';
import { ConfigError, RPCClient, RPCServer, Target } from '../../src/index.js';
import { Recorder } from '../support/endpoints.js';
import { interopSuite } from '../support/interop.js';
import { modernFlavor, pythonServerSuite, rabbitBroker } from '../support/oslo-rabbit.js';

// oslo.messaging 18.1.0 with the RabbitMQ 4-era options (quorum queues, transient quorum
// queues, stream fanout, queue manager) and hermod configured to match; then hermod configured
// otherwise, which must fail at once with a ConfigError naming the option.

const flavor = modernFlavor();
interopSuite('interop rabbit: oslo.messaging 18.1.0, RabbitMQ 4-era options', () => rabbitBroker('o18m'), flavor).run();

const { t, transport } = pythonServerSuite(
  'interop rabbit: hermod configured unlike an oslo 18 deployment on RabbitMQ 4-era options',
  'o18x',
  'mm',
  flavor.oslo,
);
async function configError(p: Promise<unknown>): Promise<ConfigError> {
  const t0 = Date.now();
  try {
    await p;
  } catch (err) {
    assert.instance(err, ConfigError, String(err));
    assert.ok(Date.now() - t0 < 5000, 'refused at once, not retried');
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

t('without transientQuorumQueues a hermod server on the topic fails at once, naming the option', async (ctx) => {
  const tr = await transport(ctx, { 'rabbit.quorumQueues': true });
  const s = new RPCServer(tr, new Target({ topic: 'mm', server: 'h1' }), [new Recorder('h1')]);
  const e = await configError(s.start());
  assert.is(e.key, 'rabbit.transientQuorumQueues');
  assert.match(e.message, /exchange 'mm_fanout' exists with durable=true .*rabbit_transient_quorum_queue/);
  // A fanout cast declares the same exchange: the same error.
  const c = new RPCClient(tr, new Target({ topic: 'mm', fanout: true }), { timeout: 5000 });
  const e2 = await configError(c.cast({}, 'bump', { seq: 1 }));
  assert.is(e2.key, 'rabbit.transientQuorumQueues');
  // Configured to match, the same transport settings work.
  const ok = new RPCClient(await transport(ctx, flavor.hermod!), new Target({ topic: 'mm', fanout: true }), { timeout: 5000 });
  await ok.cast({}, 'bump', { seq: 2 });
  await ctx.py.waitFor((e) => e.event === 'bump' && e.seq === 2, 5000, 'the matching fanout');
});

t('with default options a hermod client cannot publish to the durable control exchange, and says which option', async (ctx) => {
  const c = new RPCClient(await transport(ctx, {}), new Target({ topic: 'mm' }), { timeout: 5000 });
  const e = await configError(c.cast({}, 'bump', { seq: 3 }));
  assert.is(e.key, 'rabbit.durableQueues');
  assert.match(e.message, /exchange 'openstack' exists with durable=true .*rabbit.quorumQueues/);
});

t.run();
