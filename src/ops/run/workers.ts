/**
 * Worker processes of `hermod run --workers N` (node:cluster). The primary forks N workers, each
 * running the services with its own connection (competing consumers on each topic, server names
 * `<server>-<n>`), restarts a worker that dies with a capped, jittered backoff and logs the crash,
 * and on stop asks every worker to drain (each runs the CLIs' stop contract: stop, wait with the
 * deadline, exit 0, or 7 if it had to abort work).
 */
import cluster, { type Worker } from 'node:cluster';
import { type BackoffOptions, backoffDelay } from '../../core/backoff.js';
import type { RunLogger } from './types.js';

/** The environment variable that tells a forked process its worker number (not a HERMOD_* config key). */
export const WORKER_ENV = '_HERMOD_RUN_WORKER';

/** The message the primary sends a worker to start its graceful stop. */
export const STOP_MESSAGE = { hermod: 'stop' } as const;

/** The worker number of this process, or undefined in the primary or a single process. */
export function workerNumber(): number | undefined {
  if (!cluster.isWorker) return undefined;
  const n = Number(process.env[WORKER_ENV]);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/** Calls `stop` when the primary asks this worker to stop or goes away. */
export function onPrimaryStop(stop: (reason: string) => void): void {
  process.on('message', (m: unknown) => {
    if ((m as { hermod?: string } | null)?.hermod === STOP_MESSAGE.hermod) stop('asked by the primary');
  });
  process.on('disconnect', () => stop('the primary is gone'));
}

/** Options of a {@link WorkerSupervisor}. */
export interface SupervisorOptions {
  count: number;
  log: RunLogger;
  /** Restart delays after crashes. @default 200 ms doubling to 10 s */
  backoff?: BackoffOptions;
  /** A worker that lived this long before it died restarts at the first delay again. @default 10 s */
  stableMs?: number;
}

interface Slot {
  n: number;
  worker: Worker | undefined;
  startedAt: number;
  failures: number;
  timer: NodeJS.Timeout | undefined;
}

/** The primary's side: forks, restarts and stops the workers. */
export class WorkerSupervisor {
  private readonly slots: Slot[];
  private stopping = false;
  private readonly exits = new Map<number, number>();
  private allExited: (() => void) | undefined;
  private readonly backoff: BackoffOptions;
  /** Crashes seen (exits not asked for). */
  crashes = 0;

  constructor(private readonly options: SupervisorOptions) {
    this.backoff = options.backoff ?? { initial: 200, factor: 2, max: 10_000 };
    this.slots = Array.from({ length: options.count }, (_, i) => ({
      n: i + 1,
      worker: undefined,
      startedAt: 0,
      failures: 0,
      timer: undefined,
    }));
  }

  /** Forks every worker. */
  start(): void {
    for (const slot of this.slots) this.fork(slot);
  }

  /** Workers alive now. */
  alive(): number {
    return this.slots.filter((s) => s.worker).length;
  }

  /** Workers that exited with status 7 (aborted work at their deadline) during the stop. */
  aborted(): number {
    return [...this.exits.values()].filter((c) => c !== 0).length;
  }

  /**
   * Asks every worker to drain and waits until all have exited or `deadlineMs` passed (then the
   * rest are killed). Resolves with the number of workers that did not exit cleanly.
   */
  async stop(deadlineMs: number): Promise<number> {
    this.stopping = true;
    for (const slot of this.slots) clearTimeout(slot.timer);
    const done = new Promise<void>((resolve) => {
      this.allExited = resolve;
    });
    for (const slot of this.slots) {
      if (slot.worker?.isConnected()) slot.worker.send(STOP_MESSAGE);
      else slot.worker?.process.kill('SIGTERM');
    }
    if (this.alive() === 0) return this.aborted();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, deadlineMs);
    });
    await Promise.race([done, late]);
    clearTimeout(timer);
    let killed = 0;
    for (const slot of this.slots) {
      if (slot.worker) {
        killed++;
        this.options.log.warn(`worker ${slot.n} did not exit by the deadline; killing it`, { worker: slot.n });
        slot.worker.process.kill('SIGKILL');
      }
    }
    return this.aborted() + killed;
  }

  /** Ends every worker now: a signal to a stopping worker aborts its work. */
  async abort(): Promise<void> {
    this.stopping = true;
    for (const slot of this.slots) {
      clearTimeout(slot.timer);
      slot.worker?.process.kill('SIGTERM');
    }
  }

  private fork(slot: Slot): void {
    const worker = cluster.fork({ [WORKER_ENV]: String(slot.n) });
    slot.worker = worker;
    slot.startedAt = Date.now();
    worker.on('online', () =>
      this.options.log.info(`worker ${slot.n} started (pid ${worker.process.pid})`, { worker: slot.n, pid: worker.process.pid }),
    );
    worker.on('exit', (code, signal) => this.exited(slot, worker, code, signal));
  }

  private exited(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.worker !== worker) return;
    slot.worker = undefined;
    const how = signal ? `signal ${signal}` : `exit status ${code}`;
    if (this.stopping) {
      this.exits.set(slot.n, code ?? 1);
      this.options.log.info(`worker ${slot.n} stopped (${how})`, { worker: slot.n, code, signal });
      if (this.alive() === 0) this.allExited?.();
      return;
    }
    this.crashes++;
    const lived = Date.now() - slot.startedAt;
    slot.failures = lived >= (this.options.stableMs ?? 10_000) ? 1 : slot.failures + 1;
    const delay = backoffDelay(slot.failures, this.backoff);
    this.options.log.error(
      `worker ${slot.n} (pid ${worker.process.pid}) died (${how}) after ${(lived / 1000).toFixed(1)} s; restarting in ${delay} ms`,
      {
        worker: slot.n,
        pid: worker.process.pid,
        code,
        signal,
        event: 'worker-crash',
        restartInMs: delay,
      },
    );
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      if (!this.stopping) this.fork(slot);
    }, delay);
  }
}
