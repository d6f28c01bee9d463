import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { scratchDir } from './scratch.js';

// Compiled to dist/test/support; the script stays in the source tree.
const SCRIPT = fileURLToPath(new URL('../../../test/support/oslo_peer.py', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** Debian's python3, which has python3-oslo.messaging (another python3 may come first on PATH). */
export const PYTHON = process.env.OSLO_TEST_PYTHON ?? '/usr/bin/python3';

/** Whether python3-oslo.messaging is importable; CI installs it, so suites fail rather than skip there. */
export function osloAvailable(): boolean {
  return existsSync(PYTHON) && existsSync('/usr/lib/python3/dist-packages/oslo_messaging');
}

/**
 * Where oslo.messaging 18.1.0's package is (run with Debian's dependencies, first on
 * PYTHONPATH): `OSLO18_PATH`, else the copy in test/peers (see its README).
 */
export function oslo18Path(): string {
  const candidates = [
    process.env.OSLO18_PATH,
    path.resolve(ROOT, 'test/peers/oslo.messaging-18.1.0'),
    path.resolve(ROOT, '../shared/peers/oslo.messaging-18.1.0'),
    path.resolve(ROOT, '../../shared/peers/oslo.messaging-18.1.0'),
    '/work/shared/peers/oslo.messaging-18.1.0',
  ].filter((c): c is string => Boolean(c));
  const found = candidates.find((c) => existsSync(path.join(c, 'oslo_messaging', '__init__.py')));
  if (!found) throw new Error(`oslo.messaging 18.1.0 not found (set OSLO18_PATH); looked in ${candidates.join(', ')}`);
  return found;
}

/**
 * Which oslo.messaging a peer runs, and with which `[oslo_messaging_rabbit]` options: `14` is
 * Debian's python3-oslo.messaging 14.0.3, `18` the 18.1.0 code on Debian's dependencies.
 */
export interface OsloFlavor {
  version: '14' | '18';
  /** Written to a config file as `[oslo_messaging_rabbit]` (lock_path is added for use_queue_manager). */
  rabbit?: Record<string, string | number | boolean>;
}

function configFile(flavor: OsloFlavor | undefined): string | undefined {
  if (!flavor?.rabbit || Object.keys(flavor.rabbit).length === 0) return undefined;
  const dir = scratchDir('hermod-oslo-');
  const rabbit = { ...flavor.rabbit };
  // Each peer is a process group of its own (see the constructor), so each needs its own name.
  if (rabbit.use_queue_manager) rabbit.processname = `${rabbit.processname ?? 'oslo'}-${path.basename(dir)}`;
  const lines = ['[oslo_messaging_rabbit]', ...Object.entries(rabbit).map(([k, v]) => `${k} = ${v}`)];
  lines.push('', '[oslo_concurrency]', `lock_path = ${dir}`, '');
  const file = path.join(dir, 'peer.conf');
  writeFileSync(file, lines.join('\n'));
  return file;
}

/** What the Python side reports about an exception it caught. */
export interface PyError {
  class: string;
  module: string;
  message: string;
  exc_type: string | null;
  value: string | null;
}
export interface PyReply {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: PyError;
}
export interface PyEvent {
  event: string;
  [k: string]: unknown;
}

/**
 * A python3-oslo.messaging process (test/support/oslo_peer.py) driven over stdio: an RPC server,
 * RPC client, notifier or notification listener on a real transport URL.
 */
export class OsloPeer {
  readonly events: PyEvent[] = [];
  private readonly pending = new Map<number, (r: PyReply) => void>();
  private nextId = 1;
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly exited: Promise<void>;
  private stderr = '';

  private constructor(args: string[], flavor: OsloFlavor | undefined) {
    const env = { ...process.env };
    if (flavor?.version === '18') env.PYTHONPATH = [oslo18Path(), process.env.PYTHONPATH].filter(Boolean).join(':');
    // oslo 18's queue manager reads /proc/<process group>/stat and fails when the group's leader
    // has exited (a test run started from a shell that is gone): such a peer leads its own group.
    const detached = Boolean(flavor?.rabbit?.use_queue_manager);
    this.proc = spawn(PYTHON, [SCRIPT, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env, detached });
    this.proc.stderr.setEncoding('utf8');
    this.proc.stderr.on('data', (d: string) => {
      this.stderr = (this.stderr + d).slice(-20000);
    });
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      let msg: PyReply & PyEvent;
      try {
        msg = JSON.parse(line);
      } catch {
        return;
      }
      if (typeof msg.id === 'number' && this.pending.has(msg.id)) {
        const done = this.pending.get(msg.id)!;
        this.pending.delete(msg.id);
        done(msg);
      } else {
        this.events.push(msg);
      }
    });
    this.exited = new Promise((resolve) => this.proc.once('exit', () => resolve()));
  }

  /**
   * Starts a peer and waits for its `ready` line (oslo imports take about a second, 10 s and
   * more on a machine loaded many times over, hence the minute); checks that
   * it runs the oslo.messaging the flavor asks for. Without a flavor: Debian's, default options.
   */
  static async start(
    mode: 'server' | 'client' | 'notify' | 'listen',
    opts: Record<string, string | undefined>,
    flavor?: OsloFlavor,
  ): Promise<OsloPeer> {
    const args: string[] = [mode];
    const conf = configFile(flavor);
    for (const [k, v] of Object.entries({ ...opts, 'config-file': conf })) if (v !== undefined) args.push(`--${k}`, v);
    const peer = new OsloPeer(args, flavor);
    const ready = await peer.waitFor((e) => e.event === 'ready', 60000, `oslo ${mode} ready`);
    const want = flavor?.version === '18' ? oslo18Path() : '/usr/lib/python3/dist-packages';
    if (!String(ready.oslo).startsWith(want)) {
      await peer.stop();
      throw new Error(`oslo peer runs ${String(ready.oslo)}, expected the one under ${want}`);
    }
    return peer;
  }

  /** Waits until an event matching `pred` has been printed; returns it. */
  async waitFor(pred: (e: PyEvent) => boolean, timeoutMs = 10000, what = 'event'): Promise<PyEvent> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.events.find(pred);
      if (hit) return hit;
      if (this.proc.exitCode !== null) throw new Error(`oslo peer exited (${this.proc.exitCode}) before ${what}:\n${this.stderr}`);
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; stderr:\n${this.stderr.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Sends one request to a client/notify peer; resolves with its answer. */
  request(req: Record<string, unknown>): Promise<PyReply> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.proc.stdin.write(`${JSON.stringify({ id, ...req })}\n`);
    });
  }

  /** Calls through the Python client; resolves with the result or throws the Python error info. */
  async call(req: Record<string, unknown>): Promise<unknown> {
    const r = await this.request({ op: 'call', ...req });
    if (!r.ok) throw Object.assign(new Error(`python ${r.error!.class}: ${r.error!.message}`), { py: r.error });
    return r.result;
  }

  get stderrText(): string {
    return this.stderr;
  }

  /**
   * Stops the peer (stdin EOF, then SIGTERM, then SIGKILL). Client processes exit at once;
   * servers need up to ~5 s for oslo's stop().
   */
  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.stdin.end();
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 8000);
    await this.exited;
    clearTimeout(timer);
  }

  /**
   * Ends the peer at once (SIGKILL), for after-hooks: oslo's graceful stop waits out its
   * consumer's idle poll (up to 5 s, `ACK_REQUEUE_EVERY_SECONDS_MAX`), and nothing after a
   * suite looks at how the peer stopped.
   */
  async kill(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }
}
