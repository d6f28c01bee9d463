import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import diagnostics_channel from 'node:diagnostics_channel';
import {
  getTransport, defaultConfig, Target, RPCServer, RPCClient, RemoteError, NoSuchMethod, type Transport,
  type ServerRequestEvent,
} from '../../src/index.js';
import { MemoryDriver } from '../../src/driver/memory/index.js';
import { Recorder, Versioned } from '../support/endpoints.js';
import { rejects, sleep, until } from '../support/assert.js';

let n = 0;
const fresh = () => `rpc${++n}`;

interface Ctx { transport: Transport; servers: RPCServer[] }
const t = suite<Ctx>('rpc over memory', { transport: undefined as never, servers: [] });

t.before.each(async (ctx) => {
  ctx.transport = await getTransport(`memory://${fresh()}`, { config: defaultConfig() });
  ctx.servers = [];
});
t.after.each(async (ctx) => {
  for (const s of ctx.servers) { await s.stop(); await s.wait(1000); }
  await ctx.transport.close();
});

async function serve(ctx: Ctx, topic: string, server: string, endpoints: object[], opts = {}, transport = ctx.transport) {
  const s = new RPCServer(transport, new Target({ topic, server }), endpoints, opts);
  await s.start();
  ctx.servers.push(s);
  return s;
}

t('call returns the result and the context crosses intact', async (ctx) => {
  await serve(ctx, 'calc', 's1', [new Recorder('s1')]);
  const c = new RPCClient(ctx.transport, new Target({ topic: 'calc' }), { timeout: 2000 });
  assert.is(await c.call({}, 'add', { a: 2, b: 3 }), 5);
  const context = { request_id: 'req-1', user: 'alice', roles: ['admin'], nested: { a: 1 } };
  assert.equal(await c.call(context, 'ctx'), context);
  assert.equal(await c.call({}, 'echo', { value: { list: [1, 'two', null], t: true } }), { list: [1, 'two', null], t: true });
});

t('cast runs without a reply', async (ctx) => {
  const rec = new Recorder('s1');
  await serve(ctx, 'c', 's1', [rec]);
  const c = new RPCClient(ctx.transport, new Target({ topic: 'c' }));
  assert.is(await c.cast({ user: 'bob' }, 'bump', { seq: 1 }), undefined);
  await until(() => rec.calls.length === 1, 'the cast');
  assert.equal(rec.calls[0], { method: 'bump', ctx: { user: 'bob' }, args: { seq: 1 } });
});

t('competing servers on one topic share the calls; server= directs one', async (ctx) => {
  await serve(ctx, 'work', 'a', [new Recorder('a')]);
  await serve(ctx, 'work', 'b', [new Recorder('b')]);
  const c = new RPCClient(ctx.transport, new Target({ topic: 'work' }), { timeout: 2000 });
  const who: string[] = [];
  for (let i = 0; i < 20; i++) who.push(await c.call<string>({}, 'whoami'));
  assert.is(who.filter((w) => w === 'a').length, 10);
  assert.is(who.filter((w) => w === 'b').length, 10);
  const toB = c.prepare({ server: 'b' });
  for (let i = 0; i < 5; i++) assert.is(await toB.call({}, 'whoami'), 'b');
});

t('fanout cast reaches every server on the topic, and only that topic', async (ctx) => {
  const a = new Recorder('a'); const b = new Recorder('b'); const other = new Recorder('o');
  await serve(ctx, 'fan', 'a', [a]);
  await serve(ctx, 'fan', 'b', [b]);
  await serve(ctx, 'fan2', 'o', [other]);
  const c = new RPCClient(ctx.transport, new Target({ topic: 'fan' }));
  await c.prepare({ fanout: true }).cast({}, 'bump', { seq: 9 });
  await until(() => a.calls.length === 1 && b.calls.length === 1, 'both fanout deliveries');
  await sleep(20);
  assert.is(other.calls.length, 0);
  await rejects(() => c.prepare({ fanout: true }).call({}, 'whoami'), 'HERMOD_ERR_INVALID_TARGET', /cannot be fanout/);
});

t('exchanges keep equal topics apart', async (ctx) => {
  await serve(ctx, 'same', 'n', [new Recorder('nova')], {});
  const s = new RPCServer(ctx.transport, new Target({ exchange: 'cinder', topic: 'same', server: 'c' }), [new Recorder('cinder')]);
  await s.start();
  ctx.servers.push(s);
  const nova = new RPCClient(ctx.transport, new Target({ topic: 'same' }), { timeout: 1000 });
  const cinder = new RPCClient(ctx.transport, new Target({ exchange: 'cinder', topic: 'same' }), { timeout: 1000 });
  for (let i = 0; i < 4; i++) {
    assert.is(await nova.call({}, 'whoami'), 'nova');
    assert.is(await cinder.call({}, 'whoami'), 'cinder');
  }
});

t('transports sharing a memory:// name talk to each other; other names do not', async (ctx) => {
  const name = fresh();
  const t1 = await getTransport(`memory://${name}`, { config: defaultConfig() });
  const t2 = await getTransport(`memory://${name}`, { config: defaultConfig() });
  const t3 = await getTransport(`memory://${fresh()}`, { config: defaultConfig() });
  try {
    await serve(ctx, 'x', 's', [new Recorder('s')], {}, t1);
    assert.is(await new RPCClient(t2, new Target({ topic: 'x' }), { timeout: 1000 }).call({}, 'whoami'), 's');
    await rejects(new RPCClient(t3, new Target({ topic: 'x' }), { timeout: 50 }).call({}, 'whoami'), 'HERMOD_ERR_TIMEOUT');
  } finally {
    for (const s of ctx.servers.splice(0)) { await s.stop(); await s.wait(); }
    await t1.close(); await t2.close(); await t3.close();
  }
});

t('a call nobody serves times out with MessagingTimeout at its deadline', async (ctx) => {
  const c = new RPCClient(ctx.transport, new Target({ topic: 'nobody' }), { timeout: 100 });
  const started = Date.now();
  await rejects(c.call({}, 'x'), 'HERMOD_ERR_TIMEOUT', /after 100 ms/);
  const took = Date.now() - started;
  assert.ok(took >= 95 && took < 1000, `took ${took} ms`);
  await rejects(c.call({}, 'x', {}, { timeout: 30 }), 'HERMOD_ERR_TIMEOUT', /after 30 ms/);
});

t('call monitor: heartbeats keep a long call alive past the monitor timeout', async (ctx) => {
  await serve(ctx, 'slow', 's', [new Recorder('s')]);
  const c = new RPCClient(ctx.transport, new Target({ topic: 'slow' }), { timeout: 5000, callMonitorTimeout: 100 });
  assert.is(await c.call({}, 'sleep', { ms: 400 }), 400);
});

t('call monitor: a server that dies mid-call is detected within the monitor timeout', async (ctx) => {
  // A listener that takes the request and never answers nor heartbeats: a hung or dead server.
  const driver = ctx.transport.driver as MemoryDriver;
  const hung = await driver.listen(new Target({ topic: 'dead', server: 'z' }), { prefetch: 10, onMessage: () => {} });
  try {
    const c = new RPCClient(ctx.transport, new Target({ topic: 'dead' }), { timeout: 10_000, callMonitorTimeout: 150 });
    const started = Date.now();
    await rejects(c.call({}, 'anything'), 'HERMOD_ERR_TIMEOUT', /no heartbeat from the server for 150 ms/);
    assert.ok(Date.now() - started < 1000);
  } finally {
    await hung.stop();
  }
});

t('remote errors arrive typed: class, message, module; NoSuchMethod and versions', async (ctx) => {
  await serve(ctx, 'err', 's', [new Recorder('s'), new Versioned()]);
  const c = new RPCClient(ctx.transport, new Target({ topic: 'err' }), { timeout: 2000 });
  const e = await rejects(c.call({}, 'fail', { message: 'boom' }), 'HERMOD_ERR_REMOTE', /TypeError boom/);
  assert.ok(e instanceof RemoteError);
  assert.is((e as RemoteError).excType, 'TypeError');
  assert.is((e as RemoteError).value, 'boom');
  assert.equal((e as RemoteError).traceback, []);
  const s = await rejects(c.call({}, 'throwString'), 'HERMOD_ERR_REMOTE', /just a string/);
  assert.is((s as RemoteError).excType, 'NonErrorThrown');
  const nsm = await rejects(c.call({}, 'nonexistent'), 'HERMOD_ERR_NO_SUCH_METHOD', /nonexistent/);
  assert.ok(nsm instanceof NoSuchMethod);
  await rejects(c.call({}, '_private'), 'HERMOD_ERR_NO_SUCH_METHOD');
  await rejects(c.call({}, 'constructor'), 'HERMOD_ERR_NO_SUCH_METHOD');
  await rejects(c.call({}, '__proto__'), 'HERMOD_ERR_NO_SUCH_METHOD');
  const math = c.prepare({ namespace: 'math', version: '1.1' });
  assert.is(await math.call({}, 'mul', { a: 6, b: 7 }), 42);
  await rejects(c.prepare({ namespace: 'math', version: '1.4' }).call({}, 'mul', { a: 1, b: 1 }), 'HERMOD_ERR_UNSUPPORTED_VERSION', /1\.4/);
  await rejects(c.prepare({ namespace: 'math', version: '2.0' }).call({}, 'mul', { a: 1, b: 1 }), 'HERMOD_ERR_UNSUPPORTED_VERSION');
  await rejects(c.prepare({ namespace: 'nope' }).call({}, 'mul', { a: 1, b: 1 }), 'HERMOD_ERR_UNSUPPORTED_VERSION', /namespace 'nope'/);
  // The server kept serving through all of it.
  assert.is(await c.call({}, 'add', { a: 1, b: 1 }), 2);
});

t('traceback is opt-in on the server', async (ctx) => {
  await serve(ctx, 'tb', 's', [new Recorder('s')], { sendTraceback: true });
  const c = new RPCClient(ctx.transport, new Target({ topic: 'tb' }), { timeout: 2000 });
  const e = (await rejects(c.call({}, 'fail', { message: 'x' }), 'HERMOD_ERR_REMOTE')) as RemoteError;
  assert.ok(e.traceback.some((l) => l.includes('TypeError: x')));
});

t('non-serialisable results and arguments give typed errors; the server keeps serving', async (ctx) => {
  const transport = await getTransport(`memory://${fresh()}`, { config: defaultConfig(), overrides: { maxMessageSize: 10_000 } });
  try {
    await serve(ctx, 'ser', 's', [new Recorder('s')], {}, transport);
    const c = new RPCClient(transport, new Target({ topic: 'ser' }), { timeout: 2000 });
    await rejects(c.call({}, 'bigint'), 'HERMOD_ERR_SERIALIZATION', /BigInt/);
    await rejects(c.call({}, 'cycle'), 'HERMOD_ERR_SERIALIZATION', /circular/);
    await rejects(c.call({}, 'huge', { bytes: 20_000 }), 'HERMOD_ERR_MESSAGE_TOO_LARGE', /exceeds the limit of 10000/);
    await rejects(c.call({}, 'echo', { value: 5n }), 'HERMOD_ERR_SERIALIZATION', /BigInt/);
    await rejects(c.call({}, 'echo', { value: 'y'.repeat(20_000) }), 'HERMOD_ERR_MESSAGE_TOO_LARGE');
    assert.is(await c.call({}, 'add', { a: 2, b: 2 }), 4);
  } finally {
    for (const s of ctx.servers.splice(0)) { await s.stop(); await s.wait(); }
    await transport.close();
  }
});

t('bad client input: missing topic, non-object arguments, bad options, version cap', async (ctx) => {
  const noTopic = new RPCClient(ctx.transport, new Target({}));
  await rejects(noTopic.call({}, 'x'), 'HERMOD_ERR_INVALID_TARGET', /requires a topic/);
  await rejects(noTopic.cast({}, 'x'), 'HERMOD_ERR_INVALID_TARGET', /requires a topic/);
  const c = new RPCClient(ctx.transport, new Target({ topic: 't', version: '1.5' }), { versionCap: '1.3' });
  for (const bad of [[1, 2], 'str', 5, null]) {
    await rejects(c.prepare({ version: '1.0' }).call({}, 'm', bad as never), 'HERMOD_ERR_INVALID_ARGUMENT', /named arguments/);
  }
  await rejects(c.prepare({ version: '1.0' }).call([] as never, 'm'), 'HERMOD_ERR_INVALID_ARGUMENT', /context/);
  await rejects(c.prepare({ version: '1.0' }).call({}, ''), 'HERMOD_ERR_INVALID_ARGUMENT', /method/);
  await rejects(c.call({}, 'm'), 'HERMOD_ERR_VERSION_CAP', /1\.5 is incompatible.*1\.3/);
  assert.not.ok(c.canSendVersion());
  assert.ok(c.canSendVersion('1.2'));
  assert.not.ok(c.canSendVersion('2.0'));
  assert.ok(c.prepare({ versionCap: '1.6' }).canSendVersion());
  assert.ok(new RPCClient(ctx.transport, new Target({ topic: 't' })).canSendVersion('9.9'));
  await rejects(() => new RPCClient(ctx.transport, new Target({ topic: 't' }), { timeout: -1 }), 'HERMOD_ERR_INVALID_ARGUMENT', /timeout/);
  await rejects(() => new RPCClient(ctx.transport, new Target({ topic: 't' }), { versionCap: 'x' }), 'HERMOD_ERR_INVALID_ARGUMENT', /versionCap/);
  await rejects(() => new RPCClient(ctx.transport, new Target({ topic: 't' }), { retry: -2 }), 'HERMOD_ERR_INVALID_ARGUMENT', /retry/);
  await rejects(() => new RPCClient(ctx.transport, {} as Target), 'HERMOD_ERR_INVALID_ARGUMENT');
  await rejects(c.prepare({ version: '1.0' }).call({}, 'm', {}, { timeout: 0 }), 'HERMOD_ERR_INVALID_ARGUMENT', /timeout/);
});

t('malformed requests get a typed failure; the server keeps serving', async (ctx) => {
  await serve(ctx, 'raw', 's', [new Recorder('s')]);
  const driver = ctx.transport.driver;
  const target = new Target({ topic: 'raw' });
  const badArgs = await driver.send(target, {}, { method: 'echo', args: [1] as never }, { waitForReply: true, timeout: 1000 });
  assert.is(badArgs?.failure?.class, 'InvalidArgument');
  const noMethod = await driver.send(target, {}, { method: undefined as never, args: {} }, { waitForReply: true, timeout: 1000 });
  assert.is(noMethod?.failure?.class, 'MalformedMessage');
  // Raw garbage straight into the topic queue: dropped and reported, not a crash.
  const invalid: unknown[] = [];
  const sub = (e: unknown) => invalid.push(e);
  diagnostics_channel.subscribe('hermod:message:invalid', sub);
  try {
    const broker = (driver as MemoryDriver).broker;
    broker.publish('openstack', 'raw', '{not json');
    broker.publish('openstack', 'raw', '{"ctx":{}}');
    await until(() => invalid.length === 2, 'two invalid-message events');
  } finally {
    diagnostics_channel.unsubscribe('hermod:message:invalid', sub);
  }
  const c = new RPCClient(ctx.transport, target, { timeout: 1000 });
  assert.is(await c.call({}, 'add', { a: 1, b: 2 }), 3);
});

t('a server runs at most its concurrency at once', async (ctx) => {
  const rec = new Recorder('s');
  const s = await serve(ctx, 'conc', 's', [rec], { concurrency: 3 });
  const c = new RPCClient(ctx.transport, new Target({ topic: 'conc' }), { timeout: 5000 });
  const results = await Promise.all(Array.from({ length: 12 }, () => c.call({}, 'sleep', { ms: 30 })));
  assert.is(results.length, 12);
  assert.is(rec.maxActive, 3);
  assert.is(s.stats().served, 12);
  assert.is(s.stats().inFlight, 0);
});

t('a client bounds in-flight calls: callers wait, or fail fast when configured', async (ctx) => {
  const rec = new Recorder('s');
  await serve(ctx, 'inf', 's', [rec], { concurrency: 50 });
  const c = new RPCClient(ctx.transport, new Target({ topic: 'inf' }), { timeout: 5000, maxInFlight: 2 });
  const all = Promise.all(Array.from({ length: 6 }, () => c.call({}, 'sleep', { ms: 30 })));
  await sleep(10);
  assert.is(c.inFlight, 2);
  await all;
  assert.is(rec.maxActive, 2);
  const fast = new RPCClient(ctx.transport, new Target({ topic: 'inf' }), { timeout: 5000, maxInFlight: 1, inFlightOverflow: 'fail' });
  const first = fast.call({}, 'sleep', { ms: 50 });
  await rejects(fast.call({}, 'sleep', { ms: 1 }), 'HERMOD_ERR_TOO_MANY_IN_FLIGHT', /1 calls already in flight/);
  await first;
  const waiting = new RPCClient(ctx.transport, new Target({ topic: 'inf' }), { timeout: 5000, maxInFlight: 1 });
  const long = waiting.call({}, 'sleep', { ms: 200 });
  await rejects(waiting.call({}, 'sleep', { ms: 1 }, { timeout: 50 }), 'HERMOD_ERR_TIMEOUT', /in-flight slots/);
  await long;
});

t('stop() stops new work, wait() drains in-flight calls and their replies are sent', async (ctx) => {
  const s = await serve(ctx, 'drain', 's', [new Recorder('s')]);
  const c = new RPCClient(ctx.transport, new Target({ topic: 'drain' }), { timeout: 2000 });
  const inflight = c.call({}, 'sleep', { ms: 100 });
  await until(() => s.stats().inFlight === 1, 'the call to start');
  await s.stop();
  const late = c.call({}, 'add', { a: 1, b: 1 }, { timeout: 150 });
  const res = await s.wait(2000);
  assert.equal(res, { completed: 1, aborted: 0 });
  assert.is(await inflight, 100);
  await rejects(late, 'HERMOD_ERR_TIMEOUT');
  await rejects(s.start(), 'HERMOD_ERR_CLOSED', /cannot be started again/);
});

t('wait() with a deadline aborts what is left and the caller hears ServerStopped', async (ctx) => {
  const s = await serve(ctx, 'abort', 's', [new Recorder('s')]);
  const c = new RPCClient(ctx.transport, new Target({ topic: 'abort' }), { timeout: 5000 });
  const a = c.call({}, 'sleep', { ms: 500 });
  const b = c.call({}, 'sleep', { ms: 500 });
  await until(() => s.stats().inFlight === 2, 'two calls running');
  await s.stop();
  assert.equal(await s.wait(50), { completed: 0, aborted: 2 });
  await rejects(a, 'HERMOD_ERR_SERVER_STOPPED', /stopped before sleep finished/);
  await rejects(b, 'HERMOD_ERR_SERVER_STOPPED');
  await sleep(500); // the abandoned methods finish; their late results must go nowhere
});

t('abort(): stops and ends running calls at once; callers hear ServerStopped', async (ctx) => {
  const s = await serve(ctx, 'abort-now', 's', [new Recorder('s')]);
  const c = new RPCClient(ctx.transport, new Target({ topic: 'abort-now' }), { timeout: 5000 });
  const a = c.call({}, 'sleep', { ms: 2000 });
  await until(() => s.stats().inFlight === 1, 'the call running');
  const t0 = Date.now();
  assert.equal(await s.abort(), { completed: 0, aborted: 1 });
  await rejects(a, 'HERMOD_ERR_SERVER_STOPPED');
  assert.ok(Date.now() - t0 < 500, 'did not wait for the 2 s method');
});

t('a stopped server leaves queued requests for the next server on the topic', async (ctx) => {
  const first = await serve(ctx, 'handover', 'one', [new Recorder('one')], { concurrency: 1 });
  const c = new RPCClient(ctx.transport, new Target({ topic: 'handover' }), { timeout: 3000 });
  const calls = [c.call({}, 'sleep', { ms: 80 }), c.call({}, 'whoami'), c.call({}, 'whoami')];
  await until(() => first.stats().inFlight === 1, 'the first call');
  await first.stop();
  await serve(ctx, 'handover', 'two', [new Recorder('two')]);
  const [slept, w1, w2] = await Promise.all(calls);
  assert.is(slept, 80);
  assert.equal([w1, w2], ['two', 'two']);
});

t('server events report method, duration and outcome', async (ctx) => {
  const events: ServerRequestEvent[] = [];
  const sub = (e: unknown) => events.push(e as ServerRequestEvent);
  diagnostics_channel.subscribe('hermod:rpc:server:request', sub);
  try {
    await serve(ctx, 'ev', 's', [new Recorder('s')]);
    const c = new RPCClient(ctx.transport, new Target({ topic: 'ev' }), { timeout: 1000 });
    await c.call({}, 'add', { a: 1, b: 1 });
    await c.call({}, 'fail', { message: 'x' }).catch(() => {});
    await until(() => events.length === 2, 'two events');
    assert.equal(events.map((e) => [e.method, e.kind, e.outcome]), [['add', 'call', 'ok'], ['fail', 'call', 'error']]);
    assert.ok(events.every((e) => e.durationMs >= 0 && e.server === 's'));
  } finally {
    diagnostics_channel.unsubscribe('hermod:rpc:server:request', sub);
  }
});

t('typed proxy calls the remote methods', async (ctx) => {
  await serve(ctx, 'px', 's', [new Recorder('s'), new Versioned()]);
  const c = new RPCClient(ctx.transport, new Target({ topic: 'px' }), { timeout: 1000 });
  const rec = c.proxy<Recorder>({ user: 'p' });
  assert.is(await rec.add({ a: 20, b: 22 }), 42);
  assert.is(await rec.whoami(), 's');
  const math = c.prepare({ namespace: 'math', version: '1.0' }).proxy<Versioned>();
  assert.is(await math.mul({ a: 3, b: 3 }), 9);
  assert.is((rec as unknown as { then?: unknown }).then, undefined);
});

t('closing a transport fails pending calls with ClosedError and refuses new work', async () => {
  const tr = await getTransport(`memory://${fresh()}`, { config: defaultConfig() });
  const c = new RPCClient(tr, new Target({ topic: 'nobody' }), { timeout: 5000 });
  const pending = c.call({}, 'x');
  await sleep(5);
  await tr.close();
  await rejects(pending, 'HERMOD_ERR_CLOSED');
  await rejects(c.call({}, 'x'), 'HERMOD_ERR_CLOSED');
  await rejects(c.cast({}, 'x'), 'HERMOD_ERR_CLOSED');
  await rejects(new RPCServer(tr, new Target({ topic: 'a', server: 'b' }), [{}]).start(), 'HERMOD_ERR_CLOSED');
});

t('server construction checks its target, endpoints and concurrency', async (ctx) => {
  await rejects(() => new RPCServer(ctx.transport, new Target({ topic: 't' }), [{}]), 'HERMOD_ERR_INVALID_TARGET', /server name/);
  await rejects(() => new RPCServer(ctx.transport, new Target({ topic: 't', server: 's' }), []), 'HERMOD_ERR_INVALID_ARGUMENT');
  await rejects(() => new RPCServer(ctx.transport, new Target({ topic: 't', server: 's' }), [{}], { concurrency: 0 }), 'HERMOD_ERR_INVALID_ARGUMENT', /concurrency/);
  await rejects(() => new RPCServer(ctx.transport, {} as Target, [{}]), 'HERMOD_ERR_INVALID_ARGUMENT');
});

t.run();
