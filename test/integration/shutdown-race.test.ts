import { type ChildProcess, spawn } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { alive, RabbitNode } from '../../scripts/rabbit-node.js';
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
import { sleep, until } from '../support/assert.js';
import { Recorder } from '../support/endpoints.js';
import { accounted, backlog, drainRest, printedNs } from '../support/shutdown-backlog.js';
import { Figures, type Proc, printed, reap, startBin } from '../support/shutdown-procs.js';

// The stop matrix's destructive columns, on RabbitMQ nodes of their own (the shared one must
// survive): the broker SIGSTOPped during stop, and the race of issue #22 (SIGTERM to rpc-server,
// then the broker's own shutdown 0–50 ms later) looped with a CPU-busy process beside it.

const DEADLINE_S = 2;
const BOUND_MS = DEADLINE_S * 1000 + 1000;
const LISTENER_BOUND_MS = DEADLINE_S * 1000 + 2000;
/** Race iterations; three nodes take turns so two boot while the third is raced. */
// Not HERMOD_*: the CLIs under test refuse unknown HERMOD_ variables, and they inherit this environment.
const RACES = Number(process.env.SHUTDOWN_RACES ?? 20);
const figures = new Figures();

interface Ctx {
  nodes: RabbitNode[];
  procs: Proc[];
  transports: Transport[];
}
const t = suite<Ctx>('stopping: broker SIGSTOPped during stop, and the SIGTERM/broker-shutdown race', {} as Ctx);
t.before(async (ctx) => {
  // Three: the race loop takes them in turn, so each has two races' time to reboot.
  ctx.nodes = await RabbitNode.startAll(['a', 'b', 'c'].map((n) => ({ name: `hermod-race-${n}` })));
});
t.after(async (ctx) => {
  figures.print('stop matrix (dedicated nodes): exit times');
  for (const n of ctx.nodes ?? []) {
    const pid = n.pid();
    if (pid && alive(pid)) process.kill(pid, 'SIGCONT');
    await n.stop();
  }
});
t.before.each((ctx) => {
  ctx.procs = [];
  ctx.transports = [];
});
t.after.each(async (ctx) => {
  reap(...ctx.procs);
  for (const tr of ctx.transports) await tr.close();
});

function rpcServer(ctx: Ctx, url: string, name: string): Proc {
  const p = startBin('rpc-server', [
    name,
    '--topic',
    'race',
    '--transport-url',
    url,
    '--shutdown-timeout',
    String(DEADLINE_S),
    '--config',
    'rabbit.retryInterval=200',
    '--config',
    'rabbit.intervalMax=1000',
  ]);
  ctx.procs.push(p);
  return p;
}

t(
  'broker SIGSTOPped during stop: rpc-server (busy) and notify-listen (busy with a backlog) exit within the deadline + 1 s; the library objects return within their bounds',
  async (ctx) => {
    const node = ctx.nodes[0]!;
    const pid = node.pid()!;
    const N = 3000;
    await backlog(node, '/', node.url(), 'raceb', N);
    // rpc-server, busy: a call in flight, SIGTERM, then the broker freezes.
    const s = rpcServer(ctx, node.url(), 'frozen');
    await printed(s, /serving topic race/, 'serving');
    const tr = await getTransport(node.url(), { config: defaultConfig() });
    ctx.transports.push(tr);
    void new RPCClient(tr, new Target({ topic: 'race', server: 'frozen' }), { timeout: 20_000 })
      .call({}, 'sleep', { seconds: 30 })
      .catch(() => {});
    const lib = new RPCServer(await getTransport(node.url(), { config: defaultConfig() }), new Target({ topic: 'race', server: 'lib' }), [
      new Recorder('lib'),
    ]);
    await lib.start();
    // The library listener, busy: a notification whose endpoint runs past the deadline.
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const libLTr = await getTransport(node.url(), { config: defaultConfig() });
    const libL = new NotificationListener(libLTr, [new Target({ topic: 'racen' })], [{ info: () => held }]);
    await libL.start();
    await new Notifier(tr, { publisherId: 'lib', topics: ['racen'] }).info({}, 'x', { n: 0 });
    await until(() => libL.stats().inFlight === 1, 'the library listener busy');
    // notify-listen, busy: consuming the backlog when the signal comes.
    const l = startBin('notify-listen', [
      '--topic',
      'raceb',
      '--json',
      '--transport-url',
      node.url(),
      '--shutdown-timeout',
      String(DEADLINE_S),
    ]);
    ctx.procs.push(l);
    await until(() => printedNs(l).length >= 200, 'notify-listen printing the backlog', 15_000);
    const t0 = Date.now();
    s.child.kill('SIGTERM');
    l.child.kill('SIGTERM');
    await sleep(20);
    process.kill(pid, 'SIGSTOP');
    try {
      const stopLib = async (o: { stop(): Promise<void>; wait(ms: number): Promise<unknown> }, t: Transport) => {
        await o.stop();
        await o.wait(DEADLINE_S * 1000);
        await t.close();
        return Date.now() - t0;
      };
      const [rs, nl, libMs, libLMs] = await Promise.all([s.exited, l.exited, stopLib(lib, lib.transport), stopLib(libL, libLTr)]);
      figures.add('rpc-server × busy, broker SIGSTOPped during stop', rs.at - t0, BOUND_MS, `exit ${rs.code}`);
      figures.add('notify-listen × busy, broker SIGSTOPped during stop', nl.at - t0, BOUND_MS, `exit ${nl.code}`);
      figures.add('library RPCServer+Transport × idle, broker SIGSTOPped', libMs, BOUND_MS, 'returned');
      figures.add('library NotificationListener+Transport × busy, SIGSTOPped', libLMs, LISTENER_BOUND_MS, 'returned');
      assert.ok(rs.at - t0 <= BOUND_MS, `rpc-server: ${rs.at - t0} ms\n${s.out}${s.err}`);
      assert.is(rs.code, 7, 'the call in flight was aborted');
      assert.ok(nl.at - t0 <= BOUND_MS, `notify-listen: ${nl.at - t0} ms\n${l.err}`);
      // 0 if its stop was done before the freeze; it then waits for nothing but its close.
      assert.ok(nl.code === 0 || nl.code === 7, `notify-listen exit ${nl.code}\n${l.err}`);
      assert.ok(libMs <= BOUND_MS, `library server: ${libMs} ms`);
      // Its channel close usually gets no second grace (the broker had not answered the cancels
      // stop() sent): about 2,030 ms in 13 CI runs, but 3,043 in one (Node 20, four files at a
      // time) where it did get one, for a reason not yet found. The documented bound is the
      // deadline + at most 2 s; the figures table shows which it was.
      assert.ok(libLMs <= LISTENER_BOUND_MS, `library listener: ${libLMs} ms`);
    } finally {
      process.kill(pid, 'SIGCONT');
      release();
    }
    // Once the broker runs again: nothing of the backlog is lost (its connection was dropped
    // unanswered, so acknowledgements may be lost: printed ones may come again), and the held
    // notification is queued again.
    const p = printedNs(l);
    assert.ok(p.length < N, `notify-listen was busy (printed ${p.length} of ${N})`);
    const { twice } = accounted(p, await drainRest(node.url(), 'raceb', N - p.length, 30_000), N, true);
    figures.add(`  … printed ${p.length}, lost 0, delivered again ${twice}`, 0, BOUND_MS, 'checked');
    assert.equal(await drainRest(node.url(), 'racen', 1, 30_000), [0], 'the held notification is delivered again');
  },
);

t(
  'broker blocked (memory alarm) during stop: rpc-server with a reply it cannot publish and the library objects stop within the deadline + 1 s',
  async (ctx) => {
    const node = ctx.nodes[1]!;
    const s = rpcServer(ctx, node.url(), 'blocked');
    await printed(s, /serving topic race/, 'serving');
    const tr = await getTransport(node.url(), { config: defaultConfig() });
    ctx.transports.push(tr);
    // With the alarm on, RabbitMQ sends connection.blocked to every connection (hermod's `blocked`
    // state) and holds publishers; the servers stop with calls in flight whose replies are due.
    const direct = (server: string) => new RPCClient(tr, new Target({ topic: 'race', server }), { timeout: 20_000 });
    const libTr = await getTransport(node.url(), { config: defaultConfig() });
    ctx.transports.push(libTr);
    const lib = new RPCServer(libTr, new Target({ topic: 'race', server: 'lib-b' }), [new Recorder('lib-b')]);
    await lib.start();
    let blockedSeen = 0;
    libTr.on('state', (st: ConnectionState) => {
      if (st.state === 'blocked') blockedSeen++;
    });
    const early = [direct('blocked').call({}, 'sleep', { seconds: 0.7 }), direct('lib-b').call({}, 'sleep', { ms: 700 })].map((p) =>
      p.catch((e: Error) => e),
    );
    // Long enough to be running at SIGTERM however long the alarm takes to block the connections (seconds under load).
    const late = [direct('blocked').call({}, 'sleep', { seconds: 30 }), direct('lib-b').call({}, 'sleep', { ms: 30_000 })].map((p) =>
      p.catch((e: Error) => e),
    );
    await sleep(200);
    await node.ctl('set_vm_memory_high_watermark', '0');
    try {
      // RabbitMQ blocks a connection when it publishes under the alarm: make the library's publish.
      void new RPCClient(libTr, new Target({ topic: 'race' }), { timeout: 20_000 }).cast({}, 'bump', { seq: 1 }).catch(() => {});
      await until(() => blockedSeen > 0, 'the library transport told it is blocked', 15_000);
      // rpc-server's own publish is the reply of its 0.7 s call.
      await printed(s, /blocked/, 'rpc-server logs its connection blocked', 15_000);
      const states = await node.ctl('list_connections', '-q', 'state');
      assert.ok((states.match(/^block(ed|ing)$/gm) ?? []).length >= 3, `connections under the alarm:\n${states}`);
      const t0 = Date.now();
      s.child.kill('SIGTERM');
      const libDone = (async () => {
        await lib.stop();
        await lib.wait(DEADLINE_S * 1000);
        await lib.transport.close();
        return Date.now() - t0;
      })();
      const [rs, libMs] = await Promise.all([s.exited, libDone]);
      figures.add('rpc-server × broker blocked during stop', rs.at - t0, BOUND_MS, `exit ${rs.code}`);
      figures.add('library RPCServer+Transport × broker blocked during stop', libMs, BOUND_MS, 'returned');
      assert.ok(rs.at - t0 <= BOUND_MS, `rpc-server: ${rs.at - t0} ms\n${s.out}${s.err}`);
      assert.is(rs.code, 7, `rpc-server aborted its 30 s call at the deadline\n${s.out}${s.err}`);
      assert.ok(libMs <= BOUND_MS, `library: ${libMs} ms`);
    } finally {
      await node.ctl('set_vm_memory_high_watermark', '0.4');
    }
    // The late calls' ServerStopped could not be published under the alarm: closing their
    // transport ends them (ClosedError) instead of their 20 s timeout.
    await tr.close();
    await Promise.all([...early, ...late]);
  },
);

t(`race: SIGTERM to rpc-server after 100 calls, the broker's shutdown 0–50 ms later, ${RACES} times beside a CPU hog`, async (ctx) => {
  // A busy machine is what made the race lose (1 hang in 8 under load).
  // It ends itself once orphaned (the test process killed), so an interrupted run leaves no hog;
  // SIGKILL in `finally` ends it when stopped.
  const spin = 'const p = process.ppid; for (let i = 1; ; i++) if (i % 5e7 === 0 && process.ppid !== p) process.exit(0);';
  const hog: ChildProcess = spawn(process.execPath, ['-e', spin], { stdio: 'ignore' });
  // The hog spins from just before each SIGTERM until rpc-server has exited: that is the race.
  // Between races it is stopped, so the node reboots and the next server's start and 100 calls
  // get both cores (beside a spinning hog each race took 8 s, most of it a node's boot).
  hog.kill('SIGSTOP');
  const booting = new Map<RabbitNode, Promise<void>>();
  const times: number[] = [];
  try {
    for (let i = 0; i < RACES; i++) {
      const node = ctx.nodes[i % ctx.nodes.length]!;
      await booting.get(node);
      const s = rpcServer(ctx, node.url(), `r${i}`);
      await printed(s, /serving topic race/, `race ${i}: serving`, 30_000);
      const tr = await getTransport(node.url(), { config: defaultConfig() });
      const client = new RPCClient(tr, new Target({ topic: 'race', server: `r${i}` }), { timeout: 10_000 });
      for (let n = 0; n < 100; n++) await client.call({}, 'add', { a: n, b: 1 });
      await tr.close();
      const delay = Math.floor(Math.random() * 51);
      const pid = node.pid()!;
      hog.kill('SIGCONT');
      const t0 = Date.now();
      s.child.kill('SIGTERM');
      await sleep(delay);
      // The broker's own graceful shutdown: CONNECTION_FORCED 'shutdown' to every client.
      process.kill(pid, 'SIGTERM');
      const timer = setTimeout(() => s.child.kill('SIGKILL'), BOUND_MS + 10_000);
      const { code, at } = await s.exited;
      hog.kill('SIGSTOP');
      clearTimeout(timer);
      const ms = at - t0;
      times.push(ms);
      assert.ok(ms <= BOUND_MS, `race ${i} (broker ${delay} ms after SIGTERM): exited after ${ms} ms\n${s.out}${s.err}`);
      assert.is(code, 0, `race ${i}: nothing was in flight\n${s.out}${s.err}`);
      booting.set(
        node,
        (async () => {
          await until(() => !alive(pid), 'the node to stop', 30_000);
          await node.restart();
        })(),
      );
    }
    await Promise.all(booting.values());
  } finally {
    hog.kill('SIGKILL');
  }
  times.sort((a, b) => a - b);
  figures.add(`race × ${RACES}: median / max`, times[Math.floor(times.length / 2)]!, BOUND_MS, `max ${times.at(-1)} ms, all exit 0`);
});

t.run();
