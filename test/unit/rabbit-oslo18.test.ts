import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError } from '../../src/core/errors.js';
import { explainDeclareError } from '../../src/driver/rabbit/declare-errors.js';
import { QueueManager } from '../../src/driver/rabbit/queue-manager.js';
import { Topology } from '../../src/driver/rabbit/topology.js';
import { defaultConfig, getTransport } from '../../src/index.js';
import { until } from '../support/assert.js';

// The flags oslo.messaging 18's rabbit driver derives from its RabbitMQ 4-era options
// (impl_rabbit.py: _get_queue_arguments, declare_direct/fanout_consumer, fanout_send).

const t = suite('rabbit oslo 18 options');
type R = ReturnType<typeof defaultConfig>['rabbit'];
const topology = (over: Partial<R> = {}) => new Topology({ ...defaultConfig().rabbit, ...over });
const proc = `unit-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

t('transient quorum queues: reply and fanout queues durable quorum with x-expires, the fanout exchange durable and auto-delete', () => {
  const tq = topology({ transientQuorumQueues: true, quorumDeliveryLimit: 3 });
  assert.equal(tq.transientQueue(), {
    durable: true,
    autoDelete: false,
    arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 3, 'x-expires': 1_800_000 },
  });
  assert.equal(tq.fanoutExchangeOptions(), { durable: true, autoDelete: true });
  assert.equal(tq.sharedQueue(), { durable: false, autoDelete: false, arguments: {} }, 'topic queues follow quorumQueues only');
  const [, , fanout] = tq.serverBindings('openstack', 'c', 's');
  assert.match(fanout!.queue, /^c_fanout_[0-9a-f]{32}$/);
  assert.equal(fanout!.options, tq.transientQueue());
  assert.ok(fanout!.deleteOnStop);
  assert.equal(topology().fanoutExchangeOptions(), { durable: false, autoDelete: true });
  assert.equal(topology({ transientQueuesTtl: 0 }).transientQueue().arguments, {}, 'ttl 0: no x-expires');
});

t('stream fanout: one shared <topic>_fanout stream with x-max-age in seconds, never deleted by a server', () => {
  const s = topology({ transientQuorumQueues: true, streamFanout: true, transientQueuesTtl: 600_000, haQueues: false });
  const [, , fanout] = s.serverBindings('openstack', 'compute', 'h1');
  assert.equal(fanout!.queue, 'compute_fanout');
  assert.equal(fanout!.exchange, { name: 'compute_fanout', type: 'fanout' });
  assert.equal(fanout!.options, { durable: true, autoDelete: false, arguments: { 'x-queue-type': 'stream', 'x-max-age': '600s' } });
  assert.ok(fanout!.stream);
  assert.not.ok(fanout!.deleteOnStop);
  assert.equal(topology({ transientQuorumQueues: true, streamFanout: true, transientQueuesTtl: 0 }).streamQueue().arguments, {
    'x-queue-type': 'stream',
  });
});

t('combinations oslo refuses are a ConfigError naming the option', () => {
  const refused = (over: Partial<R>, key: string, re: RegExp) => {
    try {
      topology(over);
    } catch (err) {
      assert.instance(err, ConfigError);
      assert.is((err as ConfigError).key, key);
      assert.match((err as Error).message, re);
      return;
    }
    assert.unreachable(`accepted ${JSON.stringify(over)}`);
  };
  refused({ streamFanout: true }, 'rabbit.streamFanout', /needs rabbit.transientQuorumQueues/);
  refused({ quorumQueues: true, haQueues: true }, 'rabbit.quorumQueues', /quorum or HA/);
  refused({ transientQuorumQueues: true, haQueues: true }, 'rabbit.transientQuorumQueues', /quorum or HA/);
});

t('getTransport refuses stream fanout without transient quorum queues before it connects', async () => {
  try {
    await getTransport('rabbit://guest:guest@127.0.0.1:1/', { config: defaultConfig(), overrides: { 'rabbit.streamFanout': true } });
  } catch (err) {
    assert.is((err as ConfigError).code, 'HERMOD_ERR_CONFIG');
    return;
  }
  assert.unreachable('accepted');
});

t('queue manager: <host>:<process>:<n>, counted across the processes of one group, again from 1 in another group', () => {
  const qm = new QueueManager('node1', proc);
  const file = `/dev/shm/hermod_node1_${proc}_qmanager`;
  try {
    assert.is(qm.get(), `node1:${proc}:1`);
    assert.is(qm.get(), `node1:${proc}:2`);
    const q = topology({ queueManager: true, hostname: 'node1', processName: proc });
    assert.is(q.replyQueueName(), `reply_node1:${proc}:3`);
    const [, , fanout] = q.serverBindings('openstack', 'compute', 'h1');
    assert.is(fanout!.queue, `compute_fanout_node1:${proc}:4`);
    assert.not.ok(fanout!.deleteOnStop, 'a stable fanout queue is left to expire, as oslo leaves it');
    if (!existsSync('/dev/shm')) return;
    // A process in a group of its own restarts the count, and a child in its group continues it.
    // (Run under setsid, each in a group of its own: the test's own group holds the runner's
    // other processes, which may count too.)
    const mod = new URL('../../src/driver/rabbit/queue-manager.js', import.meta.url).href;
    const script = `import('${mod}').then((m) => process.stdout.write(new m.QueueManager('node1', '${proc}').get()))`;
    const leader = `import('${mod}').then((m) => { process.stdout.write(new m.QueueManager('node1', '${proc}').get() + ' '); process.stdout.write(require('node:child_process').execFileSync(process.execPath, ['-e', ${JSON.stringify(script)}], { encoding: 'utf8' })); })`;
    assert.is(execFileSync('setsid', [process.execPath, '-e', leader], { encoding: 'utf8' }), `node1:${proc}:1 node1:${proc}:2`);
    assert.is(execFileSync('setsid', [process.execPath, '-e', script], { encoding: 'utf8' }), `node1:${proc}:1`);
    assert.match(readFileSync(file, 'utf8'), /^\d+:1:\d+$/);
  } finally {
    rmSync(file, { force: true });
  }
});

t("queue manager: a fanout queue name past RabbitMQ's 255 bytes is refused with InvalidTarget before anything is declared", () => {
  const longProc = `${proc}-${'p'.repeat(150)}`;
  const file = `/dev/shm/hermod_node3_${longProc}_qmanager`;
  try {
    const q = topology({ queueManager: true, hostname: 'node3', processName: longProc });
    const topic = 't'.repeat(255 - '_fanout_node3:'.length - longProc.length - ':1'.length);
    assert.is(Buffer.byteLength(q.serverBindings('openstack', topic, 'h1')[2]!.queue), 255);
    try {
      q.serverBindings('openstack', `${topic}xx`, 'h1');
      assert.unreachable('accepted');
    } catch (err) {
      assert.is((err as { code?: string }).code, 'HERMOD_ERR_INVALID_TARGET');
      assert.match((err as Error).message, /longer than the 255 bytes RabbitMQ carries: shorten the topic, or rabbit\.hostname/);
    }
  } finally {
    rmSync(file, { force: true });
  }
});

t('queue manager: the members of a group whose leader exited still count together', async () => {
  if (!existsSync('/proc/self/stat') || !existsSync('/dev/shm')) return;
  const file = `/dev/shm/hermod_node2_${proc}_qmanager`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hermod-qm-'));
  try {
    // A service started in the background by a shell that then ends: the group leader (here a
    // node process under setsid) takes a name while it lives (its start time in the file), forks
    // two workers and exits; they take their names after (start 0), as a respawned worker would.
    const mod = new URL('../../src/driver/rabbit/queue-manager.js', import.meta.url).href;
    const take = (out: string) =>
      `import('${mod}').then((m) => require('node:fs').writeFileSync(${JSON.stringify(out)}, new m.QueueManager('node2', '${proc}').get()))`;
    const first = path.join(dir, 'leader');
    const outs = [path.join(dir, 'a'), path.join(dir, 'b')];
    const spawns = outs
      .map(
        (o) =>
          `require('node:child_process').spawn(process.execPath, ['-e', ${JSON.stringify(`setTimeout(() => ${take(o)}, 400)`)}], { stdio: 'ignore' }).unref();`,
      )
      .join('');
    execFileSync('setsid', [process.execPath, '-e', `${take(first)}.then(() => { ${spawns} })`]);
    await until(() => outs.every((o) => existsSync(o) && readFileSync(o, 'utf8') !== ''), 'both workers named', 10_000);
    const names = [first, ...outs].map((o) => readFileSync(o, 'utf8')).sort();
    assert.equal(names, [`node2:${proc}:1`, `node2:${proc}:2`, `node2:${proc}:3`], 'three names, none given twice');
  } finally {
    rmSync(file, { force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});

t('a PRECONDITION_FAILED on a declare names the option that probably differs', () => {
  const refusal = (what: string) =>
    Object.assign(
      new Error(`Channel closed by server: 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - inequivalent arg ${what}"`),
      { code: 406 },
    );
  let e = explainDeclareError(
    refusal("'durable' for exchange 'compute_fanout' in vhost 'v': received 'false' but current is 'true'"),
  ) as ConfigError;
  assert.instance(e, ConfigError);
  assert.is(e.key, 'rabbit.transientQuorumQueues');
  assert.match(e.message, /exchange 'compute_fanout' exists with durable=true \(hermod declared false\).*rabbit_transient_quorum_queue/);
  e = explainDeclareError(
    refusal("'x-queue-type' for queue 'compute_fanout' in vhost 'v': received none but current is the value 'stream' of type 'longstr'"),
  ) as ConfigError;
  assert.is(e.key, 'rabbit.streamFanout');
  e = explainDeclareError(
    refusal("'x-queue-type' for queue 'compute' in vhost 'v': received none but current is the value 'quorum' of type 'longstr'"),
  ) as ConfigError;
  assert.is(e.key, 'rabbit.quorumQueues');
  assert.match(e.message, /^queue 'compute' exists with x-queue-type=quorum \(hermod declared none\): /);
  e = explainDeclareError(
    refusal(
      "'x-delivery-limit' for queue 'compute' in vhost 'v': received the value '5' of type 'long' but current is the value '3' of type 'long'",
    ),
  ) as ConfigError;
  assert.match(e.message, /^queue 'compute' exists with x-delivery-limit=3 \(hermod declared 5\): /);
  e = explainDeclareError(refusal("'durable' for queue 'reply_abc' in vhost 'v': received 'false' but current is 'true'")) as ConfigError;
  assert.is(e.key, 'rabbit.transientQuorumQueues');
  // From an interop review: the stream's TTL, a topic named *_fanout and a topic with _fanout_ in
  // its name were all said to be rabbit.streamFanout or a transient queue's.
  e = explainDeclareError(
    refusal(
      "'x-max-age' for queue 'sa_fanout' in vhost 'v': received the value '1800s' of type 'longstr' but current is the value '600s' of type 'longstr'",
    ),
  ) as ConfigError;
  assert.is(e.key, 'rabbit.transientQueuesTtl');
  e = explainDeclareError(
    refusal("'x-queue-type' for queue 'jobs_fanout' in vhost 'v': received none but current is the value 'quorum' of type 'longstr'"),
  ) as ConfigError;
  assert.is(e.key, 'rabbit.quorumQueues');
  e = explainDeclareError(
    refusal("'x-queue-type' for queue 'a_fanout_b' in vhost 'v': received none but current is the value 'quorum' of type 'longstr'"),
  ) as ConfigError;
  assert.is(e.key, 'rabbit.quorumQueues');
  e = explainDeclareError(
    refusal(`'durable' for queue 'a_fanout_${'0'.repeat(32)}' in vhost 'v': received 'false' but current is 'true'`),
  ) as ConfigError;
  assert.is(e.key, 'rabbit.transientQuorumQueues');
  const other = new Error('Channel closed by server: 404 (NOT-FOUND)');
  assert.is(explainDeclareError(other), other, 'anything else is left alone');
});

t.run();
