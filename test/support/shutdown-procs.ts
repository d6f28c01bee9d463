import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { until } from './assert.js';

const bin = (name: string) => path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', `${name}.js`);

/** A bin running as a subprocess, its output collected. */
export interface Proc {
  child: ChildProcess;
  out: string;
  err: string;
  /** Resolves with the exit status (or the signal's name) and when it ended (ms since epoch). */
  exited: Promise<{ code: number | null; signal: string | null; at: number }>;
}

/**
 * Starts `bin/<name>.js` with `args`; no HERMOD_* URL from the environment, and no coverage: c8's
 * dump at exit (NODE_V8_COVERAGE) adds 0.3 s or more to every exit, and exit times are what
 * these suites measure.
 */
export function startBin(name: string, args: string[]): Proc {
  const child = spawn(process.execPath, [bin(name), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, HERMOD_TRANSPORT_URL: undefined, NODE_V8_COVERAGE: undefined } as never,
  });
  const p: Proc = {
    child,
    out: '',
    err: '',
    exited: new Promise((r) => child.once('exit', (code, signal) => r({ code, signal, at: Date.now() }))),
  };
  child.stdout!.on('data', (d) => {
    p.out += d;
  });
  child.stderr!.on('data', (d) => {
    p.err += d;
  });
  return p;
}

/** Waits until the process printed something matching `re` (stdout or stderr). */
export async function printed(p: Proc, re: RegExp, what: string, timeoutMs = 15_000): Promise<void> {
  try {
    await until(() => re.test(p.out) || re.test(p.err) || p.child.exitCode !== null, what, timeoutMs);
  } catch (err) {
    // A process that never got there says why in its own output (a broker it could not reach,
    // a slow start): without it a timeout in CI cannot be told from a hang.
    throw new Error(`${(err as Error).message}; the process printed:\n${tail(p.out)}\n${tail(p.err)}`, { cause: err });
  }
  if (!(re.test(p.out) || re.test(p.err))) throw new Error(`${what}: the process exited first:\n${p.out}\n${p.err}`);
}

const tail = (s: string, max = 4000) => (s.length > max ? `…${s.slice(-max)}` : s);

/** Kills what is still running (a failed test must not leave processes behind). */
export function reap(...procs: Array<Proc | undefined>): void {
  for (const p of procs) if (p && p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
}

/** A TCP server on port 0 that accepts connections and never sends a byte; counts its open sockets. */
export async function silentPeer(): Promise<{ port: number; open: () => number; accepted: () => number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const srv = net.createServer((s) => {
    accepted++;
    sockets.add(s);
    s.on('error', () => {});
    // Read (and ignore) what the client sends, so its FIN is seen and the socket closes.
    s.resume();
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    open: () => sockets.size,
    accepted: () => accepted,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

/** Exit times per matrix cell, printed as one table at the end of a suite. */
export class Figures {
  private readonly rows: string[] = [];
  add(cell: string, ms: number, boundMs: number, status: string): void {
    this.rows.push(`${cell.padEnd(58)} ${String(ms).padStart(6)} ms  (bound ${boundMs} ms)  ${status}`);
  }
  /** A cell that does not apply, with the reason (printed in the table so its absence is explained). */
  na(cell: string, why: string): void {
    this.rows.push(`${cell.padEnd(58)} ${'n/a'.padStart(6)}     ${why}`);
  }
  print(title: string): void {
    console.log(`\n${title}\n${this.rows.splice(0).join('\n')}`);
  }
}
