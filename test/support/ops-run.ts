// `hermod run` as a subprocess for the runner's tests: JSON log lines parsed as they come,
// anything else kept as text.
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERMOD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'hermod.js');

/** A running `hermod run`. */
export interface Run {
  child: ChildProcess;
  lines: Array<Record<string, unknown>>;
  err: string;
  exited: Promise<number | null>;
}

/** Starts `hermod run <args>` in `cwd`. */
export function hermodRun(args: string[], cwd: string): Run {
  const child = spawn(process.execPath, [HERMOD, 'run', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const run: Run = { child, lines: [], err: '', exited: new Promise((r) => child.once('exit', (code) => r(code))) };
  let buf = '';
  const take = (d: Buffer) => {
    buf += d;
    let i = buf.indexOf('\n');
    while (i >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
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
