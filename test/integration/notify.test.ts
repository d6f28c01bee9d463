import diagnostics_channel from 'node:diagnostics_channel';
import amqplib from 'amqplib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RabbitNode } from '../../scripts/rabbit-node.js';
import {
  type BatchedNotification,
  type DuplicateMessageEvent,
  defaultConfig,
  getTransport,
  type InvalidMessageEvent,
  NotificationListener,
  Notifier,
  Target,
  type Transport,
} from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { sleep, until } from '../support/assert.js';
import { runCli, startCli } from '../support/cli-procs.js';
import { Collector, notifySuite } from '../support/notify-cases.js';
import { sharedVhost } from '../support/rabbit-vhost.js';

// The same notification cases on all three drivers.
let memoryBrokers = 0;
notifySuite('notifications on the memory driver', async () => ({
  url: `memory://notify-${++memoryBrokers}`,
  pools: true,
  stop: async () => {},
})).run();

notifySuite(
  'notifications over RabbitMQ',
  sharedVhost('notify', {
    pools: true,
  }),
).run();

notifySuite('notifications over the embedded AMQP 1.0 router', async () => {
  const router = new Router({ port: 0 });
  const port = await router.start();
  return { url: `amqp://127.0.0.1:${port}/`, pools: false, stop: () => router.stop() };
}).run();

// Malformed notifications straight onto the queue a hermod listener consumes.

/** Runs `fn` in a vhost of its own on the run's RabbitMQ node, with a transport and a raw amqplib connection there; all gone after. */
async function inVhost(
  tag: string,
  fn: (env: { node: RabbitNode; vhost: string; url: string; tr: Transport; raw: amqplib.ChannelModel }) => Promise<void>,
): Promise<void> {
  const node = await RabbitNode.shared();
  const vhost = await node.addVhost(`notify-${tag}-${process.pid}`);
  const url = node.url(vhost);
  const tr = await getTransport(url, { config: defaultConfig() });
  const raw = await amqplib.connect(`amqp://guest:guest@127.0.0.1:${node.port}/${vhost}`);
  try {
    await fn({ node, vhost, url, tr, raw });
  } finally {
    await raw.close();
    await tr.close();
    await node.deleteVhost(vhost);
    await node.release();
  }
}

const bad = suite('notifications: malformed input on RabbitMQ');
bad('garbage, unknown priorities and missing fields are settled and counted; the listener goes on', () =>
  inVhost('bad', async ({ node, vhost, tr, raw }) => {
    const invalid: InvalidMessageEvent[] = [];
    const onInvalid = (e: unknown) => void invalid.push(e as InvalidMessageEvent);
    diagnostics_channel.subscribe('hermod:message:invalid', onInvalid);
    const c = new Collector();
    const l = new NotificationListener(tr, [new Target({ topic: 'nb' })], [c]);
    await l.start();
    const ch = await raw.createChannel();
    const props = { contentType: 'application/json', deliveryMode: 2 };
    const env = (m: object) => Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(m) }));
    ch.publish('openstack', 'nb.info', Buffer.from('not json at all'), props);
    ch.publish('openstack', 'nb.info', Buffer.from('{"oslo.version": "9.0", "oslo.message": "{}"}'), props);
    ch.publish('openstack', 'nb.info', env({ publisher_id: 'p', payload: {} }), props); // no priority, event type
    ch.publish('openstack', 'nb.info', env({ publisher_id: 'p', event_type: 'e', priority: 'LOUD', payload: {} }), props); // unknown priority
    ch.publish('openstack', 'nb.info', env({ publisher_id: 'p', event_type: 'e', priority: 'INFO', payload: 'x'.repeat(1000) }), props);
    await until(() => l.stats().invalid === 4 && c.got.length === 1, `bad ones counted (${JSON.stringify(l.stats())})`);
    await new Notifier(tr, { publisherId: 'p', topics: ['nb'] }).info({}, 'after', { ok: true });
    await until(() => c.got.some((g) => g.eventType === 'after'), 'still listening');
    const q = await node.queues(vhost);
    assert.is(q.get('nb.info')!.messages, 0, 'nothing left to stall the queue');
    diagnostics_channel.unsubscribe('hermod:message:invalid', onInvalid);
    // Where the README's "Hostile input" says bad input is reported, as for RPC servers.
    assert.equal(
      invalid.map((e) => [e.where, e.error.name]),
      [
        ['notification listener', 'MalformedMessage'],
        ['notification listener', 'UnsupportedEnvelopeVersion'],
        ['notification listener', 'MalformedMessage'],
        ['notification listener', 'MalformedMessage'],
      ],
    );
    assert.match(invalid[3]!.error.message, /unknown priority 'loud'/);
    // A publisher's mistakes, all of them: nothing counted as given up on or as an endpoint failure.
    assert.is(l.stats().dropped, 0);
    assert.is(l.stats().failed, 0);
    await l.stop();
  }),
);
bad('notifications sharing a _unique_id: the copies are counted, published and logged, not dropped unseen', () =>
  inVhost('dup', async ({ url, tr, raw }) => {
    const dups: DuplicateMessageEvent[] = [];
    const onDup = (e: unknown) => void dups.push(e as DuplicateMessageEvent);
    diagnostics_channel.subscribe('hermod:message:duplicate', onDup);
    const c = new Collector();
    const l = new NotificationListener(tr, [new Target({ topic: 'nd' })], [c]);
    await l.start();
    const ch = await raw.createConfirmChannel();
    // A third-party publisher reusing one template, _unique_id included.
    const send = (i: number, uniqueId = 'same-unique-id') =>
      ch.publish(
        'openstack',
        'nd.info',
        Buffer.from(
          JSON.stringify({
            'oslo.version': '2.0',
            'oslo.message': JSON.stringify({
              message_id: `m-${i}`,
              publisher_id: 'tpl',
              event_type: `dup.${i}`,
              priority: 'INFO',
              payload: { i },
              _unique_id: uniqueId,
            }),
          }),
        ),
      );
    for (let i = 1; i <= 3; i++) send(i);
    await ch.waitForConfirms();
    await until(() => l.stats().handled + l.stats().duplicates === 3, `all three settled (${JSON.stringify(l.stats())})`);
    diagnostics_channel.unsubscribe('hermod:message:duplicate', onDup);
    assert.is(l.stats().duplicates, 2, JSON.stringify(l.stats()));
    assert.is(l.stats().handled, 1);
    assert.equal(dups, [
      { where: 'notification listener', uniqueId: 'same-unique-id' },
      { where: 'notification listener', uniqueId: 'same-unique-id' },
    ]);
    await l.stop();
    await l.wait(1000);
    // notify-listen says so, as oslo logs "ignoring duplicate message".
    const cli = startCli('notify-listen', ['--topic', 'nd', '--priority', 'info', '--count', '2', '--transport-url', url], {
      killAfterMs: 20_000,
    });
    await until(() => /listening on/.test(cli.err), `notify-listen listening (${cli.err})`, 10_000);
    send(4);
    await until(() => cli.out.includes('dup.4'), `the first printed (${cli.out})`);
    send(5);
    send(6, 'another-unique-id');
    await ch.waitForConfirms();
    assert.is(await cli.exited, 0, cli.err);
    assert.not.match(cli.out, /dup\.5/);
    assert.match(cli.out, /dup\.6/);
    assert.match(cli.err, /WARN .*ignoring duplicate message same-unique-id/);
  }),
);
bad('notify-listen logs each notification it settles unprinted, at the default level', () =>
  inVhost('badcli', async ({ url, raw }) => {
    const l = startCli('notify-listen', ['--topic', 'nbc', '--priority', 'info', '--count', '1', '--transport-url', url], {
      killAfterMs: 20_000,
    });
    await until(() => /listening on/.test(l.err), `notify-listen listening (${l.err})`, 10_000);
    const ch = await raw.createChannel();
    const props = { contentType: 'application/json' };
    const env = (m: object) => Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(m) }));
    const note = { message_id: 'm', publisher_id: 'p', event_type: 'e', priority: 'INFO', payload: {} };
    ch.publish('openstack', 'nbc.info', Buffer.from('{not json'), props);
    ch.publish('openstack', 'nbc.info', env({ ...note, priority: undefined }), props);
    ch.publish('openstack', 'nbc.info', env({ ...note, publisher_id: { a: 1 } }), props);
    ch.publish('openstack', 'nbc.info', env({ ...note, priority: 'LOUD' }), props);
    ch.publish('openstack', 'nbc.info', env({ ...note, event_type: 'last' }), props);
    assert.is(await l.exited, 0, l.err);
    assert.match(l.out, / INFO p last \{\}/);
    const lines = l.err.split('\n').filter((x) => /dropped/.test(x));
    // Before, all four vanished without a word, even at --log-level debug.
    assert.is(lines.length, 4, l.err);
    assert.match(lines[0]!, /WARN .*dropped an invalid message: .*JSON/);
    assert.match(lines[1]!, /dropped an invalid message: notification without priority or event_type/);
    assert.match(lines[2]!, /dropped an invalid message: notification could not be read: TypeError: publisher_id is object/);
    assert.match(lines[3]!, /dropped an invalid message: notification e: unknown priority 'loud'/);
  }),
);
bad.run();

const drop = suite('notifications: a connection dropped under the listener on RabbitMQ');
drop('a partial batch pending when the broker closes the connection runs once: from the copies the broker delivers again', async () => {
  const node = await RabbitNode.shared();
  const vhost = await node.addVhost(`notify-drop-${process.pid}`);
  const tr = await getTransport(node.url(vhost), { config: defaultConfig() });
  try {
    const seen: string[] = [];
    // rabbitmqctl takes seconds per command on a loaded machine: with 6 s, the batch once ran at
    // its timer before the close came, and the case tested nothing (handled 2, requeued 0).
    const batchTimeout = 12_000;
    const l = new NotificationListener(
      tr,
      [new Target({ topic: 'bd' })],
      [{ info: (b: BatchedNotification[]) => void seen.push(...b.map((m) => m.event_type)) }],
      { batchSize: 10, batchTimeout },
    );
    await l.start();
    // Listed before the batch starts, so that only the close itself runs against its timer.
    const pids: string[] = [];
    for (let i = 0; i < 50 && pids.length === 0; i++) {
      if (i > 0) await sleep(200);
      for (const line of (await node.ctl('list_connections', '-q', 'pid', 'vhost')).split('\n')) {
        const [pid, v] = line.trim().split('\t');
        if (pid?.startsWith('<') && v === vhost) pids.push(pid);
      }
    }
    assert.ok(pids.length > 0, "the listener's connection is listed");
    const nt = new Notifier(tr, { publisherId: 'p', topics: ['bd'] });
    await nt.info({}, 'e0', {});
    await nt.info({}, 'e1', {});
    await until(() => l.stats().queued === 2, `both waiting in the batch (${JSON.stringify(l.stats())})`);
    const batchStarted = Date.now();
    // As an operator's close_connection, or a network failure the broker noticed first.
    for (const pid of pids) await node.ctl('close_connection', pid, 'test: connection dropped').catch(() => '');
    assert.ok(Date.now() - batchStarted < batchTimeout - 1000, `closed while the batch waited (${Date.now() - batchStarted} ms)`);
    await until(() => l.stats().handled === 2, `the redelivered copies handled (${JSON.stringify(l.stats())})`, 4 * batchTimeout);
    // Long enough for a second batch timer: before, the stale batch ran and then the redelivered one too.
    await sleep(batchTimeout + 1000);
    assert.equal([...seen].sort(), ['e0', 'e1'], `each ran once: ${JSON.stringify(seen)}`);
    assert.is(l.stats().handled, 2);
    assert.is(l.stats().requeued, 2, `the stale copies counted as given back: ${JSON.stringify(l.stats())}`);
    await l.stop();
    await l.wait(1000);
  } finally {
    await tr.close();
    await node.deleteVhost(vhost);
    await node.release();
  }
});
drop.run();

const pool = suite('notifications: pools and notify-listen on RabbitMQ');
pool('a pool member consumes its one queue once, so a member with one consumer (as oslo has) gets its share', () =>
  inVhost('pool', async ({ tr, raw }) => {
    const c = new Collector();
    // Every priority: one queue (the pool's) bound seven times. A consumer per binding took 7 of 8 shares.
    const l = new NotificationListener(tr, [new Target({ topic: 'pooled' })], [c], { pool: 'fair' });
    await l.start();
    const ch = await raw.createChannel();
    assert.is((await ch.checkQueue('fair')).consumerCount, 1, 'one consumer for the pool queue');
    let other = 0;
    await ch.prefetch(64);
    await ch.consume('fair', (m) => {
      if (!m) return;
      other++;
      ch.ack(m);
    });
    const nt = new Notifier(tr, { publisherId: 'p', topics: ['pooled'] });
    for (let i = 0; i < 20; i++) await nt.info({}, 'e', { i });
    await until(() => c.got.length + other === 20, `all 20 taken (hermod ${c.got.length}, other ${other})`);
    // The broker deals round robin among the queue's consumers: 10 each, give or take.
    assert.ok(Math.abs(c.got.length - other) <= 4, `shared fairly: hermod ${c.got.length}, other ${other}`);
    await l.stop();
  }),
);
pool('notify-listen --count 1 with five notifications queued prints one and leaves four on the queue', () =>
  inVhost('count', async ({ node, vhost, url, tr }) => {
    const nt = new Notifier(tr, { publisherId: 'p', topics: ['backlog'] });
    for (let i = 0; i < 5; i++) await nt.info({}, `ev.${i}`, { i });
    // The queued five arrive in one burst (the prefetch): all five were printed before the stop.
    const r = await runCli(
      'notify-listen',
      ['--topic', 'backlog', '--priority', 'info', '--count', '1', '--json', '--transport-url', url],
      {
        killAfterMs: 20_000,
      },
    );
    assert.is(r.code, 0, r.err);
    const lines = r.out.trim().split('\n');
    assert.is(lines.length, 1, r.out);
    assert.is(JSON.parse(lines[0]!).event_type, 'ev.0');
    // Said even when the backlog reached --count inside start(), before it returned.
    assert.match(r.err, /listening on backlog\.\{info\}/);
    // Requeued on the listener's way out: the broker counts them ready once its channel closed.
    let left: number | undefined;
    for (let i = 0; i < 50 && left !== 4; i++) {
      left = (await node.queues(vhost)).get('backlog.info')?.messages;
      if (left !== 4) await sleep(100);
    }
    assert.is(left, 4, 'four left on the queue');
  }),
);
pool("notify-listen --event-type taps: the notifications it skips, and the ones queued, stay for the topic's listeners", () =>
  inVhost('tapcli', async ({ node, vhost, url, tr }) => {
    const nt = new Notifier(tr, { publisherId: 'p', topics: ['filtq'] });
    for (let i = 0; i < 4; i++) await nt.info({}, i % 2 ? `skip.${i}` : `keep.${i}`, { i });
    const l = startCli(
      'notify-listen',
      ['--topic', 'filtq', '--priority', 'info', '--event-type', '^keep', '--count', '1', '--json', '--transport-url', url],
      {
        killAfterMs: 20_000,
      },
    );
    await until(() => /through a tap/.test(l.err), `the tap listening (${l.err})`, 10_000);
    await nt.info({}, 'skip.a', {});
    await nt.info({}, 'keep.b', {});
    assert.is(await l.exited, 0, l.err);
    assert.equal(
      l.out
        .trim()
        .split('\n')
        .map((x) => JSON.parse(x).event_type),
      ['keep.b'],
    );
    // Before, it consumed the shared queue: the queued keep.0, and every skip it took, were gone.
    let queues = await node.queues(vhost);
    for (
      let i = 0;
      i < 50 && (queues.get('filtq.info')?.messages !== 6 || [...queues.keys()].some((q) => q.startsWith('notifications-tap_')));
      i++
    ) {
      await sleep(100);
      queues = await node.queues(vhost);
    }
    assert.is(queues.get('filtq.info')?.messages, 6, 'all six still on the shared queue');
    assert.equal(
      [...queues.keys()].filter((q) => q.startsWith('notifications-tap_')),
      [],
      'the tap queue went with it',
    );
  }),
);
pool('notify-listen prints what publishers sent as one line each, with no control character reaching the terminal', () =>
  inVhost('escape', async ({ url, tr }) => {
    const eventType = 'evil\n2026-01-01 00:00:00.000000 CRITICAL forged.host forged.event {}\u001b[31mRED';
    const publisherId = 'pub\u001b]0;title\u0007';
    const payload = { note: 'right\u202eleft\u0085next\u2028sep' };
    const nt = new Notifier(tr, { publisherId, topics: ['esc'] });
    await nt.info({ user: 'u\u001b[2J' }, eventType, payload);
    await nt.info({}, eventType, payload);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: what must not reach the terminal is the point
    const unsafe = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u202e]/;
    const text = await runCli('notify-listen', ['--topic', 'esc', '--priority', 'info', '--count', '1', '--transport-url', url], {
      killAfterMs: 20_000,
    });
    assert.is(text.code, 0, text.err);
    // Before, the event type's newline printed a second, forged CRITICAL line, and the ESC and BEL went to the terminal raw.
    assert.is(text.out.split('\n').length, 2, JSON.stringify(text.out));
    assert.not.match(text.out, unsafe);
    assert.ok(
      text.out.includes(
        ' INFO pub\\u001b]0;title\\u0007 evil\\n2026-01-01 00:00:00.000000 CRITICAL forged.host forged.event {}\\u001b[31mRED {"note":"right\\u202eleft\\u0085next\\u2028sep"}',
      ),
      text.out,
    );
    const json = await runCli('notify-listen', ['--topic', 'esc', '--priority', 'info', '--count', '1', '--json', '--transport-url', url], {
      killAfterMs: 20_000,
    });
    assert.is(json.code, 0, json.err);
    assert.not.match(json.out, unsafe);
    // Escaped as JSON escapes: the values read back are the publisher's, unchanged.
    const got = JSON.parse(json.out);
    assert.equal([got.publisher_id, got.event_type, got.payload], [publisherId, eventType, payload]);
  }),
);
pool.run();
