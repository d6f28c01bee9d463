/**
 * The `hermod run` step of `npm run demo`: a run file with one service on two workers, calls
 * spread over both, and one scrape of the primary's metrics endpoint that counts every worker's
 * calls. It runs the real `hermod run` as a child process (the bin's path is given), so what the
 * user sees is what they will run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Target } from '../core/target.js';
import { RPCClient } from '../rpc/client.js';
import type { Transport } from '../transport.js';

/** How the demo prints: a step title, and an indented line. */
export interface DemoOutput {
  say(title: string): void;
  line(text: string): void;
}

const ENDPOINTS = `// One endpoint object per worker; c.server is this worker's name (calc-1, calc-2).
export default (c) => ({ async add(_ctx, { a, b }) { return { sum: a + b, server: c.server }; } });
`;

/** Lifecycle lines of `hermod run` worth showing (request lines are left out). */
const SHOWN = /^(starting \d+ workers|worker \d+ started|metrics of all workers|worker \d+ stopped)/;

/**
 * Runs the step against the transport at `url` (the demo's router): `hermod run --workers 2
 * --metrics-port 0`, 20 calls, one scrape, SIGTERM. Resolves when `hermod run` has exited.
 */
export async function demoRun(hermodBin: string, url: string, transport: Transport, out: DemoOutput): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hermod-demo-'));
  let child: ChildProcess | undefined;
  try {
    writeFileSync(path.join(dir, 'package.json'), '{"type":"module"}\n');
    writeFileSync(path.join(dir, 'calc.js'), ENDPOINTS);
    const services = { calc: { endpoints: './calc.js', topic: 'demo-run', server: 'calc' } };
    writeFileSync(path.join(dir, 'hermod.config.json'), `${JSON.stringify({ config: { transportUrl: url }, services }, null, 2)}\n`);
    out.say('hermod run --workers 2 --metrics-port 0: one service from hermod.config.json on two worker processes');
    out.line(`hermod.config.json: ${JSON.stringify({ services })} (and the router's transportUrl)`);

    const run = spawn(process.execPath, [hermodBin, 'run', '--workers', '2', '--metrics-port', '0'], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = run;
    const exited = new Promise<number | null>((resolve) => run.once('exit', (code) => resolve(code)));
    let serving = 0;
    let metricsUrl: string | undefined;
    let buf = '';
    let stderr = '';
    run.stderr!.on('data', (d: Buffer) => {
      stderr += d;
    });
    run.stdout!.on('data', (d: Buffer) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const lineText = buf.slice(0, i);
        buf = buf.slice(i + 1);
        let l: { msg?: string; event?: string; url?: string };
        try {
          l = JSON.parse(lineText) as typeof l;
        } catch {
          continue;
        }
        if (l.event === 'serving') serving++;
        if (l.event === 'metrics') metricsUrl = l.url;
        if (l.msg && SHOWN.test(l.msg)) out.line(`[hermod run] ${l.msg}`);
      }
    });
    const deadline = Date.now() + 30_000;
    while (serving < 2 || !metricsUrl) {
      if (run.exitCode !== null || Date.now() > deadline) throw new Error(`hermod run did not start: ${stderr.trim()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    out.line('both workers are serving topic demo-run (as calc-1 and calc-2, competing consumers)');

    out.say('20 calls of add on topic demo-run, 4 at a time');
    const client = new RPCClient(transport, new Target({ topic: 'demo-run' }), { timeout: 10_000 });
    const counts = new Map<string, number>();
    for (let i = 0; i < 20; i += 4) {
      const batch = Array.from({ length: 4 }, (_, j) => client.call<{ server: string }>({}, 'add', { a: i + j, b: 1 }));
      for (const r of await Promise.all(batch)) counts.set(r.server, (counts.get(r.server) ?? 0) + 1);
    }
    out.line(
      `answered by ${[...counts]
        .sort()
        .map(([s, n]) => `${s} × ${n}`)
        .join(', ')}`,
    );

    out.say(`one scrape of ${metricsUrl}: the primary asks both workers and serves their sum`);
    const text = await (await fetch(metricsUrl)).text();
    let total = 0;
    const ends = text
      .split('\n')
      .filter((l) => l.startsWith('oslo_messaging_rpc_server_invocation_end_total{') && l.includes('topic="demo-run"'));
    for (const l of ends.sort()) {
      total += Number(l.slice(l.lastIndexOf(' ') + 1));
      out.line(l);
    }
    out.line(`${total} calls counted over both workers in one scrape`);

    out.say('SIGTERM to hermod run: each worker finishes its work and stops');
    run.kill('SIGTERM');
    const code = await exited;
    child = undefined;
    out.line(`hermod run exited with status ${code}`);
  } finally {
    child?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}
