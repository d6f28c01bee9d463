// `hermod run` as a subprocess for the runner's tests: JSON log lines parsed as they come,
// anything else kept as text.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import { RabbitNode } from '../../scripts/rabbit-node.js';
import { defaultConfig, getTransport, type Transport } from '../../src/index.js';

const HERMOD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'hermod.js');

/** A running `hermod run`. */
export interface Run {
  child: ChildProcess;
  lines: Array<Record<string, unknown>>;
  /** Every line as written, JSON or not (stdout and stderr together). */
  raw: string[];
  err: string;
  exited: Promise<number | null>;
}

/** Starts `hermod run <args>` in `cwd`; `group`: in a process group of its own (as a terminal starts it), for signals to the whole group. */
export function hermodRun(args: string[], cwd: string, opts: { group?: boolean } = {}): Run {
  const child = spawn(process.execPath, [HERMOD, 'run', ...args], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: opts.group ?? false,
  });
  // On 'close', not 'exit': the output is all read by then, so a failed assertion shows it (a run
  // once exited by a signal in CI with nothing to show), and a signal is said in err.
  const run: Run = {
    child,
    lines: [],
    raw: [],
    err: '',
    exited: new Promise((r) =>
      child.once('close', (code, signal) => {
        if (signal) run.err += `[hermod run ended by ${signal}]\n`;
        r(code);
      }),
    ),
  };
  let buf = '';
  const take = (d: Buffer) => {
    buf += d;
    let i = buf.indexOf('\n');
    while (i >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      run.raw.push(line);
      try {
        run.lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        run.err += `${line}\n`;
      }
      i = buf.indexOf('\n');
    }
  };
  child.stdout!.on('data', take);
  child.stderr!.on('data', take);
  return run;
}

/** Log lines of `run` that `pred` accepts. */
export function linesOf(run: Run, pred: (l: Record<string, unknown>) => boolean): Array<Record<string, unknown>> {
  return run.lines.filter(pred);
}

/** What the runner's process suites share: a vhost of their own, a client transport, a temp dir per test, the processes it started. */
export interface ProcSuiteCtx<P> {
  node: RabbitNode;
  vhost: string;
  url: string;
  dir: string;
  transport: Transport;
  procs: P[];
}

/**
 * A suite of tests that start real processes on the run's RabbitMQ node: its vhost and a
 * transport for the test's own clients for the whole suite; per test a temp dir (an ES-module
 * package, plus what `prepare` writes) and the list of processes it started, killed after it
 * if still running, so a failed test leaves nothing behind.
 */
export function procSuite<P extends { child: ChildProcess; exited: Promise<unknown> }>(
  title: string,
  tag: string,
  prepare?: (dir: string) => void,
) {
  const t = suite<ProcSuiteCtx<P>>(title, {} as ProcSuiteCtx<P>);
  t.before(async (ctx) => {
    ctx.node = await RabbitNode.shared();
    ctx.vhost = await ctx.node.addVhost(`${tag}-${process.pid}`);
    ctx.url = ctx.node.url(ctx.vhost);
    ctx.transport = await getTransport(ctx.url, { config: defaultConfig() });
  });
  t.before.each((ctx) => {
    ctx.dir = mkdtempSync(path.join(os.tmpdir(), `hermod-${tag}-`));
    writeFileSync(path.join(ctx.dir, 'package.json'), '{"type":"module"}\n');
    prepare?.(ctx.dir);
    ctx.procs = [];
  });
  t.after.each(async (ctx) => {
    for (const p of ctx.procs) {
      if (p.child.exitCode === null && p.child.signalCode === null) {
        p.child.kill('SIGKILL');
        await p.exited;
      }
    }
    rmSync(ctx.dir, { recursive: true, force: true });
  });
  t.after(async (ctx) => {
    await ctx.transport.close();
    await ctx.node.deleteVhost(ctx.vhost);
    await ctx.node.release();
  });
  return t;
}
