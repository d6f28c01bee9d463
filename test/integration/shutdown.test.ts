import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort, RabbitNode } from '../../scripts/rabbit-node.js';
import {
  type ConnectionState,
  defaultConfig,
  getTransport,
  NotificationListener,
  Notifier,
  RPCClient,
  RPCServer,
  Target,
  type Transport,
} from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { rejects, sleep, until } from '../support/assert.js';
import { Recorder } from '../support/endpoints.js';
import { Figures, type Proc, printed, reap, silentPeer, startBin } from '../support/shutdown-procs.js';

// The stop matrix (README "Stopping"): {rpc-server, notify-listen, hermod-router, library objects}
// × {connected idle, busy, connecting to a peer that never answers, reconnecting with backoff,
// CONNECTION_FORCED during stop, router killed during stop}, each bounded by its deadline + 1 s,
// plus a second signal in every state. SIGSTOPped brokers and the race loop are in
// shutdown-race.test.ts (they need a node of their own).

const DEADLINE_S = 2;
const BOUND_MS = DEADLINE_S * 1000 + 1000;
const fastRetry = ['--config', 'rabbit.retryInterval=300', '--config', 'rabbit.intervalMax=1000', '--config', 'amqp1.retryInterval=100'];
const figures = new Figures();

interface Ctx {
  node: RabbitNode;
  vhost: string;
  url: string;
  procs: Proc[];
  transports: Transport[];
}
const t = suite<Ctx>('stopping: CLIs and library objects in every connection state', {} as Ctx);
t.before(async (ctx) => {
  ctx.node = await RabbitNode.shared();
  ctx.vhost = await ctx.node.addVhost(`shutdown-${process.pid}`);
  ctx.url = ctx.node.url(ctx.vhost);
});
t.after(async (ctx) => {
  figures.print('stop matrix: exit times (shutdown-timeout 2 s)');
  await ctx.node.deleteVhost(ctx.vhost);
  await ctx.node.release();
});
t.before.each((ctx) => {
  ctx.procs = [];
  ctx.transports = [];
});
t.after.each(async (ctx) => {
  reap(...ctx.procs);
  for (const tr of ctx.transports) await tr.close();
});

function bin(ctx: Ctx, name: string, args: string[]): Proc {
  const p = startBin(name, args);
  ctx.procs.push(p);
  return p;
}
async function transport(ctx: Ctx, url: string, overrides: Record<string, unknown> = {}): Promise<Transport> {
  const tr = await getTransport(url, { config: defaultConfig(), overrides });
  ctx.transports.push(tr);
  return tr;
}

/** Signals `p` and measures how long it takes to exit; asserts the bound and the status. */
async function stopTimed(p: Proc, cell: string, expect: { code: number; bound?: number; signal?: NodeJS.Signals }): Promise<number> {
  const t0 = Date.now();
  p.child.kill(expect.signal ?? 'SIGTERM');
  const bound = expect.bound ?? BOUND_MS;
  const timer = setTimeout(() => p.child.kill('SIGKILL'), bound + 5000);
  const { code, at } = await p.exited;
  clearTimeout(timer);
  const ms = at - t0;
  figures.add(cell, ms, bound, `exit ${code}`);
  assert.ok(ms <= bound, `${cell}: exited after ${ms} ms, bound ${bound} ms\n${p.out}\n${p.err}`);
  assert.is(code, expect.code, `${cell}: exit status\n${p.out}\n${p.err}`);
  return ms;
}

const rpcServer = (ctx: Ctx, name: string, url: string, more: string[] = []) =>
  bin(ctx, 'rpc-server', [name, '--topic', 'sd', '--transport-url', url, '--shutdown-timeout', String(DEADLINE_S), ...fastRetry, ...more]);
const notifyListen = (ctx: Ctx, url: string, more: string[] = []) =>
  bin(ctx, 'notify-listen', ['--topic', 'sdn', '--transport-url', url, '--shutdown-timeout', String(DEADLINE_S), ...fastRetry, ...more]);

// --- rpc-server -----------------------------------------------------------------------------

t('rpc-server × connected idle (RabbitMQ): exit 0', async (ctx) => {
  const s = rpcServer(ctx, 'idle', ctx.url);
  await printed(s, /serving topic sd/, 'serving');
  await stopTimed(s, 'rpc-server × idle (rabbit)', { code: 0 });
  assert.match(s.out, /SIGTERM: no new work; finishing nothing in flight/);
});

t('rpc-server × busy (RabbitMQ): the short call gets its reply, the long one ServerStopped; exit 7', async (ctx) => {
  const s = rpcServer(ctx, 'busy', ctx.url);
  await printed(s, /serving topic sd/, 'serving');
  const client = new RPCClient(await transport(ctx, ctx.url), new Target({ topic: 'sd', server: 'busy' }), { timeout: 20_000 });
  const short = client.call({}, 'sleep', { seconds: 0.8 });
  const long = client.call({}, 'sleep', { seconds: 30 }).catch((e: Error & { code?: string }) => e);
  await sleep(500);
  const stopping = stopTimed(s, 'rpc-server × busy (rabbit)', { code: 7 });
  await printed(s, /finishing 2 in-flight request\(s\)/, 'the log names what it waits for');
  await printed(s, /stopping: waiting for \d in-flight request\(s\) \(\d s left\)/, 'progress while waiting');
  await stopping;
  assert.equal(await short, { slept: 0.8, server: 'busy' });
  assert.match(String(((await long) as Error).message), /stopped before sleep finished/);
});

t('rpc-server × connecting to a peer that accepts TCP and never answers: exit 0, socket gone', async (ctx) => {
  const peer = await silentPeer();
  try {
    const s = rpcServer(ctx, 'dial', `rabbit://guest:guest@127.0.0.1:${peer.port}/`);
    await until(() => peer.accepted() > 0, 'the server to dial', 10_000);
    await stopTimed(s, 'rpc-server × connecting, silent peer (rabbit)', { code: 0, bound: 1000 });
    await until(() => peer.open() === 0, 'the socket closed');
    const a = rpcServer(ctx, 'dial1', `amqp://127.0.0.1:${peer.port}/`);
    await until(() => peer.accepted() > 1, 'the server to dial', 10_000);
    await stopTimed(a, 'rpc-server × connecting, silent peer (amqp1)', { code: 0, bound: 1000 });
  } finally {
    await peer.close();
  }
});

t('rpc-server × reconnecting with backoff (nothing listens): exit 0', async (ctx) => {
  const port = await freePort();
  const s = rpcServer(ctx, 'backoff', `rabbit://guest:guest@127.0.0.1:${port}/`, ['--config', 'rabbit.retryInterval=5000']);
  await printed(s, /connecting to 127\.0\.0\.1/, 'reconnecting');
  await stopTimed(s, 'rpc-server × reconnecting (rabbit)', { code: 0, bound: 1000 });
});

t('rpc-server × CONNECTION_FORCED during stop (close_all_connections): not re-opened, exit within the deadline', async (ctx) => {
  const s = rpcServer(ctx, 'forced', ctx.url);
  await printed(s, /serving topic sd/, 'serving');
  const client = new RPCClient(await transport(ctx, ctx.url), new Target({ topic: 'sd', server: 'forced' }), { timeout: 20_000 });
  const long = client.call({}, 'sleep', { seconds: 30 }).catch((e: Error) => e);
  await sleep(500);
  const t0 = Date.now();
  s.child.kill('SIGTERM');
  await ctx.node.ctl('close_all_connections', '-p', ctx.vhost, 'shutdown test');
  const { code, at } = await s.exited;
  figures.add('rpc-server × CONNECTION_FORCED during stop (rabbit)', at - t0, BOUND_MS, `exit ${code}`);
  assert.ok(at - t0 <= BOUND_MS, `exited after ${at - t0} ms\n${s.out}\n${s.err}`);
  assert.ok(code === 7 || code === 0, `exit ${code}\n${s.out}\n${s.err}`);
  // The server's own consumer never came back (the transport's publisher may reconnect to send replies).
  assert.is((await ctx.node.queues(ctx.vhost)).get('sd.forced')?.consumers ?? 0, 0);
  await long;
});

t('rpc-server × router killed during stop (AMQP 1.0): exit within the deadline', async (ctx) => {
  const router = bin(ctx, 'hermod-router', ['--port', '0']);
  await printed(router, /listening on amqp:\/\/\S+/, 'router');
  const url = /listening on (amqp:\/\/\S+)/.exec(router.out)![1]!;
  const s = rpcServer(ctx, 'rk', url);
  await printed(s, /serving topic sd/, 'serving');
  const client = new RPCClient(await transport(ctx, url, { 'amqp1.retryInterval': 100 }), new Target({ topic: 'sd', server: 'rk' }), {
    timeout: 20_000,
  });
  const long = client.call({}, 'sleep', { seconds: 30 }).catch((e: Error) => e);
  await sleep(500);
  const t0 = Date.now();
  s.child.kill('SIGTERM');
  await sleep(100);
  router.child.kill('SIGKILL');
  const { code, at } = await s.exited;
  figures.add('rpc-server × router killed during stop (amqp1)', at - t0, BOUND_MS, `exit ${code}`);
  assert.ok(at - t0 <= BOUND_MS, `exited after ${at - t0} ms\n${s.out}\n${s.err}`);
  assert.is(code, 7, `${s.out}\n${s.err}`);
  await long;
});

t('rpc-server × a second signal exits within 1 s in every state (idle, busy, connecting, reconnecting)', async (ctx) => {
  const peer = await silentPeer();
  const port = await freePort();
  try {
    const cases: Array<[string, Proc, () => Promise<void>]> = [];
    const idle = rpcServer(ctx, 'sig-idle', ctx.url, ['--shutdown-timeout', '30']);
    cases.push(['idle', idle, () => printed(idle, /serving topic sd/, 'serving')]);
    const busy = rpcServer(ctx, 'sig-busy', ctx.url, ['--shutdown-timeout', '30']);
    cases.push([
      'busy',
      busy,
      async () => {
        await printed(busy, /serving topic sd/, 'serving');
        const client = new RPCClient(await transport(ctx, ctx.url), new Target({ topic: 'sd', server: 'sig-busy' }), { timeout: 20_000 });
        void client.call({}, 'sleep', { seconds: 30 }).catch(() => {});
        await sleep(300);
      },
    ]);
    const dial = rpcServer(ctx, 'sig-dial', `rabbit://guest:guest@127.0.0.1:${peer.port}/`, ['--shutdown-timeout', '30']);
    cases.push(['connecting', dial, () => until(() => peer.accepted() > 0, 'dialled', 10_000)]);
    const back = rpcServer(ctx, 'sig-back', `rabbit://guest:guest@127.0.0.1:${port}/`, ['--shutdown-timeout', '30']);
    cases.push(['reconnecting', back, () => printed(back, /connecting to/, 'reconnecting')]);
    for (const [state, p, ready] of cases) {
      await ready();
      p.child.kill('SIGTERM');
      await sleep(50);
      // Exits 143 (aborted by the second SIGTERM) or 0 if the first stop was already done.
      const t0 = Date.now();
      p.child.kill('SIGTERM');
      const { code, at } = await p.exited;
      const ms = Math.max(0, at - t0);
      figures.add(`rpc-server × second SIGTERM, ${state}`, ms, 1000, `exit ${code}`);
      assert.ok(ms <= 1000, `${state}: ${ms} ms`);
      if (state === 'busy') assert.is(code, 143, `${p.out}\n${p.err}`);
      else assert.ok(code === 143 || code === 0, `${state}: exit ${code}`);
    }
  } finally {
    await peer.close();
  }
});

// --- notify-listen --------------------------------------------------------------------------

t('notify-listen × --count 1 with the notification already queued (the first-hour blocker): prints it, exits 0', async (ctx) => {
  const tr = await transport(ctx, ctx.url);
  // The queue exists once a notifier declared it; the notification waits there.
  await new Notifier(tr, { publisherId: 'p', topics: ['sdn'] }).info({}, 'queued.before', { n: 1 });
  const l = notifyListen(ctx, ctx.url, ['--count', '1']);
  const t0 = Date.now();
  const { code, at } = await l.exited;
  figures.add('notify-listen × --count 1, already queued (rabbit)', at - t0, 15_000, `exit ${code}`);
  assert.is(code, 0, l.err);
  assert.match(l.out, /queued\.before/);
  const q = await ctx.node.queues(ctx.vhost);
  assert.is(q.get('sdn.info')!.messages, 0, 'acknowledged, not redelivered');
});

t('notify-listen × idle, connecting (silent peer), reconnecting: exit 0 within the bound', async (ctx) => {
  const idle = notifyListen(ctx, ctx.url);
  await printed(idle, /listening on sdn/, 'listening');
  await stopTimed(idle, 'notify-listen × idle (rabbit)', { code: 0 });
  const peer = await silentPeer();
  try {
    const dial = notifyListen(ctx, `rabbit://guest:guest@127.0.0.1:${peer.port}/`);
    await until(() => peer.accepted() > 0, 'dialled', 10_000);
    await stopTimed(dial, 'notify-listen × connecting, silent peer (rabbit)', { code: 0, bound: 1000 });
    await until(() => peer.open() === 0, 'its socket closed');
  } finally {
    await peer.close();
  }
  const back = notifyListen(ctx, `rabbit://guest:guest@127.0.0.1:${await freePort()}/`);
  await printed(back, /connecting to/, 'reconnecting');
  await stopTimed(back, 'notify-listen × reconnecting (rabbit)', { code: 0, bound: 1000 });
  const again = notifyListen(ctx, ctx.url, ['--shutdown-timeout', '30']);
  await printed(again, /listening on sdn/, 'listening');
  again.child.kill('SIGINT');
  await sleep(20);
  await stopTimed(again, 'notify-listen × second SIGINT', { code: 130, bound: 1000, signal: 'SIGINT' }).catch(async () => {
    // The first SIGINT may already have finished the (idle) stop: exit 0 is right then.
    assert.ok([0, 130].includes((await again.exited).code ?? -1));
  });
});

t('notify-listen × CONNECTION_FORCED, then SIGTERM while it reconnects; × router killed: exit 0', async (ctx) => {
  const l = notifyListen(ctx, ctx.url);
  await printed(l, /listening on sdn/, 'listening');
  await ctx.node.ctl('close_all_connections', '-p', ctx.vhost, 'shutdown test');
  await printed(l, /disconnected from/, 'the forced close');
  await stopTimed(l, 'notify-listen × SIGTERM right after CONNECTION_FORCED (rabbit)', { code: 0 });
  const router = bin(ctx, 'hermod-router', ['--port', '0']);
  await printed(router, /listening on amqp:\/\/\S+/, 'router');
  const url = /listening on (amqp:\/\/\S+)/.exec(router.out)![1]!;
  const a = notifyListen(ctx, url);
  await printed(a, /listening on sdn/, 'listening');
  router.child.kill('SIGKILL');
  await printed(a, /disconnected from/, 'the loss');
  await stopTimed(a, 'notify-listen × router killed, then SIGTERM (amqp1)', { code: 0 });
});

// --- hermod-router --------------------------------------------------------------------------

t('hermod-router × idle, busy (a call in flight through it), a client that never speaks, a second signal', async (ctx) => {
  const idle = bin(ctx, 'hermod-router', ['--port', '0', '--shutdown-timeout', String(DEADLINE_S)]);
  await printed(idle, /listening on/, 'router');
  await stopTimed(idle, 'hermod-router × idle', { code: 0, bound: 1000 });

  const busy = bin(ctx, 'hermod-router', ['--port', '0', '--shutdown-timeout', String(DEADLINE_S)]);
  await printed(busy, /listening on amqp:\/\/\S+/, 'router');
  const url = /listening on (amqp:\/\/\S+)/.exec(busy.out)![1]!;
  const server = new RPCServer(await transport(ctx, url, { 'amqp1.retryInterval': 100 }), new Target({ topic: 'rt', server: 'a' }), [
    new Recorder('a'),
  ]);
  await server.start();
  const client = new RPCClient(await transport(ctx, url, { 'amqp1.retryInterval': 100 }), new Target({ topic: 'rt' }), { timeout: 5000 });
  const pending = client.call({}, 'sleep', { ms: 3000 }).catch((e: Error) => e);
  await sleep(200);
  // A raw TCP client that never sends its AMQP header.
  const peer = await import('node:net').then((net) => net.connect(Number(new URL(url).port), '127.0.0.1'));
  peer.on('error', () => {});
  await sleep(100);
  await stopTimed(busy, 'hermod-router × busy + silent client', { code: 0, bound: 1000 });
  assert.ok((await pending) instanceof Error, 'the caller learns the router went away');
  await server.stop();
  await server.wait(100);
  peer.destroy();

  const twice = bin(ctx, 'hermod-router', ['--port', '0', '--shutdown-timeout', '30']);
  await printed(twice, /listening on/, 'router');
  twice.child.kill('SIGTERM');
  const t0 = Date.now();
  twice.child.kill('SIGTERM');
  const { code, at } = await twice.exited;
  figures.add('hermod-router × second SIGTERM', at - t0, 1000, `exit ${code}`);
  assert.ok(at - t0 <= 1000);
  assert.ok(code === 0 || code === 143);
});

// --- library objects --------------------------------------------------------------------------

/** Times `fn` and records it as a library cell. */
async function timed(cell: string, bound: number, fn: () => Promise<void>): Promise<void> {
  const t0 = Date.now();
  await fn();
  const ms = Date.now() - t0;
  figures.add(cell, ms, bound, 'returned');
  assert.ok(ms <= bound, `${cell}: ${ms} ms, bound ${bound} ms`);
}

t('library × connecting (silent peer) and reconnecting: stop() gives up the subscription at once, nothing stays open', async () => {
  const peer = await silentPeer();
  try {
    // rabbits: the TLS handshake never completes; its TCP socket is dropped at once too.
    for (const scheme of ['rabbit', 'rabbits', 'amqp'] as const) {
      const url = scheme === 'amqp' ? `amqp://127.0.0.1:${peer.port}/` : `${scheme}://guest:guest@127.0.0.1:${peer.port}/`;
      const tr = await getTransport(url, { config: defaultConfig() });
      const server = new RPCServer(tr, new Target({ topic: 'lib', server: 'x' }), [new Recorder('x')]);
      const before = peer.accepted();
      const starting = server.start();
      await until(() => peer.accepted() > before, 'dialled', 10_000);
      await timed(`library RPCServer+Transport × connecting, silent peer (${scheme})`, 1000, async () => {
        await server.stop();
        assert.equal(await server.wait(DEADLINE_S * 1000), { completed: 0, aborted: 0 });
        await tr.close();
        await starting;
      });
      await until(() => peer.open() === 0, `${scheme}: no socket left open`, 2000);
    }
    const tr = await getTransport(`rabbit://guest:guest@127.0.0.1:${peer.port}/`, { config: defaultConfig() });
    const l = new NotificationListener(tr, [new Target({ topic: 'lib' })], [{ info() {} }]);
    const starting = l.start();
    await sleep(200);
    await timed('library NotificationListener × connecting, silent peer (rabbit)', 1000, async () => {
      await l.stop();
      await l.wait(1000);
      await tr.close();
      await starting;
    });
    await until(() => peer.open() === 0, 'no socket left open', 2000);
  } finally {
    await peer.close();
  }
  const port = await freePort();
  const tr = await getTransport(`rabbit://guest:guest@127.0.0.1:${port}/`, {
    config: defaultConfig(),
    overrides: { 'rabbit.retryInterval': 5000 },
  });
  const server = new RPCServer(tr, new Target({ topic: 'lib', server: 'y' }), [new Recorder('y')]);
  const starting = server.start();
  await until(() => tr.state.state === 'reconnecting', 'backing off', 5000);
  await timed('library RPCServer+Transport × reconnecting (rabbit)', 1000, async () => {
    await server.stop();
    await server.wait(1000);
    await tr.close();
    await starting;
  });
  await rejects(server.start(), 'HERMOD_ERR_CLOSED');
});

t('library × CONNECTION_FORCED during stop: the listener connection is not re-opened; wait() and close() are bounded', async (ctx) => {
  const tr = await transport(ctx, ctx.url, { 'rabbit.retryInterval': 100 });
  const states: Array<ConnectionState & { role?: string }> = [];
  const server = new RPCServer(tr, new Target({ topic: 'libf', server: 'f' }), [new Recorder('f')]);
  await server.start();
  const client = new RPCClient(await transport(ctx, ctx.url), new Target({ topic: 'libf', server: 'f' }), { timeout: 20_000 });
  const short = client.call({}, 'sleep', { ms: 300 });
  await sleep(100);
  await server.stop();
  tr.on('state', (s: ConnectionState) => states.push(s));
  await ctx.node.ctl('close_all_connections', '-p', ctx.vhost, 'shutdown test');
  await timed('library RPCServer × CONNECTION_FORCED during stop (rabbit)', BOUND_MS, async () => {
    await server.wait(DEADLINE_S * 1000);
  });
  await short.catch(() => {});
  await sleep(800);
  // Only the transport's own publisher connection may come back; the server's listener stays down.
  const q = await ctx.node.queues(ctx.vhost);
  assert.is(q.get('libf.f')?.consumers ?? 0, 0, 'no consumer came back');
  await timed('library Transport.close after CONNECTION_FORCED (rabbit)', 1000, () => tr.close());
});

t('library × busy: wait() answers the short call, aborts the long one at the deadline with ServerStopped', async (ctx) => {
  const tr = await transport(ctx, ctx.url);
  const server = new RPCServer(tr, new Target({ topic: 'libb', server: 'b' }), [new Recorder('b')]);
  await server.start();
  const client = new RPCClient(await transport(ctx, ctx.url), new Target({ topic: 'libb', server: 'b' }), { timeout: 20_000 });
  const short = client.call({}, 'sleep', { ms: 500 });
  const long = client.call({}, 'sleep', { ms: 30_000 }).catch((e: Error & { code?: string }) => e);
  await until(() => server.stats().inFlight === 2, 'both running');
  await server.stop();
  await timed('library RPCServer × busy (rabbit)', BOUND_MS, async () => {
    assert.equal(await server.wait(DEADLINE_S * 1000), { completed: 1, aborted: 1 });
  });
  assert.is(await short, 500);
  assert.match(String(((await long) as Error).message), /stopped before sleep finished/);
});

// --- what callers see: requests delivered but not started reach another server -----------------

for (const driver of ['rabbit', 'amqp1'] as const) {
  t(`${driver}: requests a stopping server took but had not started are answered by another server`, async (ctx) => {
    let router: Router | undefined;
    let url = ctx.url;
    if (driver === 'amqp1') {
      router = new Router({ port: 0 });
      await router.start();
      url = router.url;
    }
    try {
      const a = new Recorder('a');
      const b = new Recorder('b');
      const sa = new RPCServer(await transport(ctx, url), new Target({ topic: `left-${driver}`, server: 'a' }), [a], { concurrency: 1 });
      const sb = new RPCServer(await transport(ctx, url), new Target({ topic: `left-${driver}`, server: 'b' }), [b], { concurrency: 1 });
      await sa.start();
      await sb.start();
      const tr = await transport(ctx, url);
      // A busy with a long call; B free. Then whoami calls to the shared topic: round robin.
      const blocker = new RPCClient(tr, new Target({ topic: `left-${driver}`, server: 'a' }), { timeout: 20_000 }).call({}, 'sleep', {
        ms: 1500,
      });
      await until(() => sa.stats().inFlight === 1, 'a busy');
      const client = new RPCClient(tr, new Target({ topic: `left-${driver}` }), { timeout: 15_000 });
      const calls = Array.from({ length: 6 }, () => client.call({}, 'whoami', {}));
      await until(() => sa.stats().queued > 0 || b.calls.length >= 6, 'a took requests it cannot start yet', 5000);
      const queuedAtStop = sa.stats().queued;
      await sa.stop();
      const answers = await Promise.all(calls);
      assert.is(answers.length, 6, 'every request answered');
      assert.ok(
        answers.every((x) => x === 'b'),
        `answered by ${answers.join(',')}`,
      );
      assert.ok(queuedAtStop > 0, 'the case happened: a had taken requests it had not started');
      assert.is(a.calls.length, 0, 'a started none of them');
      assert.is(await blocker, 1500, 'the running one still finished');
      // The blocker may still be finishing its own bookkeeping (ack) when its caller has the reply.
      const waited = await sa.wait(2000);
      assert.is(waited.aborted, 0);
      assert.ok(waited.completed <= 1, `completed ${waited.completed}: only the blocker ran`);
      await sb.stop();
      await sb.wait(1000);
    } finally {
      await router?.stop();
    }
  });
}

t.run();
