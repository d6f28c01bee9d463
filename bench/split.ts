#!/usr/bin/env node
// Where a call's CPU goes, process by process: each system (bench/rounds.ts's responder and caller
// processes, and raw amqplib responders built the way oslo's servers are) on one throwaway
// RabbitMQ node, in alternating rounds, with per call the caller's, the responder's and the
// broker's CPU time, each main thread's voluntary and involuntary context switches, and with
// --strace the system calls of caller and responder. Rates here are for comparing rounds side by
// side; the bench's table is `npm run bench`.
//   node dist/bench/split.js [--systems raw,lane,moleculer,raw:own-confirmed:batched,lane:quiet+plain] [--calls n] [--rounds n] [--in-flight n] [--strace]
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { RabbitNode } from '../scripts/rabbit-node.js';
import { type CliVariant, peersInstalled, procCpuUs, type Running, SYSTEMS, type System, startSystem } from './rounds.js';
import type { RawShape } from './worker.js';

const opts = new Command('bench-split')
  .option(
    '--systems <list>',
    "comma-separated: raw, hermod, lane, nest, moleculer, raw:<same|own|own-confirmed>:<each|batched> (how raw amqplib's responder replies and acknowledges), or hermod:<variants> and lane:<variants>, variants joined by + from quiet (--log-level warn), v8gc (V8's young-generation sizing), plain (echo without contracts), prof (--cpu-prof of the responder into $BENCH_PROFILE_DIR)",
    'raw,lane,moleculer,raw:own-confirmed:batched',
  )
  .option('--calls <n>', 'calls per system per round', (v) => Number(v), 6000)
  .option('--rounds <n>', 'rounds (each system once per round; every other round in reverse order)', (v) => Number(v), 4)
  .option('--in-flight <n>', 'calls in flight', (v) => Number(v), 1)
  .option('--strace', 'count the system calls of caller and responder (strace -c -f; slows them down)')
  .parse()
  .opts<{ systems: string; calls: number; rounds: number; inFlight: number; strace?: boolean }>();

for (const [name, v] of [
  ['--calls', opts.calls],
  ['--rounds', opts.rounds],
  ['--in-flight', opts.inFlight],
] as const) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a whole number from 1, got ${v}`);
}

interface Entry {
  label: string;
  system: System;
  shape?: RawShape;
  cli?: CliVariant;
}

/** How `hermod:<v>+<v>…` and `lane:<v>+<v>…` start their `rpc-server` CLI. */
const CLI_VARIANTS: Record<string, (v: CliVariant) => void> = {
  // Logging at warn: no subscription to every request's diagnostics event.
  quiet: (v) => v.args.push('--log-level', 'warn'),
  // V8's own young-generation sizing (src/cli/young-gen.ts steps aside for a flag of the user's).
  v8gc: (v) => v.nodeArgs.push('--max-semi-space-size=16'),
  // A CPU profile of the server (node --cpu-prof) in $BENCH_PROFILE_DIR, or the working directory.
  prof: (v) => v.nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR ?? '.'}`),
  // `echo` without the built-in endpoints' contracts.
  plain: (v) => v.args.push('--endpoints', path.join(path.dirname(fileURLToPath(import.meta.url)), 'echo-endpoint.js')),
};

function parseEntry(spec: string): Entry {
  const [system, replies, acks] = spec.split(':');
  if (!(SYSTEMS as readonly string[]).includes(system!)) throw new Error(`--systems: unknown system '${system}' (${SYSTEMS.join(', ')})`);
  if (replies === undefined) return { label: spec, system: system as System };
  if (system === 'hermod' || system === 'lane') {
    const cli: CliVariant = { topic: `psplit-${spec.replace(/[^a-z0-9]+/gi, '-')}`, args: [], nodeArgs: [] };
    for (const v of replies.split('+')) {
      const apply = CLI_VARIANTS[v];
      if (!apply) throw new Error(`--systems: '${spec}': unknown variant '${v}' (${Object.keys(CLI_VARIANTS).join(', ')})`);
      apply(cli);
    }
    return { label: spec, system, cli };
  }
  if (system !== 'raw') throw new Error(`--systems: only raw, hermod and lane take a shape or variant, got '${spec}'`);
  if (replies !== 'same' && replies !== 'own' && replies !== 'own-confirmed') {
    throw new Error(`--systems: '${spec}': replies must be same, own or own-confirmed`);
  }
  if (acks !== 'each' && acks !== 'batched') throw new Error(`--systems: '${spec}': acks must be each or batched`);
  return { label: spec, system: 'raw', shape: { replies, acks } };
}

const entries = opts.systems.split(',').map((s) => parseEntry(s.trim()));
if (new Set(entries.map((e) => e.label)).size !== entries.length) throw new Error('--systems: a system is named twice');
if (entries.some((e) => e.system === 'nest' || e.system === 'moleculer') && !peersInstalled()) {
  throw new Error('NestJS and Moleculer need bench/peers installed (npm --prefix bench/peers ci)');
}

/** Voluntary and involuntary context switches of a process's main thread so far. */
function switches(pid: number): { vol: number; invol: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  return {
    vol: Number(/\nvoluntary_ctxt_switches:\s+(\d+)/.exec(s)?.[1] ?? 0),
    invol: Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(s)?.[1] ?? 0),
  };
}

/** strace -c's summary as calls per call, e.g. `{ read: 1.04, writev: 1.02 }`. */
function syscallsPerCall(summary: string, calls: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of summary.split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line);
    if (m && m[2] !== 'total') out[m[2]!] = Math.round((Number(m[1]) / calls) * 100) / 100;
  }
  return out;
}

function strace(pid: number) {
  const p = spawn('strace', ['-c', '-f', '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let out = '';
  p.stderr.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  return {
    /** strace needs a moment to attach to every thread before the calls start. */
    attached: new Promise<void>((r) => setTimeout(r, 500)),
    async stop(): Promise<string> {
      p.kill('SIGINT');
      await exited;
      return out;
    },
  };
}

interface Row {
  label: string;
  round: number;
  rate: number;
  callerUs: number;
  responderUs: number;
  brokerUs: number | undefined;
  callerSwitches: string;
  responderSwitches: string;
  callerSys?: Record<string, number>;
  responderSys?: Record<string, number>;
}

const node = await RabbitNode.start({ name: 'hermod-split' });
const brokerPid = node.pid();
const running: Array<{ entry: Entry; s: Running }> = [];
const rows: Row[] = [];
const payload = 'x'.repeat(32);
try {
  for (const entry of entries) running.push({ entry, s: await startSystem(entry.system, node.url(), entry.shape, entry.cli) });
  for (const { s } of running) await s.caller.ask({ op: 'warm', n: 5000, inFlight: opts.inFlight, payload });
  for (let round = 1; round <= opts.rounds; round++) {
    for (const { entry, s } of round % 2 ? running : [...running].reverse()) {
      await s.caller.ask({ op: 'warm', n: 1000, inFlight: opts.inFlight, payload });
      const callerPid = s.caller.proc.pid!;
      const responderPid = s.responder.pid!;
      const traces = opts.strace ? [strace(callerPid), strace(responderPid)] : [];
      await Promise.all(traces.map((t) => t.attached));
      const [c0, r0, b0] = [procCpuUs(callerPid), procCpuUs(responderPid), brokerPid ? procCpuUs(brokerPid) : undefined];
      const [cs0, rs0] = [switches(callerPid), switches(responderPid)];
      const out = (await s.caller.ask({ op: 'run', n: opts.calls, inFlight: opts.inFlight, payload })) as { lat: number[]; secs: number };
      const n = out.lat.length;
      // The caller's and the responder's figures include the caller's few hundred untimed calls
      // before its timed ones (bench/caller.ts), alike for every system.
      const per = (d: number) => Math.round((d / n) * 10) / 10;
      const [cs1, rs1] = [switches(callerPid), switches(responderPid)];
      const sw = (a: { vol: number; invol: number }, b: { vol: number; invol: number }) =>
        `${((b.vol - a.vol) / n).toFixed(2)} / ${((b.invol - a.invol) / n).toFixed(2)}`;
      const row: Row = {
        label: entry.label,
        round,
        rate: Math.round(n / out.secs),
        callerUs: per(procCpuUs(callerPid) - c0),
        responderUs: per(procCpuUs(responderPid) - r0),
        brokerUs: b0 === undefined ? undefined : per(procCpuUs(brokerPid!) - b0),
        callerSwitches: sw(cs0, cs1),
        responderSwitches: sw(rs0, rs1),
      };
      if (traces.length) {
        row.callerSys = syscallsPerCall(await traces[0]!.stop(), n);
        row.responderSys = syscallsPerCall(await traces[1]!.stop(), n);
      }
      rows.push(row);
      process.stderr.write(`  round ${round}/${opts.rounds}: ${entry.label} ${row.rate}/s\n`);
    }
  }
} finally {
  for (const { s } of running.reverse()) await s.stop().catch(() => {});
  await node.stop();
}

console.log(
  `\n${opts.calls} calls per round, ${opts.inFlight} in flight; CPU µs per call from /proc (10 ms resolution); switches per call of each main thread, voluntary / involuntary\n`,
);
console.log('| system | round | calls/s | caller CPU | responder CPU | broker CPU | caller switches | responder switches |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.label} | ${r.round} | ${r.rate} | ${r.callerUs} | ${r.responderUs} | ${r.brokerUs ?? '—'} | ${r.callerSwitches} | ${r.responderSwitches} |`,
  );
}
if (opts.strace) {
  console.log('\nsystem calls per call (strace -c -f, threads included):\n');
  for (const r of rows)
    console.log(`${r.label}, round ${r.round}: caller ${JSON.stringify(r.callerSys)}, responder ${JSON.stringify(r.responderSys)}`);
}
