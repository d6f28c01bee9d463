import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultConfig, getTransport, type RemoteError, RPCClient, RPCServer, Target, type Transport } from '../../src/index.js';
import { rejects, until } from './assert.js';
import { Recorder, Versioned } from './endpoints.js';
import { OsloPeer, osloAvailable, type PyError } from './oslo.js';

// The same interop cases on every broker: python3-oslo.messaging processes (client and two
// servers) against hermod, in both directions.

/** Where the peers meet: a URL both hermod and oslo.messaging understand, and its teardown. */
export interface Broker {
  url: string;
  stop(): Promise<void>;
}

interface Ctx {
  broker: Broker;
  url: string;
  transports: Transport[];
  servers: RPCServer[];
  pyClient: OsloPeer;
  pyServers: OsloPeer[];
}
export function interopSuite(name: string, broker: () => Promise<Broker>) {
  const t = suite<Ctx>(name, {} as Ctx);

  t.before(async (ctx) => {
    if (!osloAvailable()) throw new Error('python3-oslo.messaging is not installed (.ci/run installs it)');
    ctx.broker = await broker();
    ctx.url = ctx.broker.url;
    ctx.transports = [];
    ctx.servers = [];
    // Two Python servers on topic "py" (p1, p2) and one Python client, started in parallel.
    const [client, p1, p2] = await Promise.all([
      OsloPeer.start('client', { url: ctx.url }),
      OsloPeer.start('server', { url: ctx.url, topic: 'py', server: 'p1' }),
      OsloPeer.start('server', { url: ctx.url, topic: 'py', server: 'p2' }),
    ]);
    ctx.pyClient = client;
    ctx.pyServers = [p1, p2];
  });

  t.after(async (ctx) => {
    for (const s of ctx.servers ?? []) {
      await s.stop();
      await s.wait(1000);
    }
    await Promise.all([ctx.pyClient, ...(ctx.pyServers ?? [])].filter(Boolean).map((p) => p.stop()));
    for (const tr of ctx.transports ?? []) await tr.close();
    await ctx.broker?.stop();
  });

  async function transport(ctx: Ctx): Promise<Transport> {
    const tr = await getTransport(ctx.url, { config: defaultConfig() });
    ctx.transports.push(tr);
    return tr;
  }
  async function serve(ctx: Ctx, topic: string, server: string, endpoints: object[]) {
    const s = new RPCServer(await transport(ctx), new Target({ topic, server }), endpoints);
    await s.start();
    ctx.servers.push(s);
    return s;
  }
  async function pyError(p: Promise<unknown>): Promise<PyError> {
    try {
      await p;
    } catch (err) {
      return (err as { py: PyError }).py;
    }
    throw new Error('expected the Python call to fail');
  }

  // ---- Python client -> hermod server ----

  t('python client calls, casts and server-directed calls a hermod server', async (ctx) => {
    const h1 = new Recorder('h1');
    const h2 = new Recorder('h2');
    await serve(ctx, 'hs', 'h1', [h1, new Versioned()]);
    await serve(ctx, 'hs', 'h2', [h2, new Versioned()]);
    const py = ctx.pyClient;
    assert.is(await py.call({ topic: 'hs', method: 'add', args: { a: 40, b: 2 } }), 42);
    const context = { request_id: 'req-abc', user_id: 'u1', roles: ['admin', 'member'], is_admin: true, n: 1.5 };
    assert.equal(await py.call({ topic: 'hs', method: 'ctx', ctx: context }), context, 'context crosses intact');
    assert.equal(
      await py.call({ topic: 'hs', method: 'echo', args: { value: { nested: [1, 'two', null, { three: 3 }], u: 'héllo ☃' } } }),
      { nested: [1, 'two', null, { three: 3 }], u: 'héllo ☃' },
    );
    for (let i = 0; i < 3; i++) assert.is(await py.call({ topic: 'hs', method: 'whoami', server: 'h2' }), 'h2');
    const who = await Promise.all(Array.from({ length: 8 }, () => py.call({ topic: 'hs', method: 'whoami' })));
    assert.ok(who.includes('h1') && who.includes('h2'), `anycast spread over both servers: ${who}`);

    const before = h1.calls.length + h2.calls.length;
    const r = await py.request({ op: 'cast', topic: 'hs', method: 'bump', args: { seq: 1 }, ctx: { request_id: 'c1' } });
    assert.ok(r.ok);
    await py.request({ op: 'cast', topic: 'hs', method: 'bump', args: { seq: 2 }, fanout: true });
    await until(() => h1.calls.length + h2.calls.length === before + 3, 'one cast and a fanout copy on each server');
    const bumps = [...h1.calls, ...h2.calls].filter((c) => c.method === 'bump');
    assert.equal(bumps.map((c) => (c.args as { seq: number }).seq).sort(), [1, 2, 2]);
    assert.is(bumps.find((c) => (c.args as { seq: number }).seq === 1)!.ctx.request_id, 'c1');
    assert.ok(
      h1.calls.some((c) => c.method === 'bump' && (c.args as { seq: number }).seq === 2),
      'fanout reached h1',
    );
    assert.ok(
      h2.calls.some((c) => c.method === 'bump' && (c.args as { seq: number }).seq === 2),
      'fanout reached h2',
    );
  });

  t('hermod remote errors, NoSuchMethod and versions reach the python client typed', async (ctx) => {
    await serve(ctx, 'he', 'h', [new Recorder('h'), new Versioned()]);
    const py = ctx.pyClient;
    let e = await pyError(py.call({ topic: 'he', method: 'fail', args: { message: 'bad input' } }));
    assert.equal([e.class, e.exc_type, e.value], ['RemoteError', 'TypeError', 'bad input']);
    e = await pyError(py.call({ topic: 'he', method: 'no_such' }));
    assert.equal([e.class, e.exc_type], ['RemoteError', 'NoSuchMethod']);
    assert.match(e.value!, /no_such/);
    assert.is(await py.call({ topic: 'he', method: 'mul', namespace: 'math', version: '1.2', args: { a: 6, b: 7 } }), 42);
    e = await pyError(py.call({ topic: 'he', method: 'mul', namespace: 'math', version: '1.9', args: { a: 6, b: 7 } }));
    assert.equal([e.class, e.exc_type], ['RemoteError', 'UnsupportedVersion']);
    e = await pyError(py.call({ topic: 'he', method: 'mul', namespace: 'other', args: { a: 6, b: 7 } }));
    assert.is(e.exc_type, 'UnsupportedVersion');
    // A call to a topic nobody serves fails in Python rather than hanging.
    e = await pyError(py.call({ topic: 'nobody-here', method: 'x', timeout: 1 }));
    assert.ok(['MessagingTimeout', 'MessageDeliveryFailure'].includes(e.class), e.class);
  });

  t('python long call to hermod is kept alive by hermod heartbeats', async (ctx) => {
    await serve(ctx, 'hl', 'h', [new Recorder('h')]);
    // 3 s of work against a 2 s call monitor: only the heartbeats (every 1 s) keep it alive.
    const t0 = Date.now();
    assert.is(await ctx.pyClient.call({ topic: 'hl', method: 'sleep', args: { ms: 3000 }, timeout: 10, call_monitor_timeout: 2 }), 3000);
    assert.ok(Date.now() - t0 >= 3000);
  });

  // ---- hermod client -> Python server ----

  t('hermod client calls, casts and server-directed calls python servers', async (ctx) => {
    const c = new RPCClient(await transport(ctx), new Target({ topic: 'py' }), { timeout: 5000 });
    assert.is(await c.call({}, 'add', { a: 2, b: 3 }), 5);
    const context = { request_id: 'req-xyz', project_id: 'p', roles: ['r1'], flag: false, nested: { a: [1, 2] } };
    // oslo's rabbit driver adds the request's `_timeout` to the context as `client_timeout`.
    const { client_timeout: clientTimeout, ...seen } = await c.call<Record<string, unknown>>(context, 'ctx');
    assert.equal(seen, context, 'context crosses intact');
    assert.ok(clientTimeout === undefined || clientTimeout === null, `no call monitor: client_timeout ${clientTimeout}`);
    assert.equal(await c.call({}, 'echo', { value: ['ü', 1.25, null, { k: true }] }), ['ü', 1.25, null, { k: true }]);
    for (const s of ['p1', 'p2']) assert.is(await c.prepare({ server: s }).call({}, 'whoami'), s);
    const who = await Promise.all(Array.from({ length: 10 }, () => c.call<string>({}, 'whoami')));
    assert.ok(who.includes('p1') && who.includes('p2'), `anycast spread over both python servers: ${who}`);

    await c.cast({ request_id: 'cast-1' }, 'bump', { seq: 101 });
    const got = await Promise.race(ctx.pyServers.map((p) => p.waitFor((e) => e.event === 'bump' && e.seq === 101, 5000, 'cast')));
    const { client_timeout: _ct, ...castCtx } = got.ctx as Record<string, unknown>;
    assert.equal(castCtx, { request_id: 'cast-1' });
    await c.prepare({ fanout: true }).cast({}, 'bump', { seq: 102 });
    for (const p of ctx.pyServers) await p.waitFor((e) => e.event === 'bump' && e.seq === 102, 5000, 'fanout copy');
    // Exactly one copy of the plain cast.
    await new Promise((r) => setTimeout(r, 200));
    const copies = ctx.pyServers.flatMap((p) => p.events).filter((e) => e.event === 'bump' && e.seq === 101).length;
    assert.is(copies, 1);
  });

  t('python remote errors, NoSuchMethod and versions reach the hermod client typed', async (ctx) => {
    const c = new RPCClient(await transport(ctx), new Target({ topic: 'py' }), { timeout: 5000 });
    const err = (await rejects(c.call({}, 'fail', { message: 'nope' }), 'HERMOD_ERR_REMOTE')) as RemoteError;
    assert.equal([err.excType, err.value, err.module], ['ValueError', 'nope', 'builtins']);
    assert.ok(
      err.traceback.some((l) => l.includes('raise ValueError')),
      'Python traceback carried',
    );
    const typed = (await rejects(c.call({}, 'fail_typed', { message: 'typed' }), 'HERMOD_ERR_REMOTE')) as RemoteError;
    assert.equal([typed.excType, typed.value], ['PeerError', 'typed']);
    await rejects(c.call({}, 'missing_method'), 'HERMOD_ERR_NO_SUCH_METHOD', /missing_method/);
    assert.is(await c.prepare({ namespace: 'math', version: '1.1' }).call({}, 'mul', { a: 3, b: 4 }), 12);
    await rejects(c.prepare({ namespace: 'math', version: '2.0' }).call({}, 'mul', { a: 3, b: 4 }), 'HERMOD_ERR_UNSUPPORTED_VERSION');
    await rejects(c.call({}, 'add', { a: 1 }), 'HERMOD_ERR_REMOTE', /TypeError/);
  });

  t('hermod long call to python is kept alive by python heartbeats', async (ctx) => {
    const c = new RPCClient(await transport(ctx), new Target({ topic: 'py', server: 'p1' }), { timeout: 10000, callMonitorTimeout: 2000 });
    const t0 = Date.now();
    assert.equal(await c.call({}, 'sleep', { seconds: 3 }), { slept: 3, server: 'p1' });
    assert.ok(Date.now() - t0 >= 3000);
  });

  t('a hermod server and a python server share a topic and split the calls', async (ctx) => {
    const h = new Recorder('hx');
    await serve(ctx, 'py', 'hx', [h]);
    const c = new RPCClient(await transport(ctx), new Target({ topic: 'py' }), { timeout: 5000 });
    const who = await Promise.all(Array.from({ length: 30 }, () => c.call<string>({}, 'whoami')));
    const count = (n: string) => who.filter((w) => w === n).length;
    assert.is(count('hx') + count('p1') + count('p2'), 30);
    assert.ok(count('hx') > 0 && count('p1') + count('p2') > 0, `split: hx=${count('hx')} p1=${count('p1')} p2=${count('p2')}`);
    // And the Python client reaches both kinds of server on the shared topic.
    const pyWho = await Promise.all(Array.from({ length: 12 }, () => ctx.pyClient.call({ topic: 'py', method: 'whoami' })));
    assert.ok(pyWho.includes('hx') && pyWho.some((w) => w === 'p1' || w === 'p2'), `python client split: ${pyWho}`);
  });

  return t;
}
