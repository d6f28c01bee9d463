#!/usr/bin/env node
// `node dist/bench/metrics.js`: the cost of Metrics (src/ops/metrics.ts) on the 64-in-flight
// call workload. Server and client run in this process, so both sides' events are counted
// when metrics are on. Rounds alternate off/on so load from elsewhere on the machine hits
// both alike; the row is the median of each. Targets: memory (pure CPU, the worst case for a
// relative cost), the embedded router, and RabbitMQ (a throwaway node unless --transport-url).
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { Command } from 'commander';
import { defaultConfig, getTransport, RPCClient, RPCServer, Target } from '../src/index.js';
import { Metrics } from '../src/ops/metrics.js';
import { Router } from '../src/router/router.js';
import { median } from './stats.js';

const opts = new Command('bench-metrics')
  .option('--calls <n>', 'calls per round', (v) => Number(v), 5000)
  .option('--rounds <n>', 'rounds per setting (off and on alternate)', (v) => Number(v), 5)
  .option('--concurrency <n>', 'calls in flight', (v) => Number(v), 64)
  .option('--transport-url <url>', 'a RabbitMQ URL instead of a throwaway node')
  .option('--only <targets>', 'comma-separated: memory, router, rabbit', 'memory,router,rabbit')
  .option('--json <file>', 'also write the results as JSON')
  .parse()
  .opts<{ calls: number; rounds: number; concurrency: number; transportUrl?: string; only: string; json?: string }>();

const progress = (s: string) => process.stderr.write(`  ${s}\n`);

/** Calls per second, and CPU µs of this process per call (steadier than wall time on a loaded machine). */
async function rate(call: () => Promise<unknown>, n: number, inFlight: number): Promise<{ rate: number; cpu: number }> {
  let next = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const lane = async () => {
    while (next < n) {
      next++;
      await call();
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  const c = process.cpuUsage(c0);
  return { rate: n / ((performance.now() - t0) / 1000), cpu: (c.user + c.system) / n };
}

interface Row {
  target: string;
  off: number;
  on: number;
  cost: number;
  cpuOff: number;
  cpuOn: number;
  offRounds: number[];
  onRounds: number[];
}

async function measure(target: string, url: string): Promise<Row> {
  const transport = await getTransport(url, { config: defaultConfig(), overrides: { 'rpc.maxInFlight': 4096 } });
  const server = new RPCServer(transport, new Target({ topic: 'bench_metrics', server: 'm1' }), [
    {
      async add(_ctx: unknown, a: { a: number; b: number }) {
        return a.a + a.b;
      },
    },
  ]);
  await server.start();
  const client = new RPCClient(transport, new Target({ topic: 'bench_metrics' }), { timeout: 30_000 });
  const call = () => client.call({}, 'add', { a: 1, b: 2 });
  const metrics = new Metrics();
  try {
    await rate(call, Math.min(2000, opts.calls), opts.concurrency);
    const off: number[] = [];
    const on: number[] = [];
    const cpuOff: number[] = [];
    const cpuOn: number[] = [];
    for (let r = 0; r < opts.rounds; r++) {
      for (const setting of r % 2 === 0 ? ['off', 'on'] : ['on', 'off']) {
        if (setting === 'on') metrics.start();
        const v = await rate(call, opts.calls, opts.concurrency);
        metrics.stop();
        (setting === 'on' ? on : off).push(v.rate);
        (setting === 'on' ? cpuOn : cpuOff).push(v.cpu);
      }
      progress(`${target}: round ${r + 1}/${opts.rounds} off ${Math.round(off.at(-1)!)} on ${Math.round(on.at(-1)!)} calls/s`);
    }
    // The series really filled: a bench of a no-op would prove nothing.
    const text = await metrics.text();
    if (!/oslo_messaging_rpc_server_invocation_end_total\{[^}]*method="add"[^}]*\} [1-9]/.test(text)) {
      throw new Error('metrics were on but counted nothing');
    }
    const o = median(off);
    const n = median(on);
    return { target, off: o, on: n, cost: 1 - n / o, cpuOff: median(cpuOff), cpuOn: median(cpuOn), offRounds: off, onRounds: on };
  } finally {
    metrics.close();
    await server.stop();
    await server.wait(2000);
    await transport.close();
  }
}

async function main(): Promise<void> {
  const only = new Set(opts.only.split(',').map((s) => s.trim()));
  const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, load ${os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}, Node ${process.version}`;
  process.stderr.write(`metrics bench: ${machine}\n`);
  const rows: Row[] = [];
  const cleanups: Array<() => Promise<unknown>> = [];
  try {
    if (only.has('memory')) rows.push(await measure('memory', 'memory://bench-metrics'));
    if (only.has('router')) {
      const router = new Router({ port: 0 });
      const port = await router.start();
      cleanups.push(() => router.stop());
      rows.push(await measure('embedded router (same process)', `amqp://127.0.0.1:${port}/`));
    }
    if (only.has('rabbit')) {
      let url = opts.transportUrl;
      if (!url) {
        progress('starting a throwaway RabbitMQ node…');
        const { RabbitNode } = await import('../scripts/rabbit-node.js');
        const node = await RabbitNode.start({ name: 'hermod-bench-metrics' });
        cleanups.push(() => node.stop());
        url = node.url();
      }
      rows.push(await measure('RabbitMQ', url));
    }
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  }
  const lines = [
    `metrics cost — ${machine}; ${opts.concurrency} in flight, ${opts.calls} calls × ${opts.rounds} rounds per setting (medians)`,
    '',
    '| target | off (calls/s) | on (calls/s) | throughput cost | CPU µs/call off | on | CPU cost |',
    '|:--|--:|--:|--:|--:|--:|--:|',
    ...rows.map(
      (r) =>
        `| ${r.target} | ${Math.round(r.off)} | ${Math.round(r.on)} | ${(r.cost * 100).toFixed(1)} % | ${r.cpuOff.toFixed(1)} | ${r.cpuOn.toFixed(1)} | ${((r.cpuOn / r.cpuOff - 1) * 100).toFixed(1)} % |`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  if (opts.json) writeFileSync(opts.json, JSON.stringify({ machine, options: opts, rows, at: new Date().toISOString() }, null, 2));
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
