#!/usr/bin/env node
// The cost of an endpoint contract: the same call (a small object: two numbers and a short
// string) at 64 in flight, to a method with a contract and to one without, on one server process
// and one caller (this process), over RabbitMQ by default. The two take turns in paired rounds
// (A B, then B A, …) so that load from elsewhere on the shared machine falls on both alike; each
// round gives calls/s and CPU per call (this process's process.cpuUsage() plus the server's
// utime + stime from /proc/<pid>/stat), and the cost is the median over rounds of the pair's ratio.
//
//   node dist/bench/contracts.js [--transport-url URL] [--calls N] [--rounds R] [--json]
//
// Without --transport-url it starts a throwaway RabbitMQ node; any transport URL works
// (memory:// isolates hermod's own cost, amqp://host:port/ an AMQP 1.0 router). `npm run bench`
// runs it against its own RabbitMQ node. `--serve URL` is the server process (internal).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { checkArgs, compileContracts } from '../src/contracts/validator.js';
import { type Context, defaultConfig, getTransport, RPCClient, RPCServer, Target } from '../src/index.js';
import { median } from './stats.js';

const opts = new Command('bench-contracts')
  .option('--transport-url <url>', 'where to run (default: a throwaway RabbitMQ node)')
  .option('--calls <n>', 'calls per round', (v) => Number(v), 4000)
  .option('--rounds <n>', 'rounds of each variant', (v) => Number(v), 7)
  .option('--concurrency <n>', 'calls in flight', (v) => Number(v), 64)
  .option('--json', 'print the figures as one JSON line (for bench/run.ts)')
  .option('--serve <url>', 'internal: be the server process on this transport')
  .parse()
  .opts<{ transportUrl?: string; calls: number; rounds: number; concurrency: number; json?: boolean; serve?: string }>();

const TOPIC = 'contracts_bench';

/** A small object schema: what a typical method's arguments look like. */
const ARGS = {
  type: 'object',
  required: ['a', 'b', 'name'],
  properties: { a: { type: 'number' }, b: { type: 'number' }, name: { type: 'string', maxLength: 64 } },
};

/** `add` has a contract, `addPlain` none: the same work, the same server, the same queue. */
class Bench {
  static readonly contracts = { add: { args: ARGS, result: { type: 'number' } } };
  add(_ctx: Context, { a, b }: { a: number; b: number; name: string }): number {
    return a + b;
  }
  addPlain(_ctx: Context, { a, b }: { a: number; b: number; name: string }): number {
    return a + b;
  }
}

async function serve(url: string): Promise<void> {
  const tr = await getTransport(url, { config: defaultConfig() });
  const server = new RPCServer(tr, new Target({ topic: TOPIC, server: 'c1' }), [new Bench()]);
  await server.start();
  process.stdout.write('ready\n');
  process.once('SIGTERM', () => {
    void (async () => {
      await server.stop();
      await server.wait(5000);
      await tr.close();
      process.exit(0);
    })();
  });
}

const TICK_US = 1e6 / 100; // USER_HZ is 100 on Linux

/** utime + stime of a process, µs (10 ms resolution: rounds last seconds). */
function procCpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_US;
}

/** One round's figures. */
interface Round {
  rate: number;
  /** Caller + server CPU per call, µs. */
  cpu: number;
}

/** What the bench reports; `bench/run.ts` reads it with --json. */
export interface ContractFigures {
  where: string;
  calls: number;
  rounds: number;
  concurrency: number;
  plain: { rate: number; cpu: number; rounds: Round[] };
  contract: { rate: number; cpu: number; rounds: Round[] };
  /** Median over rounds of 1 - contract/plain throughput, %. */
  rateCost: number;
  /** Median over rounds of contract/plain CPU per call - 1, %. */
  cpuCost: number;
  /** The argument check alone, in this process, µs per call (a figure the machine's load hardly moves). */
  checkUs: number;
}

/** checkArgs on the bench's arguments, best of 5 runs of 100,000: the validation's own CPU time per call. */
function checkCost(): number {
  const c = compileContracts(Bench.contracts, 'bench').get('add')!;
  let best = Number.POSITIVE_INFINITY;
  for (let run = 0; run < 5; run++) {
    const t0 = process.cpuUsage();
    for (let i = 0; i < 100_000; i++) checkArgs(c, 'add', { a: i, b: 1, name: 'bench' });
    const t = process.cpuUsage(t0);
    best = Math.min(best, (t.user + t.system) / 100_000);
  }
  return best;
}

async function measure(url: string, where: string): Promise<ContractFigures> {
  const script = fileURLToPath(import.meta.url);
  const server = spawn(process.execPath, [script, '--serve', url], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((r) => server.once('exit', r));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('bench server: not ready in 30 s')), 30_000);
      server.once('exit', (code) => reject(new Error(`bench server exited (${code})`)));
      createInterface({ input: server.stdout! }).on('line', (l) => {
        if (l === 'ready') {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const tr = await getTransport(url, { config: defaultConfig(), overrides: { 'rpc.maxInFlight': 4096 } });
    try {
      const client = new RPCClient(tr, new Target({ topic: TOPIC, server: 'c1' }), { timeout: 30_000 });
      const round = async (method: string, n: number): Promise<Round> => {
        let next = 0;
        const cpu0 = process.cpuUsage();
        const srv0 = procCpuUs(server.pid!);
        const t0 = performance.now();
        await Promise.all(
          Array.from({ length: opts.concurrency }, async () => {
            while (next < n) {
              const i = next++;
              await client.call({}, method, { a: i, b: 1, name: 'bench' });
            }
          }),
        );
        const secs = (performance.now() - t0) / 1000;
        const cpu = process.cpuUsage(cpu0);
        return { rate: n / secs, cpu: (cpu.user + cpu.system + procCpuUs(server.pid!) - srv0) / n };
      };
      // Warm-up: JIT on both sides, ajv's compiled validator, the reply queue.
      await round('addPlain', Math.min(2000, opts.calls));
      await round('add', Math.min(2000, opts.calls));
      const plain: Round[] = [];
      const contract: Round[] = [];
      for (let r = 0; r < opts.rounds; r++) {
        if (r % 2 === 0) {
          plain.push(await round('addPlain', opts.calls));
          contract.push(await round('add', opts.calls));
        } else {
          contract.push(await round('add', opts.calls));
          plain.push(await round('addPlain', opts.calls));
        }
        process.stderr.write(
          `  contracts round ${r + 1}/${opts.rounds}: without ${plain[r]!.rate.toFixed(0)}/s ${plain[r]!.cpu.toFixed(0)} µs/call, with ${contract[r]!.rate.toFixed(0)}/s ${contract[r]!.cpu.toFixed(0)} µs/call\n`,
        );
      }
      return {
        where,
        calls: opts.calls,
        rounds: opts.rounds,
        concurrency: opts.concurrency,
        plain: { rate: median(plain.map((x) => x.rate)), cpu: median(plain.map((x) => x.cpu)), rounds: plain },
        contract: { rate: median(contract.map((x) => x.rate)), cpu: median(contract.map((x) => x.cpu)), rounds: contract },
        rateCost: median(plain.map((p, i) => (1 - contract[i]!.rate / p.rate) * 100)),
        cpuCost: median(plain.map((p, i) => (contract[i]!.cpu / p.cpu - 1) * 100)),
        checkUs: checkCost(),
      };
    } finally {
      await tr.close();
    }
  } finally {
    server.kill('SIGTERM');
    const t = setTimeout(() => server.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  }
}

/** The figures as the lines printed under `npm run bench`'s table. */
function contractLines(f: ContractFigures): string {
  const pct = (x: number) => `${x >= 0 ? '' : '−'}${Math.abs(x).toFixed(1)} %`;
  return [
    `contracts (bench/contracts.ts): a call with a small object schema at ${f.concurrency} in flight vs the same call without a contract, ${f.where}; ${f.rounds} paired rounds × ${f.calls} calls`,
    `  without a contract: ${f.plain.rate.toFixed(0)} calls/s, ${f.plain.cpu.toFixed(0)} µs CPU per call (caller + server)`,
    `  with a contract:    ${f.contract.rate.toFixed(0)} calls/s, ${f.contract.cpu.toFixed(0)} µs CPU per call`,
    `  cost (median of the per-round pairs): throughput ${pct(f.rateCost)} lower, CPU per call ${pct(f.cpuCost)} higher`,
    `  the argument check alone: ${f.checkUs.toFixed(2)} µs per call (${((f.checkUs / f.plain.cpu) * 100).toFixed(2)} % of a call's CPU)`,
    `  per-round throughput cost: ${f.plain.rounds.map((p, i) => pct((1 - f.contract.rounds[i]!.rate / p.rate) * 100)).join(', ')}`,
  ].join('\n');
}

async function main(): Promise<void> {
  let url = opts.transportUrl;
  let stopNode: (() => Promise<void>) | undefined;
  if (!url) {
    process.stderr.write('  contracts bench: starting a throwaway RabbitMQ node…\n');
    const { RabbitNode } = await import('../scripts/rabbit-node.js');
    const node = await RabbitNode.start({ name: 'hermod-bench-contracts' });
    stopNode = () => node.stop();
    url = node.url();
  }
  try {
    const where = url.startsWith('rabbit') ? 'RabbitMQ' : url.startsWith('memory') ? 'memory://' : url.replace(/\/\/[^@]*@/, '//');
    const f = await measure(url, where);
    process.stdout.write(opts.json ? `${JSON.stringify(f)}\n` : `${contractLines(f)}\n`);
  } finally {
    await stopNode?.();
  }
}

if (opts.serve) await serve(opts.serve);
else
  await main().then(
    () => process.exit(0),
    (err) => {
      process.stderr.write(`bench-contracts failed: ${(err as Error).stack ?? err}\n`);
      process.exit(1);
    },
  );
