import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { RabbitNode } from '../../scripts/rabbit-node.js';
import {
  defaultConfig,
  getTransport,
  type NoSuchMethod,
  NotificationListener,
  Notifier,
  type RemoteError,
  RPCClient,
  RPCServer,
  Target,
  type Transport,
  type UnsupportedVersion,
} from '../../src/index.js';
import { rejects, sleep, until } from './assert.js';
import { Recorder, Versioned } from './endpoints.js';
import { Collector } from './notify-cases.js';
import { type OsloFlavor, OsloPeer, osloAvailable, type PyError } from './oslo.js';

// The same interop cases on every broker and every oslo.messaging: Python processes (client and
// two servers) against hermod, in both directions.

/** Where the peers meet: a URL both hermod and oslo.messaging understand, and its teardown. */
export interface Broker {
  url: string;
  stop(): Promise<void>;
  /** On RabbitMQ: the node and vhost, to look at queues and drop connections. */
  rabbit?: { node: RabbitNode; vhost: string };
}

/** Which oslo.messaging the Python peers run and how both sides are configured. */
export interface InteropFlavor {
  /** The Python peers' oslo.messaging and its options; default Debian's 14.0.3, default options. */
  oslo?: OsloFlavor;
  /** hermod's matching options, as dotted-key overrides. */
  hermod?: Record<string, unknown>;
  /** Also the RabbitMQ cases: queue flags, restarts, reconnects (the broker has `rabbit`). */
  rabbit?: boolean;
}

interface Ctx {
  broker: Broker;
  url: string;
  transports: Transport[];
  servers: RPCServer[];
  pyClient: OsloPeer;
  pyServers: OsloPeer[];
  others: OsloPeer[];
}
export function interopSuite(name: string, broker: () => Promise<Broker>, flavor: InteropFlavor = {}) {
  const t = suite<Ctx>(name, {} as Ctx);
  const pyStart = (mode: 'server' | 'client' | 'notify' | 'listen', opts: Record<string, string | undefined>) =>
    OsloPeer.start(mode, opts, flavor.oslo);

  t.before(async (ctx) => {
    try {
      await setup(ctx);
    } catch (err) {
      // uvu marks every case failed when a hook throws but does not print why.
      console.error(`${name}: setup failed:`, err);
      throw err;
    }
  });
  async function setup(ctx: Ctx) {
    if (!osloAvailable()) throw new Error('python3-oslo.messaging is not installed (.ci/run installs it)');
    ctx.broker = await broker();
    ctx.url = ctx.broker.url;
    ctx.transports = [];
    ctx.servers = [];
    ctx.others = [];
    // Two Python servers on topic "py" (p1, p2) and one Python client, started in parallel.
    const started = await Promise.allSettled([
      pyStart('client', { url: ctx.url }),
      pyStart('server', { url: ctx.url, topic: 'py', server: 'p1' }),
      pyStart('server', { url: ctx.url, topic: 'py', server: 'p2' }),
    ]);
    const peers = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      // The ones that did start must not outlive the suite.
      await Promise.all(peers.map((p) => p.stop()));
      throw failed.reason;
    }
    const [client, p1, p2] = peers as [OsloPeer, OsloPeer, OsloPeer];
    ctx.pyClient = client;
    ctx.pyServers = [p1, p2];
  }

  t.after(async (ctx) => {
    for (const s of ctx.servers ?? []) {
      await s.stop();
      await s.wait(1000);
    }
    await Promise.all([ctx.pyClient, ...(ctx.pyServers ?? []), ...(ctx.others ?? [])].filter(Boolean).map((p) => p.kill()));
    for (const tr of ctx.transports ?? []) await tr.close();
    await ctx.broker?.stop();
  });

  async function transport(ctx: Ctx, overrides = flavor.hermod ?? {}): Promise<Transport> {
    const tr = await getTransport(ctx.url, { config: defaultConfig(), overrides });
    ctx.transports.push(tr);
    return tr;
  }
  async function serve(ctx: Ctx, topic: string, server: string, endpoints: object[], tr?: Transport) {
    const s = new RPCServer(tr ?? (await transport(ctx)), new Target({ topic, server }), endpoints);
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
    // Python's str() of the error is the server's text, with where the method is served.
    assert.match(e.value!, /this server has mul in namespace 'math' at version 1\.3/);
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
    // The fields are what was asked for, read out of oslo's text (its exceptions' only argument).
    const nsm = (await rejects(c.call({}, 'missing_method'), 'HERMOD_ERR_NO_SUCH_METHOD', /missing_method/)) as NoSuchMethod;
    assert.is(nsm.method, 'missing_method');
    assert.is(await c.prepare({ namespace: 'math', version: '1.1' }).call({}, 'mul', { a: 3, b: 4 }), 12);
    const uv = (await rejects(
      c.prepare({ namespace: 'math', version: '2.0' }).call({}, 'mul', { a: 3, b: 4 }),
      'HERMOD_ERR_UNSUPPORTED_VERSION',
    )) as UnsupportedVersion;
    assert.equal([uv.version, uv.method], ['2.0', 'mul']);
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

  // ---- notifications, both ways ----

  t('notifications cross both ways: a hermod Notifier to a Python listener, a Python Notifier to a hermod listener', async (ctx) => {
    const pyl = await pyStart('listen', { url: ctx.url, topics: 'hn2py', name: 'pyl' });
    ctx.others.push(pyl);
    const nt = new Notifier(await transport(ctx), { publisherId: 'hermod.host', topics: ['hn2py'] });
    await nt.info({ request_id: 'req-n1' }, 'compute.instance.create.end', { id: 'i-1' });
    await nt.error({}, 'compute.instance.delete.error', { id: 'i-2' });
    const got = () => pyl.events.filter((e) => e.event === 'notification');
    await until(() => got().length === 2, 'both notifications reached Python', 10000);
    const info = got().find((e) => e.priority === 'info')!;
    assert.equal([info.event_type, info.publisher_id, info.payload], ['compute.instance.create.end', 'hermod.host', { id: 'i-1' }]);
    assert.is((info.ctx as Record<string, unknown>).request_id, 'req-n1');
    assert.is(got().find((e) => e.priority === 'error')!.event_type, 'compute.instance.delete.error');

    const c = new Collector();
    const l = new NotificationListener(await transport(ctx), [new Target({ topic: 'py2hn' })], [c]);
    await l.start();
    const pyn = await pyStart('notify', { url: ctx.url });
    ctx.others.push(pyn);
    try {
      const r = await pyn.request({ publisher_id: 'py.host', event_type: 'net.x', priority: 'warn', topics: ['py2hn'], payload: { n: 1 } });
      assert.ok(r.ok, JSON.stringify(r.error));
      await until(() => c.got.length === 1, 'the Python notification reached hermod', 10000);
      assert.equal(
        [c.got[0]!.priority, c.got[0]!.eventType, c.got[0]!.publisherId, c.got[0]!.payload],
        ['warn', 'net.x', 'py.host', { n: 1 }],
      );
    } finally {
      await l.stop();
      await l.wait(1000);
    }
  });

  if (flavor.rabbit) rabbitCases(t, { transport, serve, flavor });
  return t;
}

interface Helpers {
  transport(ctx: Ctx, overrides?: Record<string, unknown>): Promise<Transport>;
  serve(ctx: Ctx, topic: string, server: string, endpoints: object[], tr?: Transport): Promise<RPCServer>;
  flavor: InteropFlavor;
}

/** `[{"x-expires",1800000},{"x-queue-type","quorum"}]` → its entries, sorted. */
function args(text: string): string[] {
  return (text.match(/\{[^{}]*\}/g) ?? []).sort();
}

/** The RabbitMQ-only cases: what is declared, and what survives restarts and reconnects. */
function rabbitCases(t: ReturnType<typeof suite<Ctx>>, h: Helpers) {
  const { transport, serve, flavor } = h;
  const rabbit = (ctx: Ctx) => {
    if (!ctx.broker.rabbit) throw new Error('this suite needs a broker with `rabbit` (node and vhost)');
    return ctx.broker.rabbit;
  };
  const streams = flavor.hermod?.['rabbit.streamFanout'] === true;

  t('hermod declares reply and fanout queues with the flags and arguments oslo declares them with', async (ctx) => {
    const { node, vhost } = rabbit(ctx);
    await serve(ctx, 'hq', 'h1', [new Recorder('h1')]);
    const c = new RPCClient(await transport(ctx), new Target({ topic: 'py' }), { timeout: 5000 });
    await c.call({}, 'whoami');
    await ctx.pyClient.call({ topic: 'hq', method: 'whoami' });
    const queues = await node.queues(vhost);
    const names = [...queues.keys()];
    const hermodReply = names.filter(
      (n) => n.startsWith('reply_') && (flavor.hermod?.['rabbit.queueManager'] ? n.includes(':hermod-') : true),
    );
    const pyReply = names.filter((n) => n.startsWith('reply_') && !hermodReply.includes(n));
    if (flavor.hermod?.['rabbit.queueManager']) {
      assert.ok(
        hermodReply.length > 0 && hermodReply.every((n) => /^reply_[^:]+:hermod-[^:]+:\d+$/.test(n)),
        `hermod reply queues: ${hermodReply}`,
      );
      assert.ok(pyReply.length > 0 && pyReply.every((n) => /^reply_[^:]+:[^:]+:\d+$/.test(n)), `python reply queues: ${pyReply}`);
    }
    const same = (a: string, b: string) => {
      const qa = queues.get(a)!;
      const qb = queues.get(b)!;
      assert.equal([qa.durable, qa.autoDelete, args(qa.arguments)], [qb.durable, qb.autoDelete, args(qb.arguments)], `${a} vs ${b}`);
    };
    // Every reply queue (hermod's and Python's) is declared alike.
    const replies = names.filter((n) => n.startsWith('reply_'));
    assert.ok(replies.length >= 2, `reply queues: ${replies}`);
    for (const r of replies) same(r, replies[0]!);
    if (streams) {
      assert.ok(queues.has('hq_fanout') && queues.has('py_fanout'), `stream fanout queues: ${names}`);
      same('hq_fanout', 'py_fanout');
      assert.match(queues.get('hq_fanout')!.arguments, /stream/);
    } else {
      const hf = names.find((n) => n.startsWith('hq_fanout_'))!;
      const pf = names.find((n) => n.startsWith('py_fanout_'))!;
      assert.ok(hf && pf, `fanout queues: ${names}`);
      same(hf, pf);
    }
    same('hq', 'py');
    same('hq.h1', 'py.p1');
  });

  t('a hermod server restarts while Python peers run: queued calls and casts are served, fanout reaches the new one', async (ctx) => {
    const py = ctx.pyClient;
    const tr1 = await transport(ctx);
    const r1 = new Recorder('hr1');
    const s1 = await serve(ctx, 'hr', 'hr1', [r1], tr1);
    assert.is(await py.call({ topic: 'hr', method: 'whoami', server: 'hr1' }), 'hr1');
    await py.request({ op: 'cast', topic: 'hr', method: 'bump', args: { seq: 1 }, fanout: true });
    await until(() => r1.calls.some((c) => c.method === 'bump'), 'fanout before the restart');
    // The process goes away: its server stops and its connections close.
    await s1.stop();
    await s1.wait(2000);
    ctx.servers.splice(ctx.servers.indexOf(s1), 1);
    await tr1.close();
    // While it is down: a cast and a call to it wait in its queue.
    assert.ok((await py.request({ op: 'cast', topic: 'hr', server: 'hr1', method: 'bump', args: { seq: 2 } })).ok);
    const pending = py.call({ topic: 'hr', method: 'add', server: 'hr1', args: { a: 1, b: 2 }, timeout: 20 });
    await sleep(300);
    const r2 = new Recorder('hr1');
    await serve(ctx, 'hr', 'hr1', [r2]);
    assert.is(await pending, 3, 'the call made while the server was down is answered after its restart');
    await until(() => r2.calls.some((c) => c.method === 'bump' && (c.args as { seq: number }).seq === 2), 'the queued cast');
    await py.request({ op: 'cast', topic: 'hr', method: 'bump', args: { seq: 3 }, fanout: true });
    await until(() => r2.calls.some((c) => c.method === 'bump' && (c.args as { seq: number }).seq === 3), 'fanout after the restart');
    assert.is(r2.calls.filter((c) => c.method === 'bump' && (c.args as { seq: number }).seq === 3).length, 1);
    // And the Python client's reply queue served every call of it.
    assert.is(await py.call({ topic: 'hr', method: 'whoami' }), 'hr1');
  });

  t('a hermod server cut off while fanouts are sent gets each of them once after it reconnects (its stream offset kept)', async (ctx) => {
    const { node, vhost } = rabbit(ctx);
    // hermod connects as a user of its own, so the broker can shut it out and let it back in.
    const user = `hd-${vhost}`;
    const letIn = () => node.addUser(user, 'pw', vhost);
    await letIn();
    const r = new Recorder('hd');
    const tr = await getTransport(ctx.broker.rabbit!.node.url(vhost, user, 'pw'), {
      config: defaultConfig(),
      overrides: { ...flavor.hermod, 'rabbit.retryInterval': 500, 'rabbit.intervalMax': 1000 },
    });
    ctx.transports.push(tr);
    const states: string[] = [];
    tr.on('state', (s: { state: string }) => states.push(s.state));
    await serve(ctx, 'hd', 'hd1', [r], tr);
    const py = ctx.pyClient;
    const seqs = () =>
      r.calls
        .filter((c) => c.method === 'bump')
        .map((c) => (c.args as { seq: number }).seq)
        .sort((a, b) => a - b);
    await py.request({ op: 'cast', topic: 'hd', method: 'bump', args: { seq: 1 }, fanout: true });
    await until(() => seqs().length === 1, 'the first fanout');
    // Deleting the user closes its connections, and its reconnects fail until it is back. With
    // stream fanout the server must resume after the last offset it had: from `last` (the last
    // chunk) it would miss the earlier of these.
    await node.deleteUser(user);
    await until(() => states.includes('disconnected'), 'the server cut off', 10_000);
    for (let seq = 2; seq <= 4; seq++)
      assert.ok((await py.request({ op: 'cast', topic: 'hd', method: 'bump', args: { seq }, fanout: true })).ok);
    await sleep(500);
    assert.equal(seqs(), [1], 'nothing while cut off');
    await letIn();
    await until(() => seqs().length >= 4, 'every fanout after the reconnect', 15000);
    await sleep(300);
    assert.equal(seqs(), [1, 2, 3, 4], 'each fanout exactly once');
    await node.deleteUser(user);
  });
}
