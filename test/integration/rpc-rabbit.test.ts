import util from 'node:util';
import type { ConsumeMessage } from 'amqplib';
import * as assert from 'uvu/assert';
import {
  defaultConfig,
  getTransport,
  Notifier,
  parseTransportUrl,
  RPCClient,
  RPCServer,
  Target,
  type Transport,
  TransportError,
} from '../../src/index.js';
import { rejects, sleep, until } from '../support/assert.js';
import { startCli } from '../support/cli-procs.js';
import { Recorder } from '../support/endpoints.js';
import { sampleValue, scrape } from '../support/prometheus.js';
import { type ModeCtx, modeRaw, modeSuite } from '../support/rabbit-mode.js';
import { sharedVhost } from '../support/rabbit-vhost.js';
import { rpcSuite } from '../support/rpc-cases.js';
import { type CuttingProxy, cuttingProxy, queueDeclareBytes } from '../support/slow-proxy.js';

// The RPC cases every driver passes, in a vhost of their own.
rpcSuite(
  'rpc over RabbitMQ: shared cases',
  sharedVhost('rpc-cases', {
    // Without the mandatory flag a request nobody is bound for is dropped, as oslo's is.
    unrouted: { 'rabbit.mandatoryRequests': false },
    // The reply wait starts once connected and names the part of the deadline left by then.
    unservedTimeout: () => /Timed out waiting for a reply to message ID [0-9a-f]{32} \(x on topic nobody-\d+\) after \d+ ms/,
  }),
  { mandatory: true },
).run();

// What is RabbitMQ's own: topology and wire format checked with raw amqplib clients, mandatory
// publishing, broker-side failures, reconnects and quorum queues. One RabbitMQ node per test
// run, a vhost per suite.

type Ctx = ModeCtx;
const t = modeSuite('rpc over RabbitMQ', 'rpc');

async function transport(ctx: Ctx, overrides: Record<string, unknown> = {}, url = ctx.url): Promise<Transport> {
  const tr = await getTransport(url, { config: defaultConfig(), overrides });
  ctx.transports.push(tr);
  return tr;
}
async function serve(ctx: Ctx, topic: string, server: string, endpoints: object[], opts = {}) {
  const s = new RPCServer(await transport(ctx), new Target({ topic, server }), endpoints, opts);
  await s.start();
  ctx.servers.push(s);
  return s;
}
const raw = modeRaw;
const envelope = (msg: Record<string, unknown>) =>
  Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(msg) }));
const props = { contentType: 'application/json', contentEncoding: 'utf-8', deliveryMode: 2 };

t('topology matches oslo: queue names, flags and x-expires', async (ctx) => {
  await serve(ctx, 'topo', 's1', [new Recorder('s1')]);
  const c = new RPCClient(await transport(ctx), new Target({ topic: 'topo' }), { timeout: 5000 });
  await c.call({}, 'whoami');
  const q = await ctx.node.queues(ctx.vhost);
  assert.equal({ ...q.get('topo'), messages: 0 }, { messages: 0, consumers: 1, durable: false, autoDelete: false, arguments: '[]' });
  assert.is(q.get('topo.s1')!.consumers, 1);
  const fanout = [...q.keys()].find((n) => /^topo_fanout_[0-9a-f]{32}$/.test(n));
  assert.ok(fanout, 'fanout queue topo_fanout_<uuid hex>');
  assert.match(q.get(fanout!)!.arguments, /x-expires.*1800000/);
  const reply = [...q.keys()].find((n) => /^reply_[0-9a-f]{32}$/.test(n));
  assert.ok(reply, 'reply queue reply_<uuid hex>');
  assert.match(q.get(reply!)!.arguments, /x-expires.*1800000/);
  // The server's fanout queue goes when it stops; the shared topic queue stays.
  await ctx.servers[0]!.stop();
  const after = await ctx.node.queues(ctx.vhost);
  assert.not.ok(after.has(fanout!), 'fanout queue deleted on stop');
  assert.ok(after.has('topo'));
});

t("a reply whose caller's queue is not there yet is sent again until it is, as oslo's servers do", async (ctx) => {
  // From an interop review: after a broker restart a server reconnects before its callers have
  // declared their reply queues again; the mandatory reply came back and was dropped at once, and
  // an oslo 18 caller timed out on a call that had run. oslo retries every 0.25 s for 60 s.
  await serve(ctx, 'late-reply', 's1', [new Recorder('s1')]);
  const m = await raw(ctx);
  const ch = await m.createChannel();
  const replyQ = `reply_late_${process.pid}`;
  ch.publish(
    'openstack',
    'late-reply',
    envelope({ method: 'add', args: { a: 2, b: 3 }, _msg_id: 'late-1', _reply_q: replyQ, _unique_id: 'late-u1', _timeout: 30 }),
    props,
  );
  // The reply is returned for want of the queue for a second, then finds it.
  await sleep(1000);
  await ch.assertQueue(replyQ, { autoDelete: true });
  const replies: Array<Record<string, unknown>> = [];
  await ch.consume(
    replyQ,
    (msg) => {
      if (msg) replies.push(JSON.parse(JSON.parse(msg.content.toString())['oslo.message']));
    },
    { noAck: true },
  );
  await until(() => replies.length === 1, 'the reply, once its queue is there', 5000);
  assert.equal([replies[0]!._msg_id, replies[0]!.result, replies[0]!.ending], ['late-1', 5, true]);
  // Counted once the reply's publish is confirmed, which may come after the consumer has it.
  await until(() => ctx.servers[0]!.stats().served === 1, 'the call counted as served', 5000);
});

t('wire format: envelope, properties and keys of calls, casts and replies as oslo sends them', async (ctx) => {
  const m = await raw(ctx);
  const ch = await m.createChannel();
  await ch.assertExchange('openstack', 'topic', { durable: false, autoDelete: false });
  await ch.assertQueue('wire', { durable: false, autoDelete: false });
  await ch.bindQueue('wire', 'openstack', 'wire');
  const got: ConsumeMessage[] = [];
  await ch.consume('wire', (msg) => {
    if (msg) {
      got.push(msg);
      ch.ack(msg);
    }
  });
  // Connected first: the call is to time out unanswered, not while the first connect is under way.
  const tr = await transport(ctx);
  await tr.connect(10_000);
  const c = new RPCClient(tr, new Target({ topic: 'wire', namespace: 'ns', version: '1.2' }), {
    timeout: 700,
    callMonitorTimeout: 2000,
  });
  await rejects(c.call({ request_id: 'req-w', user: 'alice' }, 'add', { a: 1, b: 2 }), 'HERMOD_ERR_TIMEOUT');
  await c.cast({ request_id: 'req-c' }, 'bump', { seq: 7 });
  await until(() => got.length === 2, 'call and cast captured');
  const [call, cast] = got as [ConsumeMessage, ConsumeMessage];
  assert.is(call.properties.contentType, 'application/json');
  assert.is(call.properties.contentEncoding, 'utf-8');
  assert.is(call.properties.deliveryMode, 2);
  assert.ok(
    Number(call.properties.expiration) > 0 && Number(call.properties.expiration) <= 700,
    `expiration ${call.properties.expiration}`,
  );
  assert.is(cast.properties.expiration, undefined, 'casts carry no expiration');
  assert.is(call.properties.correlationId, undefined);
  assert.is(call.properties.replyTo, undefined);
  const outer = JSON.parse(call.content.toString());
  assert.equal(Object.keys(outer).sort(), ['oslo.message', 'oslo.version']);
  assert.is(outer['oslo.version'], '2.0');
  const inner = JSON.parse(outer['oslo.message']);
  assert.equal(
    { method: inner.method, args: inner.args, namespace: inner.namespace, version: inner.version },
    { method: 'add', args: { a: 1, b: 2 }, namespace: 'ns', version: '1.2' },
  );
  assert.is(inner._context_request_id, 'req-w');
  assert.is(inner._context_user, 'alice');
  assert.match(inner._msg_id, /^[0-9a-f]{32}$/);
  assert.match(inner._unique_id, /^[0-9a-f]{32}$/);
  assert.match(inner._reply_q, /^reply_[0-9a-f]{32}$/);
  assert.is(inner._timeout, 2, '_timeout is the call-monitor timeout in seconds');
  const castInner = JSON.parse(JSON.parse(cast.content.toString())['oslo.message']);
  assert.is(castInner._msg_id, undefined);
  assert.is(castInner._reply_q, undefined);
  assert.is('_timeout' in castInner, false);
  // Answer the call by hand as an oslo server would, on the default exchange.
  const c2 = new RPCClient(ctx.transports[0]!, new Target({ topic: 'wire' }), { timeout: 3000 });
  const pending = c2.call({}, 'add', { a: 2, b: 3 });
  await until(() => got.length === 3, 'second call captured');
  const req = JSON.parse(JSON.parse(got[2]!.content.toString())['oslo.message']);
  ch.publish('', req._reply_q, envelope({ result: 5, failure: null, ending: true, _msg_id: req._msg_id, _unique_id: 'u1' }), props);
  assert.is(await pending, 5);
});

// Heartbeats and a hung hermod listener are in the shared cases; this hung server is a foreign consumer.
t('a hung foreign consumer is caught by the call monitor', async (ctx) => {
  const c = new RPCClient(await transport(ctx), new Target({ topic: 'hb' }), { timeout: 5000, callMonitorTimeout: 300 });
  // A raw consumer that takes requests and never answers: a hung server.
  const ch = await (await raw(ctx)).createChannel();
  await ch.assertQueue('hung', { durable: false });
  await ch.bindQueue('hung', 'openstack', 'hung');
  await ch.consume('hung', () => {}, { noAck: true });
  const t0 = Date.now();
  await rejects(c.prepare({ topic: 'hung' }).call({}, 'x'), 'HERMOD_ERR_TIMEOUT', /call monitor/);
  assert.ok(Date.now() - t0 < 1500, 'caught by the 300 ms monitor, not the 5 s timeout');
});

t('a call nobody is bound for fails at once (mandatory), or at its deadline like oslo', async (ctx) => {
  const c = new RPCClient(await transport(ctx), new Target({ topic: 'nobody-home' }), { timeout: 3000 });
  let t0 = Date.now();
  await rejects(c.call({}, 'x'), 'HERMOD_ERR_UNDELIVERABLE', /nobody-home/);
  assert.ok(Date.now() - t0 < 1000, 'fails fast');
  await rejects(c.cast({}, 'x'), 'HERMOD_ERR_UNDELIVERABLE');
  await rejects(c.prepare({ fanout: true }).cast({}, 'x'), 'HERMOD_ERR_UNDELIVERABLE');
  // Connected first: a 400 ms deadline that passes during the first connect (over 400 ms at CI's
  // load) fails as a TransportError, not as the unrouted call's timeout.
  const unchecked = await transport(ctx, { 'rabbit.mandatoryRequests': false });
  await unchecked.connect(10_000);
  const osloLike = new RPCClient(unchecked, new Target({ topic: 'nobody-home' }), { timeout: 400 });
  t0 = Date.now();
  await rejects(osloLike.call({}, 'x'), 'HERMOD_ERR_TIMEOUT');
  assert.ok(Date.now() - t0 >= 350);
  await osloLike.cast({}, 'x');
});

t(
  "a fanout cast after the topic's last server stopped (its auto-delete exchange gone) is MessageUndeliverable, with retry 0 too",
  async (ctx) => {
    const s = await serve(ctx, 'fx-gone', 's1', [{ bump: async () => undefined }]);
    const c = new RPCClient(await transport(ctx), new Target({ topic: 'fx-gone', fanout: true }), { timeout: 5000 });
    await c.cast({}, 'bump');
    await s.stop();
    await s.wait(1000);
    // Before: the publisher still took fx-gone_fanout for declared; the broker's 404 closed both
    // publishing channels and the cast failed as "connection lost" (TransportError) with retry 0.
    for (const retry of [0, -1]) await rejects(c.prepare({ retry }).cast({}, 'bump'), 'HERMOD_ERR_UNDELIVERABLE', /fx-gone_fanout/);
    // And the channels stood: a call on the same transport goes at once.
    await serve(ctx, 'fx-other', 's1', [{ ping: async () => 'pong' }]);
    assert.is(await new RPCClient(c.transport, new Target({ topic: 'fx-other' }), { timeout: 5000 }).call({}, 'ping'), 'pong');
  },
);

t('bad input at a server: no envelope, bad JSON, wrong version, bad fields, duplicates, oversize; it keeps serving', async (ctx) => {
  const rec = new Recorder('s');
  let invalid = 0;
  const server = await serve(ctx, 'bad', 's', [rec]);
  const { channel: diag } = await import('node:diagnostics_channel');
  let atServer = 0;
  const onInvalid = (e: unknown) => {
    invalid++;
    if ((e as { where: string }).where.startsWith('server ')) atServer++;
  };
  diag('hermod:message:invalid').subscribe(onInvalid);
  const duplicates: unknown[] = [];
  const onDuplicate = (e: unknown) => void duplicates.push(e);
  diag('hermod:message:duplicate').subscribe(onDuplicate);
  try {
    const m = await raw(ctx);
    const ch = await m.createChannel();
    // A reply queue of our own to catch failures the server sends back.
    const { queue: replyQ } = await ch.assertQueue('', { exclusive: true });
    const replies: Array<Record<string, unknown>> = [];
    await ch.consume(
      replyQ,
      (msg) => {
        if (msg) replies.push(JSON.parse(JSON.parse(msg.content.toString())['oslo.message']));
      },
      { noAck: true },
    );
    const send = (content: Buffer | string) =>
      ch.publish('openstack', 'bad', Buffer.isBuffer(content) ? content : Buffer.from(content), props);
    // 1. No envelope: a bare (1.0) message is accepted, as oslo does.
    send(JSON.stringify({ method: 'bump', args: { seq: 1 }, _unique_id: 'bare1' }));
    // 2. Not JSON, a JSON array, truncated envelope.
    send('this is not json');
    send('[1,2,3]');
    send('{"oslo.version": "2.0", "oslo.message": "{\\"method\\": ');
    // 3. Unsupported envelope version, on a call: the caller hears about it.
    send(
      JSON.stringify({
        'oslo.version': '3.1',
        'oslo.message': JSON.stringify({ method: 'add', args: {}, _msg_id: 'm-ver', _reply_q: replyQ, _unique_id: 'v3' }),
      }),
    );
    // 4. Wrong field types on a call: method a number, args a list.
    send(envelope({ method: 42, args: [1], _msg_id: 'm-types', _reply_q: replyQ, _unique_id: 't1' }));
    // 5. The same _unique_id twice: the endpoint runs once.
    send(envelope({ method: 'bump', args: { seq: 5 }, _unique_id: 'dup-1' }));
    send(envelope({ method: 'bump', args: { seq: 5 }, _unique_id: 'dup-1' }));
    // 6. Larger than the server's maxMessageSize (16 MiB default): 17 MiB of junk.
    send(Buffer.alloc(17 * 1024 * 1024, 0x61));
    await until(() => replies.length === 2, 'failures for the two bad calls', 8000);
    const byId = Object.fromEntries(replies.map((r) => [r._msg_id, r]));
    assert.match(JSON.parse(byId['m-ver']!.failure as string).class, /UnsupportedEnvelopeVersion/);
    assert.is(byId['m-types']!.ending, true);
    assert.ok(byId['m-types']!.failure, 'bad field types become a failure reply');
    await until(() => rec.calls.filter((c) => c.method === 'bump').length === 2, 'bare message and one copy of the duplicate');
    await sleep(200);
    assert.equal(
      rec.calls
        .filter((c) => c.method === 'bump')
        .map((c) => (c.args as { seq: number }).seq)
        .sort(),
      [1, 5],
    );
    // Dropped, and said: before, the copy went without a trace.
    assert.equal(duplicates, [{ where: 'rpc server', uniqueId: 'dup-1' }]);
    // The 17 MiB body reaches the consumer last and at its own pace: wait for it, not a fixed time.
    await until(() => invalid >= 5, `invalid messages reported (${invalid})`, 10000);
    // Counted by the server too, beside what it served: before, stats() showed neither.
    assert.is(server.stats().duplicates, 1);
    assert.ok(atServer >= 4, `${atServer} invalid at the server`);
    assert.is(server.stats().invalid, atServer);
    // Everything was settled: nothing left in the queue, and the server still serves.
    const q = await ctx.node.queues(ctx.vhost);
    assert.is(q.get('bad')!.messages, 0);
    const c = new RPCClient(await transport(ctx), new Target({ topic: 'bad' }), { timeout: 3000 });
    assert.is(await c.call({}, 'add', { a: 2, b: 2 }), 4);
    // A reply for an unknown id is dropped; the client goes on.
    const replyQueue = [...q.keys()].find((n) => n.startsWith('reply_'));
    if (replyQueue)
      ch.publish('', replyQueue, envelope({ result: 1, failure: null, ending: true, _msg_id: 'nobody', _unique_id: 'x' }), props);
    ch.publish('', [...(await ctx.node.queues(ctx.vhost)).keys()].find((n) => n.startsWith('reply_'))!, Buffer.from('garbage'), props);
    assert.is(await c.call({}, 'add', { a: 3, b: 3 }), 6);
  } finally {
    diag('hermod:message:invalid').unsubscribe(onInvalid);
    diag('hermod:message:duplicate').unsubscribe(onDuplicate);
  }
});

t('rpc-server logs a duplicate once with its id, runs it once, and a flood of copies stays within its line budget', async (ctx) => {
  const cli = startCli('rpc-server', ['d1', '--topic', 'cdup', '--transport-url', ctx.url, '--metrics-port', '0'], { killAfterMs: 60_000 });
  try {
    await until(() => /serving topic cdup/.test(cli.out), `rpc-server serving (${cli.out}${cli.err})`, 15_000);
    const metricsUrl = /metrics at (http:\/\/\S+)/.exec(cli.out)?.[1];
    assert.ok(metricsUrl, cli.out);
    const ch = await (await raw(ctx)).createConfirmChannel();
    const { queue: replyQ } = await ch.assertQueue('', { exclusive: true });
    const replies: Array<Record<string, unknown>> = [];
    await ch.consume(replyQ, (msg) => void (msg && replies.push(JSON.parse(JSON.parse(msg.content.toString())['oslo.message']))), {
      noAck: true,
    });
    const call = (method: string, msgId: string, uniqueId: string, args = {}) =>
      ch.publish('openstack', 'cdup', envelope({ method, args, _msg_id: msgId, _reply_q: replyQ, _unique_id: uniqueId }), props);
    // One request sent twice (a publisher's retry after a lost confirm): one run, one reply, one line.
    call('echo', 'm-echo', 'cli-dup-1', { value: 7 });
    call('echo', 'm-echo', 'cli-dup-1', { value: 7 });
    await ch.waitForConfirms();
    await until(() => /ignoring duplicate message/.test(cli.err), `the copy logged (${cli.err})`, 10_000);
    call('info', 'm-info', 'cli-info-1');
    await ch.waitForConfirms();
    await until(() => replies.some((r) => r._msg_id === 'm-info'), 'the info reply', 10_000);
    // The demo endpoints count their runs: echo once, then info.
    const info = replies.find((r) => r._msg_id === 'm-info')!;
    assert.is((info.result as { calls: number }).calls, 2, JSON.stringify(info));
    assert.equal(
      replies.filter((r) => r._msg_id === 'm-echo').map((r) => r.result),
      [7],
    );
    const dupLines = (id: string) => cli.err.split('\n').filter((l) => l.includes(`ignoring duplicate message ${id}`));
    assert.is(dupLines('cli-dup-1').length, 1, cli.err);
    assert.match(dupLines('cli-dup-1')[0]!, /WARN .*rpc-server d1: ignoring duplicate message cli-dup-1$/);

    // A flood of copies: at most 20 lines a second, the rest counted in a line a second.
    const copies = 2000;
    const sent = Date.now();
    call('echo', 'm-flood', 'cli-flood', { value: 8 });
    for (let i = 0; i < copies; i++) call('echo', 'm-flood', 'cli-flood', { value: 8 });
    await ch.waitForConfirms();
    const skipped = () =>
      [...cli.err.matchAll(/(\d+) more invalid or duplicate message\(s\) in the last second not logged/g)].reduce(
        (n, m) => n + Number(m[1]),
        0,
      );
    // Every copy is either logged or counted in a summary, which comes when its second ends.
    await until(
      () => dupLines('cli-flood').length + skipped() === copies,
      `all copies accounted for (${dupLines('cli-flood').length} + ${skipped()})`,
      20_000,
    );
    // The windows the CLI used all lie within what the test waited, plus the one it began in.
    const windows = Math.ceil((Date.now() - sent) / 1000) + 1;
    const flood = dupLines('cli-flood').length;
    assert.ok(flood >= 1 && flood <= 20 * windows, `${flood} lines for ${copies} copies in ${windows} s`);
    const summaries = cli.err.split('\n').filter((l) => l.includes('not logged'));
    assert.ok(summaries.length >= 1 && summaries.length <= windows, summaries.join('\n'));
    await until(() => replies.some((r) => r._msg_id === 'm-flood'), "the flood's first copy answered", 10_000);
    assert.is(replies.filter((r) => r._msg_id === 'm-flood').length, 1);
    // The same drops in the CLI's metrics.
    const text = await scrape(metricsUrl!);
    assert.is(sampleValue(text, 'hermod_messages_duplicate_total', { where: 'rpc server' }), copies + 1);
  } finally {
    cli.child.kill('SIGTERM');
    await cli.exited;
  }
});

t('wrong credentials or vhost: a clear TransportError, quickly, no crash', async (ctx) => {
  let t0 = Date.now();
  // Fast retry settings, so a storm would show: a refused login must still wait intervalMax.
  const bad = await transport(
    ctx,
    { 'rabbit.retryInterval': 20, 'rabbit.intervalMax': 5000 },
    ctx.node.url(ctx.vhost, 'guest', 'wrong-password'),
  );
  const attempts: number[] = [];
  bad.driver.on('state', (st: { state: string }) => {
    if (st.state === 'reconnecting') attempts.push(Date.now());
  });
  const c = new RPCClient(bad, new Target({ topic: 'x' }), { timeout: 5000 });
  await rejects(c.call({}, 'x'), 'HERMOD_ERR_ACCESS_REFUSED', /ACCESS_REFUSED|refused/i);
  assert.ok(Date.now() - t0 < 3000, `${Date.now() - t0} ms`);
  await sleep(1500);
  assert.ok(attempts.length <= 1, `no reconnect storm: ${attempts.length} attempts in 1.5 s`);
  assert.not.match(
    String(((await c.call({}, 'x').catch((e: Error) => e)) as Error).message),
    /wrong-password/,
    'password never in messages',
  );
  t0 = Date.now();
  const noVhost = await transport(ctx, {}, ctx.node.url('no-such-vhost'));
  await rejects(
    new RPCClient(noVhost, new Target({ topic: 'x' }), { timeout: 5000 }).call({}, 'x'),
    'HERMOD_ERR_ACCESS_REFUSED',
    /vhost|NOT_ALLOWED/i,
  );
  await rejects(new RPCServer(noVhost, new Target({ topic: 'x', server: 's' }), [new Recorder('s')]).start(), 'HERMOD_ERR_ACCESS_REFUSED');
  assert.ok(Date.now() - t0 < 3000);
  // Nothing listening at all: cannot connect, naming the host.
  const dead = await transport(ctx, { 'rabbit.retryInterval': 50 }, 'rabbit://guest:guest@127.0.0.1:1/');
  await rejects(new RPCClient(dead, new Target({ topic: 'x' }), { timeout: 300 }).call({}, 'x'), 'HERMOD_ERR_TRANSPORT', /127\.0\.0\.1:1/);
});

t("a transport's config logs in again, and shows its password nowhere", async (ctx) => {
  const user = `cfgcopy-${process.pid}`;
  const password = 'S3cr3t PW@x';
  await ctx.node.addUser(user, password, ctx.vhost);
  try {
    const url = ctx.node.url(ctx.vhost, user, password);
    const first = await transport(ctx, {}, url);
    await serve(ctx, 'cfgcopy', 's1', [new Recorder('s1')]);
    // A second transport from the first one's config (a per-tenant copy, say) logs in with the
    // same password: the config used to hold the URL as rendered, its password '****'.
    const second = await getTransport(undefined, { config: first.config, overrides: { 'rpc.retry': 0 } });
    ctx.transports.push(second);
    assert.is(await new RPCClient(second, new Target({ topic: 'cfgcopy' }), { timeout: 10_000 }).call({}, 'whoami'), 's1');
    await new RPCClient(first, new Target({ topic: 'cfgcopy' }), { timeout: 10_000 }).call({}, 'whoami');
    // Connected, neither the transport, its config nor its URL shows the password when
    // serialized (JSON, as pino writes) or inspected.
    for (const tr of [first, second]) {
      for (const shown of [
        JSON.stringify(tr.config),
        JSON.stringify(tr.url),
        JSON.stringify({ config: tr.config, hosts: tr.url.hosts }),
        util.inspect(tr, { depth: 8 }),
        util.inspect(tr.config),
        util.inspect(tr.url.hosts),
      ]) {
        assert.not.ok(shown.includes('S3cr3t'), shown.slice(0, 300));
      }
      assert.match(JSON.stringify(tr.config), /"transportUrl":"rabbit:\/\/cfgcopy-\d+:\*\*\*\*@127\.0\.0\.1:/);
      assert.match(JSON.stringify(tr.url.hosts), /"password":"\*\*\*\*"/);
    }
    // The values themselves are the real ones, for the driver and for a copy.
    assert.is(first.url.hosts[0]!.password, password);
    assert.is(first.config.transportUrl, url);
    assert.equal(JSON.parse(JSON.stringify(parseTransportUrl(url))).hosts[0].password, '****');
  } finally {
    await ctx.node.deleteUser(user);
  }
});

t("a server's concurrency beyond the 16-bit prefetch count serves (the prefetch is capped at 65,535)", async (ctx) => {
  await serve(ctx, 'bigpool', 's1', [new Recorder('s1')], { concurrency: 100_000 });
  const c = new RPCClient(await transport(ctx), new Target({ topic: 'bigpool' }), { timeout: 10_000 });
  assert.is(await c.call({}, 'whoami'), 's1');
});

t('the broker closes the connections: servers and clients reconnect and serve again', async (ctx) => {
  const rec = new Recorder('s');
  const fast = { 'rabbit.retryInterval': 50, 'rabbit.intervalMax': 200 };
  const server = new RPCServer(await transport(ctx, fast), new Target({ topic: 'rc', server: 's' }), [rec]);
  await server.start();
  ctx.servers.push(server);
  const c = new RPCClient(await transport(ctx, fast), new Target({ topic: 'rc' }), { timeout: 5000 });
  assert.is(await c.call({}, 'add', { a: 1, b: 1 }), 2);
  await ctx.node.ctl('close_all_connections', '-p', ctx.vhost, 'test: forced close');
  assert.is(await c.call({}, 'add', { a: 2, b: 2 }), 4);
  await c.prepare({ fanout: true }).cast({}, 'bump', { seq: 9 });
  await until(() => rec.calls.some((x) => x.method === 'bump'), 'fanout after reconnect');
});

t(
  'a connection lost while a server declares its queues: start() connects again and declares them; lost every time, start() fails naming the loss',
  async (ctx) => {
    const fast = { 'rabbit.retryInterval': 50, 'rabbit.intervalMax': 200 };
    const via = (p: CuttingProxy) => `rabbit://guest:guest@127.0.0.1:${new URL(p.url).port}/${encodeURIComponent(ctx.vhost)}`;
    // RabbitMQ closes a connection (541) whose quorum queue did not start in time: amqplib then
    // fails the declare with "Channel ended", and start() failed at once for a passing loss.
    const twice = await cuttingProxy(ctx.url, queueDeclareBytes('cutq.s1'), 2);
    try {
      const s = new RPCServer(await transport(ctx, fast, via(twice)), new Target({ topic: 'cutq', server: 's1' }), [new Recorder('s1')]);
      await s.start();
      ctx.servers.push(s);
      assert.is(twice.cuts, 2);
      const c = new RPCClient(await transport(ctx), new Target({ topic: 'cutq', server: 's1' }), { timeout: 5000 });
      assert.is(await c.call({}, 'whoami'), 's1');
    } finally {
      await twice.close();
    }
    const always = await cuttingProxy(ctx.url, queueDeclareBytes('cutq.s2'), Infinity);
    try {
      const tr = await transport(ctx, { ...fast, 'rpc.responseTimeout': 1500 }, via(always));
      const s = new RPCServer(tr, new Target({ topic: 'cutq', server: 's2' }), [new Recorder('s2')]);
      const err = await rejects(s.start(), 'HERMOD_ERR_TRANSPORT', /the connection was lost while it was being set up/);
      assert.instance(err, TransportError);
      assert.ok(always.cuts >= 2, `tried again: ${always.cuts} connections dropped`);
    } finally {
      await always.close();
    }
  },
);

t(
  "a reply the broker refuses (no write on amq.default) fails at once and frees the server's slot; it was resent every 20 ms until twice its deadline",
  async (ctx) => {
    const user = `noreply-${process.pid}`;
    await ctx.node.addUser(user, 'pw', ctx.vhost);
    // Everything but publishing to the default exchange, where replies go.
    await ctx.node.ctl('set_permissions', '-p', ctx.vhost, user, '.*', '^(?!amq\\.default$).*', '.*');
    const rec = new Recorder('s');
    const tr = await transport(ctx, { 'rpc.responseTimeout': 20_000 }, ctx.node.url(ctx.vhost, user, 'pw'));
    const server = new RPCServer(tr, new Target({ topic: 'noreply', server: 's' }), [rec], { concurrency: 1 });
    await server.start();
    ctx.servers.push(server);
    const c = new RPCClient(await transport(ctx), new Target({ topic: 'noreply' }), { timeout: 1500 });
    await rejects(c.call({}, 'echo', { value: 1 }), 'HERMOD_ERR_TIMEOUT');
    // With one slot, the second call runs only once the first one's reply is done with.
    await rejects(c.call({}, 'echo', { value: 2 }), 'HERMOD_ERR_TIMEOUT');
    assert.equal(
      rec.calls.map((x) => x.args.value),
      [1, 2],
      'the second call ran: the refused reply freed the slot',
    );
  },
);

t(
  'a call the broker refuses (no write on its exchange) fails at once, the calls sent after it on that channel fail as dropped, the ones before it are answered; all waited out their timeouts',
  async (ctx) => {
    const user = `nowrite-${process.pid}`;
    await ctx.node.addUser(user, 'pw', ctx.vhost);
    // Declaring 'refx' is allowed (configure), publishing to it is not (write).
    await ctx.node.ctl('set_permissions', '-p', ctx.vhost, user, '.*', '^(?!refx$).*', '.*');
    const ok = new Recorder('ok');
    const server = new RPCServer(await transport(ctx), new Target({ topic: 'refok', exchange: 'refok-x', server: 'ok' }), [ok]);
    await server.start();
    ctx.servers.push(server);
    const tr = await transport(ctx, {}, ctx.node.url(ctx.vhost, user, 'pw'));
    const timeout = 20_000;
    const allowed = new RPCClient(tr, new Target({ topic: 'refok', exchange: 'refok-x' }), { timeout });
    const refused = new RPCClient(tr, new Target({ topic: 'refd', exchange: 'refx' }), { timeout });
    // Declares 'refok-x' on the calls' channel set: the slow call below goes out at once.
    assert.is(await allowed.call({}, 'add', { a: 1, b: 1 }), 2);
    const before = allowed.call({}, 'sleep', { ms: 1500 });
    // Settled below; handled here so that a failed assertion before that reads as itself.
    before.catch(() => {});
    await until(() => ok.active > 0, 'the slow call reached its server', 5000);
    // A call of `allowed` made as the refused one is handed to amqplib, in the same tick: it is
    // written after it, on the same channel, before the broker's close of that channel is read.
    // Without the refusal it would be answered (its server is there).
    type Send = (ch: unknown, p: { exchange?: { name: string } }, content: Buffer) => Promise<number>;
    const publisher = (tr.driver as unknown as { publisher: { send: Send } }).publisher;
    const send = publisher.send;
    let after: Promise<unknown> | undefined;
    publisher.send = function (this: unknown, ch, p, content) {
      const sent = send.call(this, ch, p, content);
      if (p.exchange?.name === 'refx' && !after) after = allowed.call({}, 'echo', { value: 2 });
      return sent;
    };
    const started = performance.now();
    const r = await refused.call({}, 'echo', { value: 1 }).then(
      () => ({ status: 'fulfilled' }),
      (reason: unknown) => ({ status: 'rejected', reason }),
    );
    assert.ok(after, 'the refused call went out through send()');
    const d = await after.then(
      () => ({ status: 'fulfilled' }),
      (reason: unknown) => ({ status: 'rejected', reason }),
    );
    const took = performance.now() - started;
    assert.is(r.status, 'rejected');
    const refusal = (r as { reason: unknown }).reason as Error & { code?: string };
    assert.is(refusal.code, 'HERMOD_ERR_DELIVERY_FAILURE', refusal.message);
    assert.match(refusal.message, /call echo on topic refd: the broker refused it: .*ACCESS_REFUSED - access to exchange 'refx'/);
    assert.is(d.status, 'rejected');
    const dropped = (d as { reason: unknown }).reason as Error & { code?: string };
    assert.instance(dropped, TransportError, `${dropped.name}: ${dropped.message}`);
    assert.match(dropped.message, /call echo on topic refok: the broker dropped it unread, .* exchange 'refx' .* may be sent again/);
    publisher.send = send;
    assert.ok(took < 5000, `both failed in ${Math.round(took)} ms, not at their ${timeout} ms timeout`);
    assert.is(await before, 1500, 'the call sent before the refused one is answered');
    // The calls channel is open again, and the dropped call goes through when sent again.
    assert.is(await allowed.call({}, 'add', { a: 2, b: 3 }), 5);
  },
);

t(
  "a target's exchange does not keep a topic apart (oslo's queue names are the topic's): servers on two exchanges share its calls and fanout casts",
  async (ctx) => {
    const [a, b] = [new Recorder('a'), new Recorder('b')];
    for (const [rec, exchange] of [
      [a, 'shx-a'],
      [b, 'shx-b'],
    ] as const) {
      const s = new RPCServer(await transport(ctx), new Target({ topic: 'shx', exchange, server: rec.name }), [rec]);
      await s.start();
      ctx.servers.push(s);
    }
    const c = new RPCClient(await transport(ctx), new Target({ topic: 'shx', exchange: 'shx-a' }), { timeout: 5000 });
    const who = new Set<string>();
    for (let i = 0; i < 8; i++) who.add((await c.call({}, 'whoami')) as string);
    assert.equal([...who].sort(), ['a', 'b'], 'calls to exchange shx-a reach the server on shx-b too');
    await c.prepare({ fanout: true }).cast({}, 'bump', { seq: 1 });
    const bumped = (r: Recorder) => r.calls.some((x) => x.method === 'bump');
    await until(() => bumped(a) && bumped(b), 'the fanout cast at both servers', 5000);
  },
);

t(
  'a MultiCall that is the first thing a transport does goes out in one write; each call declared the exchange and was a write of its own',
  async (ctx) => {
    await serve(ctx, 'mcw', 's', [new Recorder('s')]);
    const proxy = await cuttingProxy(ctx.url, Buffer.from('oslo.message'), 0);
    try {
      const url = `rabbit://guest:guest@127.0.0.1:${new URL(proxy.url).port}/${encodeURIComponent(ctx.vhost)}`;
      const c = new RPCClient(await transport(ctx, {}, url), new Target({ topic: 'mcw' }), { timeout: 5000 });
      const m = c.multicall({});
      for (let i = 0; i < 20; i++) m.call('add', { a: i, b: 1 });
      const r = await m.run();
      assert.equal(
        r.settled().map((x) => (x.ok ? x.value : x.error)),
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
      // Socket chunks reach the proxy as the client wrote them (one TCP segment each on loopback, with noDelay).
      assert.is(proxy.seen, 1, `the 20 requests in ${proxy.seen} writes`);
    } finally {
      await proxy.close();
    }
  },
);

t(
  'a topic permission refuses one routing key: only that call fails as refused, a call before it on the same exchange is answered, the one after it is dropped',
  async (ctx) => {
    const user = `topicperm-${process.pid}`;
    await ctx.node.addUser(user, 'pw', ctx.vhost);
    // Every exchange and key but 'tdenied' on 'tperm-x'.
    await ctx.node.ctl('set_topic_permissions', '-p', ctx.vhost, user, 'tperm-x', '^tallowed$', '.*');
    const ok = new Recorder('ok');
    const server = new RPCServer(await transport(ctx), new Target({ topic: 'tallowed', exchange: 'tperm-x', server: 'ok' }), [ok]);
    await server.start();
    ctx.servers.push(server);
    const tr = await transport(ctx, {}, ctx.node.url(ctx.vhost, user, 'pw'));
    const allowed = new RPCClient(tr, new Target({ topic: 'tallowed', exchange: 'tperm-x' }), { timeout: 20_000 });
    const denied = new RPCClient(tr, new Target({ topic: 'tdenied', exchange: 'tperm-x' }), { timeout: 20_000 });
    // Declares the exchange on these channels: the three calls below go out in one write, in order.
    assert.is(await allowed.call({}, 'add', { a: 1, b: 1 }), 2);
    const settle = (p: Promise<unknown>) =>
      p.then(
        (value) => ({ value, error: undefined as (Error & { code?: string }) | undefined }),
        (error: Error & { code?: string }) => ({ value: undefined, error }),
      );
    const started = performance.now();
    const [before, refused, after] = await Promise.all([
      settle(allowed.call({}, 'sleep', { ms: 800 })),
      settle(denied.call({}, 'echo', { value: 1 })),
      settle(allowed.call({}, 'echo', { value: 2 })),
    ]);
    assert.is(before.error, undefined, `the call before the refused one, to the same exchange: ${before.error?.message}`);
    assert.is(before.value, 800);
    assert.is(refused.error?.code, 'HERMOD_ERR_DELIVERY_FAILURE', refused.error?.message);
    assert.match(
      refused.error!.message,
      /call echo on topic tdenied: the broker refused it: .*access to topic 'tdenied' in exchange 'tperm-x'/,
    );
    assert.instance(after.error, TransportError, after.error?.message);
    assert.match(after.error!.message, /call echo on topic tallowed: the broker dropped it unread/);
    assert.ok(performance.now() - started < 5000, 'none waited out its timeout');
    assert.equal(
      ok.calls.filter((c) => c.method === 'echo'),
      [],
      'the dropped call never reached the server',
    );
    // Casts are confirmed: the ones to the allowed key waiting on the refused one's channel are
    // sent again, not failed as refused with it.
    const casts = await Promise.all([
      settle(allowed.cast({}, 'bump', { seq: 1 })),
      settle(denied.cast({}, 'bump', { seq: 2 })),
      settle(allowed.cast({}, 'bump', { seq: 3 })),
    ]);
    assert.is(casts[1]!.error?.code, 'HERMOD_ERR_DELIVERY_FAILURE', casts[1]!.error?.message);
    assert.equal([casts[0]!.error?.message, casts[2]!.error?.message], [undefined, undefined]);
    const bumps = () => ok.calls.filter((c) => c.method === 'bump').map((c) => (c.args as { seq: number }).seq);
    await until(() => bumps().length === 2, 'both allowed casts at the server', 5000);
    assert.equal(bumps().sort(), [1, 3]);
  },
);

t('an exchange deleted under a notifier: the notifications on their way are resent and declared again, none fails', async (ctx) => {
  const tr = await transport(ctx, { controlExchange: 'exdel-x' });
  const notifier = new Notifier(tr, { publisherId: 'p', topics: ['exdel'] });
  await notifier.info({}, 'one', {});
  const ch = await (await raw(ctx)).createChannel();
  await ch.deleteExchange('exdel-x');
  // A 404 on an exchange hermod declares itself is no refusal: the next channel declares it again
  // (only a 403 fails the publishes it names at once).
  await Promise.all([notifier.info({}, 'two', {}), notifier.info({}, 'three', {}), notifier.info({}, 'four', {})]);
  let queued = 0;
  for (const end = Date.now() + 10_000; queued < 4 && Date.now() < end; await sleep(100))
    queued = (await ctx.node.queues(ctx.vhost)).get('exdel.info')?.messages ?? 0;
  assert.is(queued, 4, 'the four notifications are queued');
});

t('failover: a dead first host is skipped at once, as kombu does (the backoff comes after a round of every host)', async (ctx) => {
  const url = `rabbit://guest:guest@127.0.0.1:1,guest:guest@127.0.0.1:${ctx.node.port}/${encodeURIComponent(ctx.vhost)}`;
  // A long retry interval: each new connection waited it out before trying the second host.
  const slow = { 'rabbit.retryInterval': 10_000 };
  const started = performance.now();
  const s = new RPCServer(await transport(ctx, slow, url), new Target({ topic: 'fo', server: 's' }), [new Recorder('s')]);
  await s.start();
  ctx.servers.push(s);
  const c = new RPCClient(await transport(ctx, slow, url), new Target({ topic: 'fo' }), { timeout: 5000 });
  assert.is(await c.call({}, 'add', { a: 1, b: 2 }), 3);
  assert.ok(performance.now() - started < 5000, `${Math.round(performance.now() - started)} ms`);
});

t('quorum queues: topic and server queues are quorum, reply and fanout stay classic', async (ctx) => {
  const tr = await transport(ctx, { 'rabbit.quorumQueues': true, controlExchange: 'quorum-ex' });
  const s = new RPCServer(tr, new Target({ topic: 'qq', server: 's' }), [new Recorder('s')]);
  await s.start();
  ctx.servers.push(s);
  const c = new RPCClient(
    await transport(ctx, { 'rabbit.quorumQueues': true, controlExchange: 'quorum-ex' }),
    new Target({ topic: 'qq' }),
    { timeout: 5000 },
  );
  assert.is(await c.call({}, 'add', { a: 2, b: 2 }), 4);
  const q = await ctx.node.queues(ctx.vhost);
  assert.match(q.get('qq')!.arguments, /x-queue-type.*quorum/);
  assert.ok(q.get('qq')!.durable, 'quorum forces durable');
  assert.match(q.get('qq.s')!.arguments, /quorum/);
  const fanout = [...q.keys()].find((n) => n.startsWith('qq_fanout_'))!;
  assert.not.match(q.get(fanout)!.arguments, /quorum/);
});

// RabbitMQ drops an expired request while it is queued, but a server takes one per queue (topic,
// server, fanout) up to its concurrency, and a request taken early waits in the server: there it
// ran after its caller's MessagingTimeout.
t('a call that timed out while the server held it behind its concurrency does not run; a fresh call is answered at once', async (ctx) => {
  let blocked = 0;
  let runs = 0;
  let release: () => void = () => {};
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const ep = {
    async block() {
      blocked++;
      await gate;
      return 'released';
    },
    async work() {
      runs++;
      return runs;
    },
  };
  const s = await serve(ctx, 'expiry', 's', [ep], { concurrency: 1 });
  const c = new RPCClient(await transport(ctx), new Target({ topic: 'expiry' }), { timeout: 30_000 });
  const first = c.call({}, 'block');
  await until(() => blocked === 1, 'the server runs block');
  // To the server's own queue, whose consumer still has room in its prefetch of 1.
  await rejects(c.prepare({ server: 's', timeout: 1000 }).call({}, 'work'), 'HERMOD_ERR_TIMEOUT');
  assert.is(s.stats().queued, 1, 'held in the server, not in the queue');
  await sleep(500);
  release();
  assert.is(await first, 'released');
  const t0 = performance.now();
  assert.is(await c.prepare({ timeout: 10_000 }).call({}, 'work'), 1, 'the timed-out request did not run first');
  assert.ok(performance.now() - t0 < 3000, `answered in ${Math.round(performance.now() - t0)} ms`);
  await sleep(200);
  assert.is(runs, 1);
  assert.is(s.stats().expired, 1);
});

t.run();
