#!/usr/bin/env node
// `node dist/bench/ops.js`: the operations rows on RabbitMQ (a throwaway node unless
// --transport-url). (1) `hermod run --workers 2` against 1 worker on the 64-in-flight call
// workload, both deployments running at once on their own topics and rounds alternating so
// other load hits both alike; (2) the cost of metrics, by bench/metrics.ts on the same node;
// (3) a bounded reload soak: `hermod run --watch` (recycling its worker every 100 reloads, the
// default), N reloads under a steady call rate, failed calls counted, and the RSS of the worker
// that answers (the process holding the reloaded code) and of the primary read at start, middle
// and end, with the worker's largest RSS over the run. Also run by bench/run.ts.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { defaultConfig, getTransport, RPCClient, Target, type Transport } from '../src/index.js';
import { median } from './stats.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const HERMOD = path.join(here, '..', 'bin', 'hermod.js');
const progress = (s: string) => process.stderr.write(`  ${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Options of {@link opsBench}. */
export interface OpsBenchOptions {
  transportUrl?: string;
  calls: number;
  rounds: number;
  concurrency: number;
  reloads: number;
  /** Rows to run: workers, metrics, reload. */
  only: Set<string>;
}

interface Runner {
  child: ChildProcess;
  exited: Promise<number | null>;
}

function hermodRun(dir: string, file: string, args: string[]): Runner {
  // log.level warn (the run files say so): what reaches stdout is a warning worth seeing.
  const child = spawn(process.execPath, [HERMOD, 'run', file, ...args], { cwd: dir, stdio: ['ignore', 'inherit', 'inherit'] });
  return { child, exited: new Promise((res) => child.once('exit', (c) => res(c))) };
}

async function until(check: () => boolean, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Waits until `server` answers on `topic` (hermod run logs nothing at warn once serving). */
async function answering(transport: Transport, topic: string, server: string): Promise<void> {
  const client = new RPCClient(transport, new Target({ topic, server }), { timeout: 500 });
  const end = Date.now() + 60_000;
  for (;;) {
    try {
      await client.call({}, 'add', { a: 0, b: 0 });
      return;
    } catch (err) {
      if (Date.now() > end) throw err;
    }
  }
}

async function stopRun(r: Runner): Promise<void> {
  if (r.child.exitCode !== null) return;
  r.child.kill('SIGTERM');
  await r.exited;
}

async function rate(call: () => Promise<unknown>, n: number, inFlight: number): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  const lane = async () => {
    while (next < n) {
      next++;
      await call();
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  return n / ((performance.now() - t0) / 1000);
}

function writeRunFile(dir: string, name: string, url: string, services: Record<string, unknown>, extra: object = {}): string {
  const file = path.join(dir, name);
  writeFileSync(file, JSON.stringify({ config: { transportUrl: url, log: { level: 'warn' } }, ...extra, services }));
  return file;
}

/** Row 1: 1 worker and 2 workers at once, on their own topics, rounds alternating. */
async function workersRow(o: OpsBenchOptions, url: string, dir: string, transport: Transport): Promise<string[]> {
  writeFileSync(path.join(dir, 'add.js'), 'export default { async add(_c, { a, b }) { return a + b; } };\n');
  const runs: Runner[] = [];
  try {
    // log.level=warn: no line per request (at info, the log would be what is measured).
    for (const n of [1, 2]) {
      const file = writeRunFile(dir, `w${n}.json`, url, { add: { endpoints: './add.js', topic: `bench_ops_w${n}`, server: 'w' } });
      runs.push(hermodRun(dir, file, ['--workers', String(n)]));
    }
    for (const server of ['w', 'w-1', 'w-2']) await answering(transport, server === 'w' ? 'bench_ops_w1' : 'bench_ops_w2', server);
    const clients = [1, 2].map((n) => new RPCClient(transport, new Target({ topic: `bench_ops_w${n}` }), { timeout: 30_000 }));
    const calls = clients.map((c) => () => c.call({}, 'add', { a: 1, b: 2 }));
    for (const c of calls) await rate(c, Math.min(1000, o.calls), o.concurrency);
    const got: number[][] = [[], []];
    for (let r = 0; r < o.rounds; r++) {
      for (const i of r % 2 === 0 ? [0, 1] : [1, 0]) got[i]!.push(await rate(calls[i]!, o.calls, o.concurrency));
      progress(
        `workers: round ${r + 1}/${o.rounds} 1 worker ${Math.round(got[0]!.at(-1)!)}, 2 workers ${Math.round(got[1]!.at(-1)!)} calls/s`,
      );
    }
    const [one, two] = [median(got[0]!), median(got[1]!)];
    return [
      `hermod run, ${o.concurrency} in flight, ${o.calls} calls × ${o.rounds} rounds (medians; per-round: 1 worker ${got[0]!.map(Math.round).join(', ')}; 2 workers ${got[1]!.map(Math.round).join(', ')})`,
      '',
      '| deployment | calls/s | ratio |',
      '|:--|--:|--:|',
      `| hermod run --workers 1 | ${Math.round(one)} | 1.00 |`,
      `| hermod run --workers 2 | ${Math.round(two)} | ${(two / one).toFixed(2)} |`,
    ];
  } finally {
    await Promise.all(runs.map(stopRun));
  }
}

/** Row 2: bench/metrics.ts on the same node (RabbitMQ only). */
async function metricsRow(o: OpsBenchOptions, url: string): Promise<string[]> {
  const args = [
    path.join(here, 'metrics.js'),
    '--only',
    'rabbit',
    '--transport-url',
    url,
    '--calls',
    String(o.calls),
    '--rounds',
    String(o.rounds),
    '--concurrency',
    String(o.concurrency),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d;
  });
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`bench/metrics exited ${code}`);
  return out.trimEnd().split('\n');
}

function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN; // exited (a recycled worker)
  }
}

/** Row 3: N reloads under a steady call rate; failed calls and RSS at start, middle, end. */
async function reloadRow(o: OpsBenchOptions, url: string, dir: string, transport: Transport): Promise<string[]> {
  const ep = path.join(dir, 'v.js');
  const version = (v: number) => writeFileSync(ep, `export default { async v() { return [${v}, process.pid]; } };\n`);
  version(0);
  const file = writeRunFile(
    dir,
    'reload.json',
    url,
    { v: { endpoints: './v.js', topic: 'bench_ops_reload', server: 'r' } },
    { watch: { debounceMs: 5 } },
  );
  const run = hermodRun(dir, file, []);
  const client = new RPCClient(transport, new Target({ topic: 'bench_ops_reload' }), { timeout: 10_000 });
  let last = -1;
  let pid = 0;
  let ok = 0;
  const failures: string[] = [];
  const pids = new Set<number>();
  let stale = 0;
  let stop = false;
  // Steady rate: 4 lanes, each a call then 10 ms of pause.
  const lane = async () => {
    while (!stop) {
      try {
        const [v, p] = (await client.call({}, 'v', {})) as [number, number];
        // A fresh worker must never answer with older code than the one it replaced.
        if (!pids.has(p) && pids.size > 0 && v < last) stale++;
        pids.add(p);
        [last, pid] = [v, p];
        ok++;
      } catch (err) {
        failures.push((err as Error).message);
      }
      await sleep(10);
    }
  };
  // The worker that answered last may be a recycled one that has just exited: then the next.
  const workerRss = async () => {
    for (;;) {
      const m = rssMiB(pid);
      if (Number.isFinite(m)) return m;
      await sleep(20);
    }
  };
  let lanes: Promise<void>[] = [];
  try {
    lanes = Array.from({ length: 4 }, lane);
    await until(() => last === 0, 'the first answer');
    failures.length = 0; // calls before the runner was up are not failures of a reload
    // The worker's RSS after a few hundred calls have warmed it up.
    await until(() => ok > 300, 'warm-up calls');
    const primary = run.child.pid!;
    const rss: Array<[string, number, number]> = [['start', await workerRss(), rssMiB(primary)]];
    let peak = rss[0]![1];
    const t0 = performance.now();
    for (let v = 1; v <= o.reloads; v++) {
      version(v);
      await until(() => last === v, `version ${v} answering`, 30_000);
      if (v % 10 === 0) peak = Math.max(peak, await workerRss());
      if (v === Math.floor(o.reloads / 2)) rss.push(['middle', await workerRss(), rssMiB(primary)]);
      if (v % 100 === 0) progress(`reload: ${v}/${o.reloads}, ${ok} calls, ${failures.length} failed, ${pids.size} worker pids`);
    }
    rss.push(['end', await workerRss(), rssMiB(primary)]);
    const seconds = (performance.now() - t0) / 1000;
    const mib = (m: number) => `${m.toFixed(0)} MiB`;
    return [
      `reload soak: hermod run --watch (worker recycled every 100 reloads, the default), ${o.reloads} reloads in ${seconds.toFixed(0)} s under 4 callers (a call then 10 ms pause each); RSS of the worker answering at that moment (VmRSS), and of the primary`,
      '',
      '| reloads | calls answered | failed calls | worker pids | worker RSS start | middle | end | largest | primary RSS start → end |',
      '|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
      `| ${o.reloads} | ${ok} | ${failures.length}${failures.length ? ` (${failures[0]})` : ''} | ${pids.size}${stale ? ` (${stale} stale answers)` : ''} | ${rss.map(([, w]) => mib(w)).join(' | ')} | ${mib(peak)} | ${mib(rss[0]![2])} → ${mib(rss.at(-1)![2])} |`,
    ];
  } finally {
    stop = true;
    await Promise.all(lanes);
    await stopRun(run);
  }
}

/** Runs the rows asked for and returns their markdown lines. */
export async function opsBench(o: OpsBenchOptions): Promise<string[]> {
  const cleanups: Array<() => Promise<unknown>> = [];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hermod-bench-ops-'));
  writeFileSync(path.join(dir, 'package.json'), '{"type":"module"}\n');
  const out = [
    `ops bench — ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'} shared with the broker, load ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}, Node ${process.version}`,
  ];
  try {
    let url = o.transportUrl;
    if (!url) {
      progress('starting a throwaway RabbitMQ node…');
      const { RabbitNode } = await import('../scripts/rabbit-node.js');
      const node = await RabbitNode.start({ name: 'hermod-bench-ops' });
      cleanups.push(() => node.stop());
      url = node.url();
    }
    const transport = await getTransport(url, { config: defaultConfig(), overrides: { 'rpc.maxInFlight': 4096 } });
    cleanups.push(() => transport.close());
    if (o.only.has('workers')) out.push('', ...(await workersRow(o, url, dir, transport)));
    if (o.only.has('metrics')) out.push('', ...(await metricsRow(o, url)));
    if (o.only.has('reload')) out.push('', ...(await reloadRow(o, url, dir, transport)));
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const opts = new Command('bench-ops')
    .option('--calls <n>', 'calls per round', (v) => Number(v), 5000)
    .option('--rounds <n>', 'rounds per setting', (v) => Number(v), 5)
    .option('--concurrency <n>', 'calls in flight', (v) => Number(v), 64)
    .option('--reloads <n>', 'reloads in the soak', (v) => Number(v), 1000)
    .option('--transport-url <url>', 'a RabbitMQ URL instead of a throwaway node')
    .option('--only <rows>', 'comma-separated: workers, metrics, reload', 'workers,metrics,reload')
    .parse()
    .opts<{ calls: number; rounds: number; concurrency: number; reloads: number; transportUrl?: string; only: string }>();
  opsBench({ ...opts, only: new Set(opts.only.split(',').map((s) => s.trim())) }).then(
    (lines) => process.stdout.write(`${lines.join('\n')}\n`),
    (err) => {
      process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
