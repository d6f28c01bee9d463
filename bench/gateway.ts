#!/usr/bin/env node
// The gateway row: HTTP calls through hermod-gateway (its own process) to an rpc server (its own
// process) over RabbitMQ and over the embedded router (its own process, as in bench/run.ts), with
// wrk (or autocannon) at 64 connections and a timed keep-alive loop at 1 (a lean client, and Node's own), beside the library client's own
// rates on the same server in the same run. Also the gateway's RSS under the 64-connection load,
// and the CPU time per call of each process (Linux), which a loaded machine disturbs less than
// rates do. The compared rows (library and gateway, at 1 and at 64) run in alternating rounds and
// report each figure's median over the rounds, so that one slow moment of a shared machine does
// not decide a ratio alone. At 64 connections the rounds also take the hermod-gateway CLI with
// --workers 2 (node:cluster) in front of the same server, as users start it on more than one core.
//   node dist/bench/gateway.js [--calls n] [--concurrent-calls n] [--rounds n] [--gateway-workers n] [--json file]
import { execFile, execFileSync, fork, spawn } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { Command } from 'commander';
import { defaultConfig, getTransport, RPCClient, Target } from '../src/index.js';
import { median } from './stats.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const opts = new Command('bench-gateway')
  .option('--transport-url <url>', 'a RabbitMQ URL to use instead of a throwaway node')
  .option('--calls <n>', 'calls of each sequential row', (v) => Number(v), 5000)
  .option('--concurrent-calls <n>', 'calls of each 64-in-flight row', (v) => Number(v), 20000)
  .option('--load-generator <name>', "HTTP load generator of the 64-connection rows: wrk (Debian's, when installed) or autocannon", 'wrk')
  .option('--wrk-seconds <n>', 'length of each measured wrk run (after a warm-up run of a second)', (v) => Number(v), 4)
  .option('--rounds <n>', 'alternating library/gateway rounds of each compared row (medians reported)', (v) => Number(v), 3)
  .option(
    '--gateway-workers <n>',
    'also the hermod-gateway CLI with --workers n at 64 connections, in the same rounds (0: not)',
    (v) => Number(v),
    2,
  )
  .option(
    '--lane',
    'RabbitMQ calls in the fast lane (direct reply-to, requests straight to the queue, no expiration) for the library client and the gateways alike',
  )
  .option('--brokers <list>', 'comma-separated: rabbitmq, router', 'rabbitmq,router')
  .option(
    '--wrk-batch <yes|no>',
    "also run wrk under SCHED_BATCH (chrt -b 0) at 64 connections, in the same rounds: woken by a response it then waits for its turn instead of preempting the gateway, as clients on other machines would; 'no' skips that row",
    'yes',
  )
  .option('--json <file>', 'also write the results as JSON')
  .parse()
  .opts<{
    transportUrl?: string;
    calls: number;
    concurrentCalls: number;
    rounds: number;
    loadGenerator: string;
    wrkSeconds: number;
    gatewayWorkers: number;
    lane?: boolean;
    brokers: string;
    wrkBatch: string;
    json?: string;
  }>();
if (opts.wrkBatch !== 'yes' && opts.wrkBatch !== 'no') throw new Error(`--wrk-batch must be yes or no, got ${opts.wrkBatch}`);
if (opts.loadGenerator !== 'wrk' && opts.loadGenerator !== 'autocannon') {
  throw new Error(`--load-generator must be wrk or autocannon, got ${opts.loadGenerator}`);
}
if (!Number.isInteger(opts.rounds) || opts.rounds < 1) throw new Error(`--rounds must be a whole number from 1, got ${opts.rounds}`);
if (!Number.isInteger(opts.gatewayWorkers) || opts.gatewayWorkers < 0 || opts.gatewayWorkers === 1) {
  throw new Error(`--gateway-workers must be 0 or a whole number from 2, got ${opts.gatewayWorkers}`);
}
const brokers = opts.brokers.split(',').map((b) => b.trim().toLowerCase());
for (const b of brokers) if (b !== 'rabbitmq' && b !== 'router') throw new Error(`--brokers: unknown broker '${b}' (rabbitmq, router)`);
const progress = (s: string) => process.stderr.write(`  ${s}\n`);
// Both sides get the same warm-up, long enough for the JIT to settle on the HTTP path too: at
// 64 connections the gateway was still speeding up after 1,000 requests (5,000 measured after
// them ran at 3,600/s, 30,000 at 5,600/s), so the concurrent rows warm up longer and run longer.
const warmUpOf = (inFlight: number) => (inFlight === 1 ? Math.min(1000, opts.calls) : Math.min(5000, opts.concurrentCalls));
const callsOf = (inFlight: number) => (inFlight === 1 ? opts.calls : opts.concurrentCalls);
/** The pause of the 'library, paused' row: about what a request spends crossing the HTTP hop. */
const PAUSE_MS = 0.3;

const clockTicks = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })) || 100;
  } catch {
    return 100;
  }
})();
/** CPU time (user + system) of this process or another so far in µs; another's from /proc (undefined where there is none). */
function cpuOf(pid: number | number[] | 'self' | undefined): number | undefined {
  if (Array.isArray(pid)) {
    const each = pid.map(cpuOf);
    return each.some((v) => v === undefined) ? undefined : each.reduce((t, v) => t! + v!, 0);
  }
  if (pid === 'self') {
    const u = process.cpuUsage();
    return u.user + u.system;
  }
  if (pid === undefined) return undefined;
  try {
    // The fields after the command name (which may hold spaces): state is 3rd, utime 14th, stime 15th.
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1e6) / clockTicks;
  } catch {
    return undefined;
  }
}

/**
 * Times the kernel took the CPU from a process's main thread so far (`nonvoluntary_ctxt_switches`,
 * summed over several processes), mostly for a process it had just woken: on two cores shared by
 * every process of the bench, the load generator woken by each response preempted the gateway
 * about once per two requests (0.44–0.55), the library client about once per 25 calls.
 */
function preemptionsOf(pid: number | number[] | 'self' | undefined): number | undefined {
  if (Array.isArray(pid)) {
    const each = pid.map(preemptionsOf);
    return each.some((v) => v === undefined) ? undefined : each.reduce((t, v) => t! + v!, 0);
  }
  try {
    const m = /^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(
      readFileSync(`/proc/${pid === 'self' || pid === undefined ? 'self' : pid}/status`, 'utf8'),
    );
    return pid === undefined || !m ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

/**
 * CPU µs per call of the processes in a workload, and how often the gateway (or, in the library
 * rows, the client: this process) was preempted per call: `begin` right before the timed calls,
 * `end` right after.
 */
class Meter {
  private start: Array<number | undefined> = [];
  private preemptedAt: number | undefined;
  cpu: Record<string, number | undefined> = {};
  preempted: number | undefined;
  constructor(
    private readonly procs: Record<string, number | number[] | 'self' | undefined>,
    /** Whose preemptions count: the gateway's processes, or this one (the library client). */
    private readonly watched: 'gateway' | 'bench' = 'gateway',
  ) {}
  begin(): void {
    this.start = Object.values(this.procs).map(cpuOf);
    this.preemptedAt = preemptionsOf(this.procs[this.watched]);
  }
  end(calls: number): void {
    Object.keys(this.procs).forEach((name, i) => {
      const a = this.start[i];
      const b = cpuOf(this.procs[name]);
      this.cpu[name] = a === undefined || b === undefined ? undefined : (b - a) / calls;
    });
    const now = preemptionsOf(this.procs[this.watched]);
    this.preempted = now === undefined || this.preemptedAt === undefined ? undefined : (now - this.preemptedAt) / calls;
  }
}

/** A child process answering one message per request, in order. */
function child(file: string) {
  const proc = fork(path.join(here, file), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const queue: Array<(m: Record<string, unknown>) => void> = [];
  proc.on('message', (m) => queue.shift()?.(m as Record<string, unknown>));
  return {
    pid: proc.pid,
    ask: (m: Record<string, unknown>) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        queue.push((r) => (r.error ? reject(new Error(String(r.error))) : resolve(r)));
        proc.send(m);
      }),
    exited: () => new Promise((r) => (proc.exitCode !== null ? r(undefined) : proc.once('exit', r))),
  };
}

interface Row {
  broker: string;
  client:
    | 'library'
    | 'library, paused'
    | 'gateway'
    | 'gateway, wrk SCHED_BATCH'
    | 'gateway, node:http client'
    | `gateway, ${number} workers`;
  connections: number;
  rate: number;
  p50: number;
  p99: number;
  /** CPU µs per call: `bench` is this process (the library client, or the HTTP load generator). */
  cpu: Record<string, number | undefined>;
  /** Preemptions per call of the gateway's processes (of the library client in its rows). */
  preempted?: number | undefined;
  /** Each round's figures, where the row is the median of several. */
  rounds?: Array<Measured & { cpu: Record<string, number | undefined>; preempted?: number | undefined }>;
}
type Measured = Omit<Row, 'broker' | 'client' | 'connections' | 'cpu' | 'rounds' | 'preempted'>;

/** One row from several rounds: the median of each figure (CPU per process too). */
function medianRow(base: Pick<Row, 'broker' | 'client' | 'connections'>, rounds: NonNullable<Row['rounds']>): Row {
  const cpu: Record<string, number | undefined> = {};
  for (const k of Object.keys(rounds[0]!.cpu)) {
    const vs = rounds.map((r) => r.cpu[k]);
    cpu[k] = vs.some((v) => v === undefined) ? undefined : median(vs as number[]);
  }
  const preempted = rounds.map((r) => r.preempted);
  return {
    ...base,
    rate: median(rounds.map((r) => r.rate)),
    p50: median(rounds.map((r) => r.p50)),
    p99: median(rounds.map((r) => r.p99)),
    cpu,
    ...(preempted.every((v) => v !== undefined) ? { preempted: median(preempted as number[]) } : {}),
    rounds,
  };
}

/**
 * The library client's calls; with `pauseMs`, each sequential call starts that long (busy, so
 * this process does not sleep) after the last answer: the broker and the server idle as long as
 * they do while a request crosses the gateway's HTTP hop, which alone makes calls slower.
 */
async function direct(url: string, n: number, inFlight: number, meter: Meter, pauseMs = 0): Promise<Measured> {
  const tr = await getTransport(url, { config: defaultConfig(), overrides: { 'rpc.maxInFlight': 4096 } });
  try {
    const c = new RPCClient(tr, new Target({ topic: 'bench', server: 's1' }), { timeout: 30_000 });
    const call = () => c.call({}, 'echo', { v: 'x'.repeat(32) });
    for (let i = 0; i < warmUpOf(inFlight); i += inFlight) await Promise.all(Array.from({ length: inFlight }, call));
    const lat: number[] = [];
    let next = 0;
    meter.begin();
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next++ < n) {
          if (pauseMs) for (const t = performance.now(); performance.now() - t < pauseMs; );
          const t = performance.now();
          await call();
          lat.push(performance.now() - t);
        }
      }),
    );
    const secs = (performance.now() - t0) / 1000;
    meter.end(lat.length);
    lat.sort((a, b) => a - b);
    const q = (p: number) => lat[Math.min(lat.length - 1, Math.ceil(p * lat.length) - 1)]!;
    return { rate: lat.length / secs, p50: q(0.5), p99: q(0.99) };
  } finally {
    await tr.close();
  }
}

/** One request at a time, after the warm-up: the rate, and p50 and p99 from performance.now(). */
async function timedSequential(once: () => Promise<void>, n: number, meter: Meter): Promise<Measured> {
  for (let i = 0; i < warmUpOf(1); i++) await once();
  const lat: number[] = [];
  meter.begin();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await once();
    lat.push(performance.now() - t);
  }
  const secs = (performance.now() - t0) / 1000;
  meter.end(n);
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.ceil(p * lat.length) - 1)]!;
  return { rate: lat.length / secs, p50: q(0.5), p99: q(0.99) };
}

// Sequential: one keep-alive connection timed with performance.now() (autocannon's latencies are
// whole milliseconds, too coarse for the added-p50 target).
async function httpSequential(port: number, n: number, meter: Meter): Promise<Measured> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const body = JSON.stringify({ v: 'x'.repeat(32) });
  const once = () =>
    new Promise<void>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path: '/v1/bench/echo',
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': body.length },
        },
        (res) => {
          res.resume();
          res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`gateway answered ${res.statusCode}`))));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  try {
    return await timedSequential(once, n, meter);
  } finally {
    agent.destroy();
  }
}

/**
 * Sequential, as wrk and autocannon send requests: one keep-alive socket, the request's bytes
 * written once and reused, the response read up to its `content-length`. Node's own HTTP client
 * spends its own time per request (a request object, header serialisation, a parser and stream
 * events), which is the load generator's, not the gateway's.
 */
async function leanSequential(port: number, n: number, meter: Meter): Promise<Measured> {
  const body = JSON.stringify({ v: 'x'.repeat(32) });
  const req = Buffer.from(
    `POST /v1/bench/echo HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  const sock = net.connect({ port, host: '127.0.0.1', noDelay: true });
  await once(sock, 'connect');
  let waiting: ((err?: Error) => void) | undefined;
  let acc: Buffer = Buffer.alloc(0);
  sock.on('error', (err) => waiting?.(err));
  sock.on('close', () => waiting?.(new Error('the gateway closed the connection')));
  sock.on('data', (d: Buffer) => {
    acc = acc.length ? Buffer.concat([acc, d]) : d;
    const head = acc.indexOf('\r\n\r\n');
    if (head < 0) return;
    const headers = acc.toString('latin1', 0, head);
    const len = /\r\ncontent-length: *(\d+)/i.exec(headers);
    if (!len) return waiting?.(new Error(`no content-length in ${headers}`));
    const total = head + 4 + Number(len[1]);
    if (acc.length < total) return;
    acc = acc.subarray(total);
    const w = waiting;
    waiting = undefined;
    w?.(headers.startsWith('HTTP/1.1 200') ? undefined : new Error(`gateway answered ${headers.split('\r\n')[0]}`));
  });
  const call = () =>
    new Promise<void>((resolve, reject) => {
      waiting = (err) => (err ? reject(err) : resolve());
      sock.write(req);
    });
  try {
    return await timedSequential(call, n, meter);
  } finally {
    sock.destroy();
  }
}

/** Whether Debian's `wrk` can run here. */
const wrkInstalled = (() => {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return true;
  } catch (err) {
    // wrk --version prints its banner and exits 1: it ran.
    return (err as { status?: number }).status !== undefined;
  }
})();

/** The load generator the 64-connection rows use: wrk unless it is missing or autocannon was asked for. */
const loadGenerator = opts.loadGenerator === 'wrk' && wrkInstalled ? 'wrk' : 'autocannon';

/** Why the SCHED_BATCH row is skipped, if it is: it needs wrk and util-linux's chrt. */
const wrkBatchSkipped = (() => {
  if (opts.wrkBatch === 'no') return 'skipped (--wrk-batch no)';
  if (loadGenerator !== 'wrk') return 'skipped: it needs wrk';
  try {
    execFileSync('chrt', ['-b', '0', 'true'], { stdio: 'ignore' });
    return undefined;
  } catch (err) {
    return `skipped: chrt -b 0 failed (${(err as Error).message.split('\n')[0]})`;
  }
})();

// wrk reports its own CPU time at the end (utime + stime from /proc/self/stat, in clock ticks),
// so that its column is its own and not this idle process's. Latencies are µs.
const WRK_SCRIPT = `wrk.method = "POST"
wrk.body = '${JSON.stringify({ v: 'x'.repeat(32) })}'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local f = io.open("/proc/self/stat")
  local stat = f:read("*a")
  f:close()
  local rest = stat:match("%) (.*)")
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  local e = summary.errors
  io.write(string.format("HERMOD-WRK %d %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout,
    tonumber(fields[12]) + tonumber(fields[13])))
end
`;

/**
 * Debian's wrk (C, one thread) at `connections`: a warm-up run of a second, then one of
 * `--wrk-seconds`. It costs far less CPU per request than autocannon, and on a two-core machine
 * every µs the load generator burns is a µs the gateway path does not get.
 */
async function wrk(port: number, connections: number, meter: Meter, batch = false): Promise<Measured> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hermod-wrk-'));
  try {
    const script = path.join(dir, 'post.lua');
    writeFileSync(script, WRK_SCRIPT);
    const run = (seconds: number) =>
      new Promise<string>((resolve, reject) =>
        execFile(
          batch ? 'chrt' : 'wrk',
          [
            ...(batch ? ['-b', '0', 'wrk'] : []),
            '-t1',
            `-c${connections}`,
            `-d${seconds}s`,
            '-s',
            script,
            `http://127.0.0.1:${port}/v1/bench/echo`,
          ],
          (err, stdout) => (err ? reject(err) : resolve(stdout)),
        ),
      );
    await run(1);
    meter.begin();
    const out = await run(opts.wrkSeconds);
    const line = /HERMOD-WRK (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)/.exec(out);
    if (!line) throw new Error(`wrk printed no summary:\n${out}`);
    const [requests, durationUs, p50Us, p99Us, non2xx, socketErrors, ticks] = line.slice(1).map(Number) as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    meter.end(requests);
    if (non2xx || socketErrors) throw new Error(`gateway answered ${non2xx} non-2xx; ${socketErrors} socket errors`);
    meter.cpu.bench = (ticks * 1e6) / clockTicks / requests;
    return { rate: requests / (durationUs / 1e6), p50: p50Us / 1000, p99: p99Us / 1000 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function http(port: number, n: number, connections: number, meter: Meter): Promise<Measured> {
  if (connections === 1) return leanSequential(port, n, meter);
  if (loadGenerator === 'wrk') return wrk(port, connections, meter);
  const run = (amount: number) =>
    autocannon({
      url: `http://127.0.0.1:${port}/v1/bench/echo`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ v: 'x'.repeat(32) }),
      connections,
      amount,
    });
  await run(warmUpOf(connections));
  meter.begin();
  const t0 = performance.now();
  // Timed from its own responses: autocannon notices the last one only at its next 1 s sampling
  // tick, so its run, and its start/finish stamps, last whole seconds (5,000 requests answered in
  // 1.2 s read as 2 s), which had capped every 64-connection row near 2,500/s.
  let answered = 0;
  let t1 = 0;
  // autocannon's promise is also the EventEmitter of its run; its types know only the promise.
  const inst = run(n) as Promise<autocannon.Result> & Pick<EventEmitter, 'on'>;
  inst.on('response', () => {
    if (++answered === n) {
      t1 = performance.now();
      meter.end(n);
    }
  });
  const r = await inst;
  if (answered < n) throw new Error(`autocannon ended after ${answered} of ${n} responses`);
  const secs = (t1 - t0) / 1000;
  if (r.non2xx || r.errors) throw new Error(`gateway answered ${r.non2xx} non-2xx and ${r.errors} errors`);
  // autocannon's latencies are whole milliseconds; its p50 and p99 are taken over every request.
  return { rate: r.requests.total / secs, p50: r.latency.p50, p99: r.latency.p99 };
}

/** The bench route's argument schema, as bench/gateway-proc.ts declares it. */
const BENCH_ARGS_SCHEMA = { type: 'object', properties: { v: { type: 'string' } }, required: ['v'] };

/** RSS of a process in bytes (/proc/<pid>/status), 0 once it is gone. */
function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * The `hermod-gateway` CLI as users start it with `--workers n`, in front of the same server:
 * the primary and its workers' pids (for their CPU and RSS) and the port they share.
 */
async function startWorkersGateway(url: string, workers: number) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hermod-gw-workers-'));
  const file = path.join(dir, 'gw.json');
  writeFileSync(
    file,
    JSON.stringify({
      listen: { host: '127.0.0.1', port: 0 },
      maxInFlight: 4096,
      routes: [{ topic: 'bench', method: 'echo', server: 's1', args: BENCH_ARGS_SCHEMA }],
    }),
  );
  const bin = path.join(here, '..', 'bin', 'hermod-gateway.js');
  const args = [bin, '--config-file', file, '--transport-url', url, '--workers', String(workers), '--config', 'rpc.maxInFlight=4096'];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout!.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const end = Date.now() + 30_000;
  while ((out.match(/listening on http/g) ?? []).length < workers) {
    if (proc.exitCode !== null || Date.now() > end) {
      // SIGTERM lets the primary stop its workers and report; after SIGKILL they would drain on their own.
      if (proc.exitCode === null) proc.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`hermod-gateway --workers ${workers} did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const port = Number(/listening on http:\/\/[^:]+:(\d+)/.exec(out)![1]);
  const workerPids = [...out.matchAll(/worker \d+ started \(pid (\d+)\)/g)].map((m) => Number(m[1]));
  return {
    port,
    pids: [proc.pid!, ...workerPids],
    rss: () => workerPids.reduce((t, pid) => t + rssOf(pid), rssOf(proc.pid!)),
    async stop() {
      proc.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  const rss: Record<string, number> = {};
  const ownP50: Record<string, number> = {};
  const cleanups: Array<() => Promise<unknown>> = [];
  process.stderr.write(`hermod gateway bench: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}\n`);
  try {
    let rabbitUrl = opts.transportUrl;
    let beam: number | undefined;
    if (!rabbitUrl && brokers.includes('rabbitmq')) {
      progress('starting a throwaway RabbitMQ node…');
      const { RabbitNode } = await import('../scripts/rabbit-node.js');
      const node = await RabbitNode.start({ name: 'hermod-bench-gw' });
      cleanups.push(() => node.stop());
      rabbitUrl = node.url();
      beam = node.pid();
    }
    // Caller-side options only: the servers answer such calls unchanged.
    if (opts.lane && rabbitUrl)
      rabbitUrl += `${rabbitUrl.includes('?') ? '&' : '?'}directReplyTo=true&requestRouting=queue&requestExpiration=false`;
    // In a process of its own: in this one it would share a core with the load generator.
    const router = child('worker.js');
    const routerUrl = `amqp://127.0.0.1:${(await router.ask({ op: 'start-router' })).port}/`;
    cleanups.push(async () => {
      await router.ask({ op: 'stop' });
      await router.exited();
    });

    for (const [broker, url] of [
      ['RabbitMQ', rabbitUrl ?? ''],
      ['router', routerUrl],
    ] as const) {
      if (!brokers.includes(broker.toLowerCase())) continue;
      const server = child('worker.js');
      await server.ask({ op: 'start-hermod', url, topic: 'bench', server: 's1', concurrency: 64 });
      const gw = child('gateway-proc.js');
      const { port } = (await gw.ask({ op: 'start', url, topic: 'bench', server: 's1' })) as { port: number };
      const workers = opts.gatewayWorkers ? await startWorkersGateway(url, opts.gatewayWorkers) : undefined;
      const workersClient = `gateway, ${opts.gatewayWorkers} workers` as const;
      try {
        const procs = { bench: 'self' as const, gateway: gw.pid, server: server.pid, broker: broker === 'router' ? router.pid : beam };
        for (const connections of [1, 64]) {
          const libraryRounds: NonNullable<Row['rounds']> = [];
          const gatewayRounds: NonNullable<Row['rounds']> = [];
          const workersRounds: NonNullable<Row['rounds']> = [];
          const batchRounds: NonNullable<Row['rounds']> = [];
          let peak = 0;
          let workersPeak = 0;
          const sampler =
            connections === 64
              ? setInterval(() => {
                  gw.ask({ op: 'rss' }).then((m) => {
                    peak = Math.max(peak, Number(m.rss));
                  });
                  if (workers) workersPeak = Math.max(workersPeak, workers.rss());
                }, 100)
              : undefined;
          if (connections === 1) await gw.ask({ op: 'own-start' });
          try {
            for (let round = 1; round <= opts.rounds; round++) {
              const of = opts.rounds > 1 ? ` (round ${round} of ${opts.rounds})` : '';
              progress(`${broker}: library client, ${connections} in flight${of}`);
              let meter = new Meter(procs, 'bench');
              libraryRounds.push({
                ...(await direct(url, callsOf(connections), connections, meter)),
                cpu: meter.cpu,
                preempted: meter.preempted,
              });
              const asIs = async () => {
                progress(`${broker}: gateway over HTTP, ${connections} connection(s)${of}`);
                const m = new Meter(procs);
                gatewayRounds.push({ ...(await http(port, callsOf(connections), connections, m)), cpu: m.cpu, preempted: m.preempted });
              };
              const batched = async () => {
                progress(`${broker}: gateway over HTTP, ${connections} connections, wrk under SCHED_BATCH${of}`);
                const m = new Meter(procs);
                batchRounds.push({ ...(await wrk(port, connections, m, true)), cpu: m.cpu, preempted: m.preempted });
              };
              if (connections === 64 && !wrkBatchSkipped) {
                // Each goes first every other round: the second of a pair ran on a gateway warmed by the first.
                for (const run of round % 2 ? [asIs, batched] : [batched, asIs]) await run();
              } else {
                await asIs();
              }
              if (workers && connections === 64) {
                progress(`${broker}: hermod-gateway --workers ${opts.gatewayWorkers} over HTTP, ${connections} connections${of}`);
                meter = new Meter({ ...procs, gateway: workers.pids });
                workersRounds.push({
                  ...(await http(workers.port, callsOf(connections), connections, meter)),
                  cpu: meter.cpu,
                  preempted: meter.preempted,
                });
              }
            }
          } finally {
            if (sampler) clearInterval(sampler);
          }
          rows.push(medianRow({ broker, client: 'library', connections }, libraryRounds));
          rows.push(medianRow({ broker, client: 'gateway', connections }, gatewayRounds));
          if (batchRounds.length) rows.push(medianRow({ broker, client: 'gateway, wrk SCHED_BATCH', connections }, batchRounds));
          if (workersRounds.length) {
            rows.push(medianRow({ broker, client: workersClient, connections }, workersRounds));
            rss[`${broker} workers`] = workersPeak;
          }
          if (connections === 1) {
            ownP50[broker] = Number((await gw.ask({ op: 'own-stop' })).p50);
            // Once each: what an idle pause alone costs, and Node's own HTTP client as the caller.
            progress(`${broker}: library client, 1 in flight, ${PAUSE_MS} ms pause before each call`);
            let meter = new Meter(procs);
            const paused = await direct(url, opts.calls, 1, meter, PAUSE_MS);
            rows.push({ broker, client: 'library, paused', connections, ...paused, cpu: meter.cpu });
            progress(`${broker}: gateway over HTTP, 1 connection, Node's HTTP client`);
            meter = new Meter(procs);
            const nodeHttp = await httpSequential(port, opts.calls, meter);
            rows.push({ broker, client: 'gateway, node:http client', connections, ...nodeHttp, cpu: meter.cpu });
          }
          if (connections === 64) rss[broker] = peak;
        }
      } finally {
        await workers?.stop();
        await gw.ask({ op: 'stop' });
        await gw.exited();
        await server.ask({ op: 'stop' }).catch(() => {});
        await server.exited();
      }
    }
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  }

  const us = (v: number | undefined) => (v === undefined ? '–' : v.toFixed(0));
  const lines = [
    opts.rounds > 1
      ? `library and gateway rows: the median of ${opts.rounds} alternating rounds of each figure; the ratio and the added p50 below pair each gateway round with the library round before it`
      : 'one round of each row',
    ...(opts.lane
      ? [
          'RabbitMQ rows in the fast lane (directReplyTo, requestRouting=queue, requestExpiration=false) for the library client and the gateways',
        ]
      : []),
    `64-connection gateway rows: ${loadGenerator === 'wrk' ? `wrk, one thread, ${opts.wrkSeconds} s runs (its CPU is the bench column)` : `autocannon${opts.loadGenerator === 'wrk' ? ' (wrk is not installed: apt-get install wrk)' : ''}`}`,
    `the 'gateway, wrk SCHED_BATCH' row: ${wrkBatchSkipped ?? 'the same wrk under chrt -b 0, beside the gateway row in each round (each first every other round): a response wakes it without preempting the gateway, as clients on other machines cannot'}`,
    "preempted/call: the gateway's main thread (in library rows the client's) losing its CPU involuntarily, per call",
    '',
    '| broker | client | in flight | calls/s | p50 ms | p99 ms | CPU µs/call: bench | gateway | server | broker | preempted/call |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows)
    lines.push(
      `| ${r.broker} | ${r.client} | ${r.connections} | ${r.rate.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${us(r.cpu.bench)} | ${r.client.startsWith('gateway') ? us(r.cpu.gateway) : '–'} | ${us(r.cpu.server)} | ${us(r.cpu.broker)} | ${r.preempted === undefined ? '–' : r.preempted.toFixed(2)} |`,
    );
  const summary: Record<string, unknown> = {};
  for (const broker of ['RabbitMQ', 'router']) {
    if (!rows.some((r) => r.broker === broker)) continue;
    const find = (client: string, c: number) => rows.find((r) => r.broker === broker && r.client === client && r.connections === c)!;
    // Paired by round (library then gateway, back to back): the median of the rounds' figures.
    const paired = (c: number, f: (lib: Measured, gw: Measured) => number) => {
      const lib = find('library', c).rounds!;
      const gw = find('gateway', c).rounds!;
      const each = lib.map((l, i) => f(l, gw[i]!));
      return { median: median(each), each };
    };
    const ratios = paired(64, (l, g) => g.rate / l.rate);
    const addeds = paired(1, (l, g) => g.p50 - l.p50);
    const ratio = ratios.median;
    const added = addeds.median;
    const spread = (xs: number[], digits: number) => (xs.length > 1 ? ` (rounds: ${xs.map((x) => x.toFixed(digits)).join(', ')})` : '');
    const addedNodeHttp = find('gateway, node:http client', 1).p50 - find('library', 1).p50;
    // CPU per call summed over the processes of each path: what bounds the rates on a busy machine.
    const lib = find('library', 64).cpu;
    const gw = find('gateway', 64).cpu;
    const sum = (c: Row['cpu'], keys: string[]) => (keys.some((k) => c[k] === undefined) ? undefined : keys.reduce((t, k) => t + c[k]!, 0));
    const cpu = {
      libraryClient: lib.bench,
      gateway: gw.gateway,
      loadGenerator: gw.bench,
      libraryPath: sum(lib, ['bench', 'server', 'broker']),
      gatewayPath: sum(gw, ['bench', 'gateway', 'server', 'broker']),
    };
    const pauseCost = find('library, paused', 1).p50 - find('library', 1).p50;
    summary[broker] = {
      ratioAt64: ratio,
      ratioAt64Rounds: ratios.each,
      addedP50Ms: added,
      addedP50MsRounds: addeds.each,
      addedP50NodeHttpClientMs: addedNodeHttp,
      gatewayOwnP50Ms: ownP50[broker],
      pauseCostP50Ms: pauseCost,
      gatewayRssMiB: rss[broker]! / 2 ** 20,
      cpuUsPerCallAt64: cpu,
    };
    const batchRow = rows.find((r) => r.broker === broker && r.client === 'gateway, wrk SCHED_BATCH' && r.connections === 64);
    if (batchRow) {
      const each = find('library', 64).rounds!.map((l, i) => batchRow.rounds![i]!.rate / l.rate);
      summary[broker] = {
        ...(summary[broker] as object),
        batchRatioAt64: median(each),
        batchRatioAt64Rounds: each,
        batchCpuUsPerCallAt64: { gateway: batchRow.cpu.gateway, gatewayPath: sum(batchRow.cpu, ['bench', 'gateway', 'server', 'broker']) },
        preemptedPerCallAt64: {
          library: find('library', 64).preempted,
          gateway: find('gateway', 64).preempted,
          gatewayBatch: batchRow.preempted,
        },
      };
    }
    const workersRow = rows.find((r) => r.broker === broker && r.client === `gateway, ${opts.gatewayWorkers} workers`);
    if (workersRow) {
      const each = find('library', 64).rounds!.map((l, i) => workersRow.rounds![i]!.rate / l.rate);
      summary[broker] = {
        ...(summary[broker] as object),
        workers: opts.gatewayWorkers,
        workersRatioAt64: median(each),
        workersRatioAt64Rounds: each,
        workersRssMiB: rss[`${broker} workers`]! / 2 ** 20,
        workersCpuUsPerCallAt64: workersRow.cpu.gateway,
      };
    }
    lines.push(
      `\n${broker}: gateway/library at 64 = ${ratio.toFixed(2)}×${spread(ratios.each, 2)} (target ≥ 0.6×); added p50 sequentially = ${added.toFixed(2)} ms${spread(addeds.each, 2)} (target ≤ 0.5 ms; ${addedNodeHttp.toFixed(2)} ms with Node's HTTP client as the caller); gateway RSS under load ${(rss[broker]! / 2 ** 20).toFixed(0)} MiB`,
      `${broker}: of the added p50, the gateway's own time per request (HTTP in → call, reply → HTTP out) is ${ownP50[broker]!.toFixed(2)} ms; library calls made ${PAUSE_MS} ms after the last answer are ${pauseCost.toFixed(2)} ms slower than back-to-back ones`,
      `${broker}: CPU µs per call at 64: gateway process ${us(cpu.gateway)} (library client ${us(cpu.libraryClient)}, HTTP load generator ${us(cpu.loadGenerator)}); all processes: gateway path ${us(cpu.gatewayPath)}, library path ${us(cpu.libraryPath)}`,
    );
    if (batchRow) {
      const s = summary[broker] as { batchRatioAt64: number; batchRatioAt64Rounds: number[] };
      const times = (v: number | undefined) => (v === undefined ? '–' : v.toFixed(2));
      lines.push(
        `${broker}: with wrk under SCHED_BATCH, gateway/library at 64 = ${s.batchRatioAt64.toFixed(2)}×${spread(s.batchRatioAt64Rounds, 2)}; the gateway preempted ${times(batchRow.preempted)} times per request (${times(find('gateway', 64).preempted)} with wrk as is; the library client ${times(find('library', 64).preempted)} per call), its CPU ${us(batchRow.cpu.gateway)} µs per request`,
      );
    }
    if (workersRow) {
      const s = summary[broker] as { workersRatioAt64: number; workersRatioAt64Rounds: number[]; workersRssMiB: number };
      lines.push(
        `${broker}: hermod-gateway --workers ${opts.gatewayWorkers}/library at 64 = ${s.workersRatioAt64.toFixed(2)}×${spread(s.workersRatioAt64Rounds, 2)}; its processes' CPU ${us(workersRow.cpu.gateway)} µs per request, RSS under load ${s.workersRssMiB.toFixed(0)} MiB (primary and workers)`,
      );
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  if (opts.json) writeFileSync(opts.json, JSON.stringify({ rows, summary }, null, 2));
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : err}\n`);
  process.exit(1);
});
