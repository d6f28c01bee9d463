// The call workloads (1 and 2) on RabbitMQ for every system at once: each system is a responder
// process plus a caller process (bench/caller.ts), and the systems take turns in alternating
// rounds, so that a slow moment of the shared machine falls on all of them alike. hermod's
// responder is the rpc-server CLI as users run it (its built-in echo, default logging); raw
// amqplib's is bench/worker.ts; the Node peers' are bench/peers/*.cjs.
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import amqplib from 'amqplib';
import type { RawShape } from './worker.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const peersDir = path.join(root, 'bench', 'peers');

/**
 * The systems of the call workloads, in the order of the first round (raw first; each later
 * round starts one system later). `lane` is hermod with the README's fast lane on its caller
 * (`FAST_LANE` in caller.ts), against an rpc-server CLI of its own with default options.
 */
export const SYSTEMS = ['raw', 'hermod', 'lane', 'nest', 'moleculer'] as const;

export type System = (typeof SYSTEMS)[number];

/** One workload's figures for one system, over all rounds. */
export interface CallFigures {
  rate: number;
  p50: number;
  p99: number;
  max: number;
  /** Caller + responder CPU time per call, µs. */
  cpuPerCall: number;
  /**
   * The broker's CPU time per call over the same runs, µs (undefined when the bench did not
   * start the broker). Most of a call's CPU on one machine is the broker's, and what a system
   * asks of it (exchange routing, per-message expiration, a reply queue and its acks) is where
   * systems differ most.
   */
  brokerCpuPerCall: number | undefined;
  /** This system's rate over raw's in each round. */
  ratios: number[];
}

export interface SystemResult {
  seq: CallFigures;
  conc: CallFigures;
  rssIdle: number;
  rssPeak: number;
}

export interface RoundsResult {
  results: Partial<Record<System, SystemResult>>;
  /** Why systems were left out (not installed, failed to start). */
  skipped: string[];
}

/** Whether bench/peers has its own node_modules (`npm --prefix bench/peers ci`). */
export function peersInstalled(): boolean {
  return (
    existsSync(path.join(peersDir, 'node_modules', '@nestjs', 'microservices')) &&
    existsSync(path.join(peersDir, 'node_modules', 'moleculer'))
  );
}

const TICK_US = 1e6 / 100; // USER_HZ is 100 on Linux

/** utime + stime of a process, µs (/proc/<pid>/stat; 10 ms resolution). */
export function procCpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_US;
}

function procRss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** A process answering one IPC message per request, in order. */
export class Ipc {
  private readonly queue: Array<(m: Record<string, unknown>) => void> = [];
  constructor(readonly proc: ChildProcess) {
    proc.on('message', (m) => this.queue.shift()?.(m as Record<string, unknown>));
    proc.on('exit', () => {
      for (const q of this.queue.splice(0)) q({ error: 'process exited' });
    });
  }
  ask(m: Record<string, unknown>): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      this.queue.push((r) => (r.error ? reject(new Error(String(r.error))) : resolve(r)));
      this.proc.send(m);
    });
  }
}

async function waitLine(proc: ChildProcess, pred: (l: string) => boolean, ms: number, what: string): Promise<void> {
  const rl = createInterface({ input: proc.stdout! });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: not ready in ${ms} ms`)), ms);
    proc.once('exit', (code) => reject(new Error(`${what} exited (${code})`)));
    rl.on('line', (l) => {
      if (pred(l)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

/** Whether `queue` exists and has a consumer. */
async function hasConsumer(amqpUrl: string, queue: string): Promise<boolean> {
  const conn = await amqplib.connect(amqpUrl);
  try {
    const ch = await conn.createChannel();
    ch.on('error', () => {});
    return (await ch.checkQueue(queue)).consumerCount > 0;
  } catch {
    return false;
  } finally {
    await conn.close().catch(() => {});
  }
}

/** A system's responder and caller processes, started. */
export interface Running {
  system: System;
  responder: ChildProcess;
  caller: Ipc;
  rssIdle: number;
  rssPeak: number;
  stop(): Promise<void>;
}

/**
 * An `rpc-server` CLI started another way (bench/split.ts): its own topic, more command line
 * arguments, node flags before the script.
 */
export interface CliVariant {
  topic: string;
  args: string[];
  nodeArgs: string[];
}

/**
 * Starts `system`'s responder and its caller process. `rawShape` builds raw amqplib's responder
 * another way, `cli` hermod's (bench/split.ts), each on a queue of its own.
 */
export async function startSystem(system: System, rabbitUrl: string, rawShape?: RawShape, cli?: CliVariant): Promise<Running> {
  const amqpUrl = rabbitUrl.replace(/^rabbit(s?):/, 'amqp$1:');
  let responder: ChildProcess;
  let stopResponder: () => Promise<void>;
  const exited = (p: ChildProcess) =>
    new Promise<void>((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once('exit', () => r())));
  const topic = cli?.topic ?? (system === 'lane' ? 'pbench-lane' : 'pbench');
  const rawQueue = rawShape ? `praw-${rawShape.replies}-${rawShape.acks}` : 'praw';
  if (system === 'hermod' || system === 'lane') {
    const name = 'p1';
    // Its log (a line per request at the default level) goes to a file, as from a service
    // manager: a pipe read by this busy process would make the server wait on the reader.
    const dir = mkdtempSync(path.join(tmpdir(), 'hermod-bench-'));
    const logFile = path.join(dir, 'rpc-server.log');
    const fd = openSync(logFile, 'w');
    const args = [
      ...(cli?.nodeArgs ?? []),
      path.join(root, 'dist', 'bin', 'rpc-server.js'),
      name,
      '--topic',
      topic,
      '--transport-url',
      rabbitUrl,
      ...(cli?.args ?? []),
    ];
    responder = spawn(process.execPath, args, { stdio: ['ignore', fd, 'inherit'] });
    closeSync(fd);
    const end = Date.now() + 30_000;
    // Below info the CLI does not say it is serving: then its topic's queue having a consumer does.
    const ready = cli?.args.includes('--log-level')
      ? () => hasConsumer(amqpUrl, topic)
      : async () => readFileSync(logFile, 'utf8').includes('serving topic');
    while (!(await ready())) {
      if (responder.exitCode !== null || Date.now() > end) throw new Error(`rpc-server did not start:\n${readFileSync(logFile, 'utf8')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    stopResponder = async () => {
      responder.kill('SIGTERM');
      await exited(responder);
      rmSync(dir, { recursive: true, force: true });
    };
  } else if (system === 'raw') {
    responder = fork(path.join(here, 'worker.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const w = new Ipc(responder);
    await w.ask({ op: 'start-raw', url: amqpUrl, queue: rawQueue, fanout: `${rawQueue}_fan`, prefetch: 64, shape: rawShape });
    stopResponder = async () => {
      await w.ask({ op: 'stop' }).catch(() => {});
      await exited(responder);
    };
  } else {
    responder = spawn(process.execPath, [path.join(peersDir, `${system}.cjs`), 'responder', amqpUrl], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await waitLine(responder, (l) => l === 'ready', 30_000, `${system} responder`);
    stopResponder = async () => {
      responder.kill('SIGTERM');
      const t = setTimeout(() => responder.kill('SIGKILL'), 5000);
      await exited(responder);
      clearTimeout(t);
    };
  }
  // Peers' clients log to stdout: keep the table's stdout clean.
  const callerProc = fork(path.join(here, 'caller.js'), [], { stdio: ['ignore', 2, 2, 'ipc'] });
  const caller = new Ipc(callerProc);
  try {
    await caller.ask({ op: 'init', system, url: rabbitUrl, topic, server: 'p1', queue: rawQueue });
  } catch (err) {
    callerProc.kill('SIGKILL');
    await stopResponder();
    throw err;
  }
  const rssIdle = procRss(responder.pid!);
  return {
    system,
    responder,
    caller,
    rssIdle,
    rssPeak: rssIdle,
    async stop() {
      await caller.ask({ op: 'stop' }).catch(() => {});
      // Some peers' clients keep timers after close: the caller is done, end it.
      const t = setTimeout(() => callerProc.kill('SIGKILL'), 3000);
      await exited(callerProc);
      clearTimeout(t);
      await stopResponder();
    },
  };
}

interface RunOut {
  lat: number[];
  secs: number;
  cpuUs: number;
  brokerUs: number | undefined;
}

/** CPU µs of a process so far; undefined when it cannot be read (no pid, gone, not Linux). */
function cpuOrUndefined(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    return procCpuUs(pid);
  } catch {
    return undefined;
  }
}

async function runOnce(s: Running, n: number, inFlight: number, payload: string, brokerPid: number | undefined): Promise<RunOut> {
  const pid = s.responder.pid!;
  const sampler = setInterval(() => {
    try {
      s.rssPeak = Math.max(s.rssPeak, procRss(pid));
    } catch {
      /* gone */
    }
  }, 100);
  const before = procCpuUs(pid);
  const brokerBefore = cpuOrUndefined(brokerPid);
  try {
    const r = (await s.caller.ask({ op: 'run', n, inFlight, payload })) as unknown as { lat: number[]; secs: number; cpuUs: number };
    const responderUs = procCpuUs(pid) - before;
    const brokerAfter = cpuOrUndefined(brokerPid);
    const brokerUs = brokerBefore === undefined || brokerAfter === undefined ? undefined : brokerAfter - brokerBefore;
    return { lat: r.lat, secs: r.secs, cpuUs: r.cpuUs + responderUs, brokerUs };
  } finally {
    clearInterval(sampler);
    s.rssPeak = Math.max(s.rssPeak, procRss(pid));
  }
}

function figures(runs: RunOut[], rawRuns: RunOut[]): CallFigures {
  const lat = runs.flatMap((r) => r.lat).sort((a, b) => a - b);
  const secs = runs.reduce((a, r) => a + r.secs, 0);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.max(0, Math.ceil(p * lat.length) - 1))] ?? 0;
  const rate = (r: RunOut) => r.lat.length / r.secs;
  return {
    rate: lat.length / secs,
    p50: q(0.5),
    p99: q(0.99),
    max: lat[lat.length - 1] ?? 0,
    cpuPerCall: runs.reduce((a, r) => a + r.cpuUs, 0) / lat.length,
    brokerCpuPerCall: runs.every((r) => r.brokerUs !== undefined) ? runs.reduce((a, r) => a + r.brokerUs!, 0) / lat.length : undefined,
    ratios: runs.map((r, i) => rate(r) / rate(rawRuns[i]!)),
  };
}

/**
 * Runs workloads 1 (sequential) and 2 (`inFlight` at once) for every system in `rounds`
 * alternating rounds of `calls / rounds` calls each; a system that cannot start is skipped
 * with the reason.
 */
export async function callRounds(o: {
  rabbitUrl: string;
  /** The broker's process id when this machine runs it (its CPU per call is then reported). */
  brokerPid?: number;
  systems: System[];
  calls: number;
  rounds: number;
  inFlight: number;
  payload: string;
  /** Untimed calls per system before the first round of each workload. */
  warmup: number;
  /** Untimed calls per system right before each of its timed rounds. */
  rewarm: number;
  progress: (s: string) => void;
}): Promise<RoundsResult> {
  const skipped: string[] = [];
  const running: Running[] = [];
  try {
    for (const system of o.systems) {
      try {
        running.push(await startSystem(system, o.rabbitUrl));
      } catch (err) {
        if (system === 'raw' || system === 'hermod' || system === 'lane') throw err;
        const why = `${system} skipped: ${(err as Error).message.split('\n')[0]}`;
        o.progress(why);
        skipped.push(why);
      }
    }
    const per = Math.max(1, Math.round(o.calls / o.rounds));
    const runs = new Map<System, { seq: RunOut[]; conc: RunOut[] }>(running.map((s) => [s.system, { seq: [], conc: [] }]));
    for (const [kind, inFlight] of [
      ['seq', 1],
      ['conc', o.inFlight],
    ] as const) {
      // A few hundred calls leave the JIT of both processes far from what a long-running
      // service runs: every system gets the same untimed calls first.
      if (o.warmup > 0) {
        o.progress(`warm-up, ${inFlight} in flight: ${o.warmup} calls per system`);
        for (const s of running) await s.caller.ask({ op: 'warm', n: o.warmup, inFlight, payload: o.payload });
      }
      for (let r = 0; r < o.rounds; r++) {
        const line: string[] = [];
        // Each round starts one system later than the one before, so that over the rounds every
        // system runs in every position and after every other system: a fixed order would give
        // each system the same predecessor in every round (whose traffic the broker may still be
        // settling, whose processes the scheduler has just put to sleep) and the same place in
        // the machine's slow and fast moments, a bias that no number of rounds averages out.
        for (const s of [...running.slice(r % running.length), ...running.slice(0, r % running.length)]) {
          // A process idle while the others took their turns is slower for its next few thousand
          // calls (raw amqplib's caller 131–159 µs per call over 5,000 after 12 s idle, against
          // 95–103): without these, each round would partly measure how its system wakes up.
          // A thousand by default: a compromise with the run's length, not a measured recovery time.
          if (o.rewarm > 0) await s.caller.ask({ op: 'warm', n: o.rewarm, inFlight, payload: o.payload });
          const out = await runOnce(s, per, inFlight, o.payload, o.brokerPid);
          runs.get(s.system)![kind].push(out);
          line.push(`${s.system} ${Math.round(out.lat.length / out.secs)}/s`);
        }
        o.progress(`round ${r + 1}/${o.rounds}, ${inFlight} in flight: ${line.join(', ')}`);
      }
    }
    const raw = runs.get('raw')!;
    const results: RoundsResult['results'] = {};
    for (const s of running) {
      const x = runs.get(s.system)!;
      results[s.system] = { seq: figures(x.seq, raw.seq), conc: figures(x.conc, raw.conc), rssIdle: s.rssIdle, rssPeak: s.rssPeak };
    }
    return { results, skipped };
  } finally {
    for (const s of running.reverse()) await s.stop().catch(() => {});
  }
}
