import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The path of `bin/<name>.js` in the build. */
export const bin = (name: string) => path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', `${name}.js`);

/** A CLI running as a subprocess, its output collected. */
export interface CliProc {
  child: ChildProcess;
  out: string;
  err: string;
  /** Resolves with the exit status (null when a signal ended it). */
  exited: Promise<number | null>;
}

/**
 * Starts `bin/<name>.js` with `args`. No HERMOD_* variable of the test's own environment reaches
 * it (the CLIs refuse unknown ones, and a transport URL from outside would change what is
 * tested); `env` adds the ones a test means. `killAfterMs` bounds a command that must not run long.
 */
export function startCli(
  name: string,
  args: string[],
  opts: { env?: Record<string, string>; killAfterMs?: number; cwd?: string } = {},
): CliProc {
  return startScript(bin(name), args, opts);
}

/** {@link startCli} for any script of the build (`scripts/rabbit-node.js`, say). */
export function startScript(
  file: string,
  args: string[],
  opts: { env?: Record<string, string>; killAfterMs?: number; cwd?: string } = {},
): CliProc {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HERMOD_')));
  const child = spawn(process.execPath, [file, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...base, ...opts.env },
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
  });
  const p: CliProc = { child, out: '', err: '', exited: new Promise((r) => child.once('exit', (code) => r(code))) };
  if (opts.killAfterMs !== undefined) {
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.killAfterMs);
    void p.exited.then(() => clearTimeout(timer));
  }
  child.stdout!.on('data', (d) => {
    p.out += d;
  });
  child.stderr!.on('data', (d) => {
    p.err += d;
  });
  return p;
}

/** Runs a CLI to its end. */
export async function runCli(name: string, args: string[], opts?: { env?: Record<string, string>; killAfterMs?: number }) {
  const p = startCli(name, args, opts);
  const code = await p.exited;
  return { code, out: p.out, err: p.err };
}
