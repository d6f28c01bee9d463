/**
 * Worker processes of `hermod run --workers N` (node:cluster). The primary forks N workers, each
 * running the services with its own connection (competing consumers on each topic, server names
 * `<server>-<n>`), restarts a worker that dies with a capped, jittered backoff and logs the crash,
 * and on stop asks every worker to drain (each runs the CLIs' stop contract: stop, wait with the
 * deadline, exit 0, or 7 if it had to abort work). A worker that asks to be recycled (hot reload
 * keeps every reloaded module in memory) is replaced by a hand-over: a fresh worker of the same
 * number starts, and once it consumes, the old one gets the graceful stop.
 */
import cluster, { type Worker } from 'node:cluster';
import { type BackoffOptions, backoffDelay } from '../../core/backoff.js';
import type { RunLogger } from './types.js';

/** The environment variable that tells a forked process its worker number (not a HERMOD_* config key). */
export const WORKER_ENV = '_HERMOD_RUN_WORKER';

/** The message the primary sends a worker to start its graceful stop. */
export const STOP_MESSAGE = { hermod: 'stop' } as const;

/**
 * The message the primary sends a worker to abort its work now (the primary got a second
 * signal). A message, not a SIGTERM: a worker that leaves SIGTERM to its primary (see
 * {@link onPrimaryStop}) cannot tell the primary's signal from a service manager's.
 */
export const ABORT_MESSAGE = { hermod: 'abort' } as const;

/** What a worker tells the primary once its services consume. */
export const READY_MESSAGE = { hermod: 'ready' } as const;

/**
 * What a worker tells the primary once it listens for {@link STOP_MESSAGE}: a message sent
 * before that (while the worker still loads its modules) would reach no listener and be lost.
 */
export const HELLO_MESSAGE = { hermod: 'hello' } as const;

/** What a worker sends the primary every {@link BEAT_EVERY_MS}: its event loop turns. */
export const BEAT_MESSAGE = { hermod: 'beat' } as const;
/** How often a worker says its event loop turns. */
export const BEAT_EVERY_MS = 1000;

/**
 * What a worker asks the primary for first: the run file as the primary read it. A worker that
 * read the file itself (a restart after a crash, a recycle, hours later) would serve what the
 * file says then, beside workers serving what it said at start, and one that read it half
 * written would fail at every restart.
 */
export const SPEC_REQUEST = { hermod: 'spec?' } as const;

/** The primary's answer to {@link SPEC_REQUEST}. */
export interface SpecMessage {
  hermod: 'spec';
  spec: unknown;
}

/**
 * Asks the primary for the run data it read (see {@link SPEC_REQUEST}). Rejects when the
 * primary goes away before it answers.
 */
export function specFromPrimary(): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const done = () => {
      process.off('message', onMessage);
      process.off('disconnect', onGone);
    };
    const onMessage = (m: unknown) => {
      const msg = m as Partial<SpecMessage> | null;
      if (msg?.hermod !== 'spec') return;
      done();
      resolve(msg.spec);
    };
    const onGone = () => {
      done();
      reject(new Error('the primary went away before it sent the run file'));
    };
    process.on('message', onMessage);
    process.on('disconnect', onGone);
    if (!process.connected || !process.send) return onGone();
    // Asked after listening, so the answer cannot arrive before anyone hears it.
    process.send(SPEC_REQUEST, undefined, {}, (err: Error | null) => err && onGone());
  });
}

/**
 * What a worker tells the primary when its stdout failed (the reader of the run's output went
 * away: `| head`, a closed terminal). The worker stops, as a single process would; the primary
 * stops the run, since every worker and itself write to that same output. Taken for a crash,
 * the worker was restarted, met the same closed output, and so on for good.
 */
export const OUTPUT_CLOSED_MESSAGE = { hermod: 'stdout-closed' } as const;

/** What a worker asks the primary for when it wants a fresh process (`reloads`: its reloads so far). */
export interface RecycleMessage {
  hermod: 'recycle';
  reloads: number;
}

/** Sends a message to the primary, if this process has one. */
export function tellPrimary(
  message: typeof READY_MESSAGE | typeof HELLO_MESSAGE | typeof BEAT_MESSAGE | typeof OUTPUT_CLOSED_MESSAGE | RecycleMessage,
): void {
  // With a callback, a channel that closes between the check and the write (the primary just
  // died) reports to it instead of throwing EPIPE as an 'error' nobody listens for.
  if (cluster.isWorker && process.connected) process.send?.(message, undefined, {}, () => undefined);
}

/** The worker number of this process, or undefined in the primary or a single process. */
export function workerNumber(): number | undefined {
  if (!cluster.isWorker) return undefined;
  const n = Number(process.env[WORKER_ENV]);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/**
 * Calls `stop` when the primary asks this worker to stop or goes away, and `abort` when it asks
 * for an abort ({@link ABORT_MESSAGE}; without `abort` this worker sends itself a SIGTERM, which
 * its signal handling takes as a second signal once a stop began), and tells the primary it may
 * now be asked. Call it before anything slow (connecting), so a stop asked for during start-up is
 * honoured.
 */
export function onPrimaryStop(stop: (reason: string) => void, abort?: (reason: string) => void): void {
  process.on('message', (m: unknown) => {
    const what = (m as { hermod?: string } | null)?.hermod;
    if (what === STOP_MESSAGE.hermod) stop('asked by the primary');
    else if (what === ABORT_MESSAGE.hermod) {
      if (abort) abort('aborted by the primary');
      else process.kill(process.pid, 'SIGTERM');
    }
  });
  // node:cluster's own handler, installed first, exits at once (status 0) on a lost channel
  // unless the disconnect was asked for: requests in flight would be cut. Marking it asked for
  // lets this worker drain them (the primary was killed, say) under the usual deadline.
  if (cluster.worker) cluster.worker.exitedAfterDisconnect = true;
  process.on('disconnect', () => stop('the primary is gone'));
  if (!process.connected) stop('the primary is gone');
  else {
    tellPrimary(HELLO_MESSAGE);
    setInterval(() => tellPrimary(BEAT_MESSAGE), BEAT_EVERY_MS).unref();
  }
}

/** Options of a {@link WorkerSupervisor}. */
export interface SupervisorOptions {
  count: number;
  log: RunLogger;
  /** Restart delays after crashes. @default 200 ms doubling to 10 s */
  backoff?: BackoffOptions;
  /** A worker that lived this long before it died restarts at the first delay again. @default 10 s */
  stableMs?: number;
  /** What a worker gets when it asks for the run file ({@link specFromPrimary}). */
  spec?: unknown;
  /**
   * Given, a worker that dies before any worker said it was ready is not restarted: it met
   * what every worker would (the port taken, a broker refusing the credentials), and this is
   * told instead, to end the run; unless it returns `false`, and that worker restarts like any
   * other. Without it, such a worker restarts like any other.
   */
  onEarlyDeath?: (death: { worker: number; pid: number | undefined; code: number | null; signal: string | null }) => boolean | undefined;
  /**
   * How long a recycle's replacement may take to consume. One that has not by then (its new code
   * awaits something that never settles, its broker refuses it) is stopped and the old worker
   * keeps serving, asking again after its next reload; without a bound the slot waited on it
   * for good and never recycled again. @default 60000
   */
  handOverTimeoutMs?: number;
  /** Called when a worker's stdout failed ({@link OUTPUT_CLOSED_MESSAGE}): the run should stop. */
  onOutputClosed?: (worker: number) => void;
  /** How long such a replacement's graceful stop may take before it is killed. @default 10000 */
  abandonGraceMs?: number;
  /**
   * A worker whose event loop has not turned for this long (no {@link BEAT_MESSAGE}) while it
   * loads (before it says {@link READY_MESSAGE}: a start, a restart, a reload's replacement) is
   * killed and restarted like a crashed one: a module stuck in `while (true) {}` wedged a worker
   * for good, every call timing out, with nothing logged. @default 45000
   */
  unresponsiveMs?: number;
  /**
   * The watchdog also watches workers that serve: a watched run's worker reloads by itself at any
   * save, unseen by the primary. Otherwise a serving worker is left to its calls, however long one
   * blocks its event loop (a synchronous call of 55 s, redelivered after each kill, took three
   * workers down in turn). @default false
   */
  watchServing?: boolean;
}

/** {@link SupervisorOptions.unresponsiveMs}'s default. */
export const DEFAULT_UNRESPONSIVE_MS = 45_000;

/** {@link SupervisorOptions.handOverTimeoutMs}'s default. */
export const DEFAULT_HAND_OVER_TIMEOUT_MS = 60_000;

interface Slot {
  n: number;
  /** The worker that serves. */
  worker: Worker | undefined;
  /** Its replacement while a recycle hands over: started, not yet consuming. */
  next: Worker | undefined;
  /** When the recycle began, the reloads the old worker had made, and whether a reload ({@link WorkerSupervisor.reload}) asked for it. */
  recycle: { at: number; reloads: number; reload?: boolean } | undefined;
  /** Ends a hand-over whose replacement does not consume in time. */
  handOverTimer: NodeJS.Timeout | undefined;
  startedAt: number;
  failures: number;
  timer: NodeJS.Timeout | undefined;
}

/** The primary's side: forks, restarts and stops the workers. */
export class WorkerSupervisor {
  private readonly slots: Slot[];
  private stopping = false;
  private readonly exitCodes: number[] = [];
  /** Recycled workers draining their last requests. */
  private readonly retiring = new Map<Worker, number>();
  /** Replacements that did not consume in time, stopping, with the timer that kills them. */
  private readonly abandoned = new Map<Worker, NodeJS.Timeout>();
  private allExited: (() => void) | undefined;
  private readonly backoff: BackoffOptions;
  /** Workers that said hello: a stop message reaches them. */
  private readonly heard = new WeakSet<Worker>();
  /** Workers asked to stop before they said hello: asked again when they do. */
  private readonly askedEarly = new WeakSet<Worker>();
  /** Some worker said it was ready (serving, or listening). */
  private anyReady = false;
  /** A reload's slots still to hand over, one after the other, and the one handing over now. */
  private reloadQueue: Slot[] = [];
  private reloading: Slot | undefined;
  /** A reload was asked for during one: a further pass follows it. */
  private reloadAgain = false;
  /** This reload pass's slots whose replacement failed while the old worker serves on. */
  private reloadKept: number[] = [];
  /** When each worker that said hello was last heard from (see unresponsiveMs). */
  private readonly lastBeat = new Map<Worker, number>();
  /** Workers that said they serve (see {@link SupervisorOptions.watchServing}). */
  private readonly serving = new WeakSet<Worker>();
  private watchdog: NodeJS.Timeout | undefined;
  /** Crashes seen (exits not asked for). */
  crashes = 0;
  /** Recycles done (hand-overs to a fresh worker). */
  recycles = 0;

  constructor(private readonly options: SupervisorOptions) {
    this.backoff = options.backoff ?? { initial: 200, factor: 2, max: 10_000 };
    this.slots = Array.from({ length: options.count }, (_, i) => ({
      n: i + 1,
      worker: undefined,
      next: undefined,
      recycle: undefined,
      handOverTimer: undefined,
      startedAt: 0,
      failures: 0,
      timer: undefined,
    }));
  }

  /** Forks every worker. */
  start(): void {
    for (const slot of this.slots) this.fork(slot);
    this.watchdog = setInterval(() => this.checkBeats(), BEAT_EVERY_MS);
    this.watchdog.unref();
  }

  /**
   * Kills a loading worker (or replacement), or under `watchServing` a serving one, whose event
   * loop stopped turning; its exit restarts it.
   */
  private checkBeats(): void {
    if (this.stopping) return;
    const limit = this.options.unresponsiveMs ?? DEFAULT_UNRESPONSIVE_MS;
    const now = Date.now();
    for (const slot of this.slots) {
      for (const w of [slot.worker, slot.next]) {
        const last = w && this.lastBeat.get(w);
        if (!w || last === undefined || now - last <= limit) continue;
        if (this.serving.has(w) && !this.options.watchServing) continue;
        this.lastBeat.delete(w);
        this.options.log.error(
          `worker ${slot.n} (pid ${w.process.pid}) has not answered for ${Math.round((now - last) / 1000)} s (its event loop is blocked: a load or reload stuck in a loop?); killing it`,
          { worker: slot.n, workerPid: w.process.pid, event: 'worker-unresponsive' },
        );
        w.process.kill('SIGKILL');
      }
    }
  }

  /**
   * Hands every worker over to a fresh process, one after the other, as a recycle does: the new
   * worker loads the endpoint modules from their files now, and once it consumes the old one
   * drains and exits, so the slot never stops serving (what SIGHUP does to a run with workers).
   * The run file is not read again: the new workers get the primary's copy. A slot whose worker
   * is restarting or already handing over is left as it is, since its next process loads the
   * files anyway. Asked while a reload is under way, one more pass over every worker is queued
   * to run after it (several such requests make one pass): dropped, a deploy made during a
   * reload left the workers handed over before it on the older code, silently. Returns what it
   * did: `started`, `queued`, `pending` (a pass was queued already), or `stopping` (nothing).
   */
  reload(): 'started' | 'queued' | 'pending' | 'stopping' {
    if (this.stopping) return 'stopping';
    if (this.reloading || this.reloadQueue.length > 0) {
      if (this.reloadAgain) return 'pending';
      this.reloadAgain = true;
      return 'queued';
    }
    this.reloadQueue = [...this.slots];
    this.reloadNext();
    return 'started';
  }

  private reloadNext(): void {
    this.reloading = undefined;
    while (!this.stopping) {
      const slot = this.reloadQueue.shift();
      if (!slot) {
        this.reloadEnded();
        if (!this.reloadAgain) return;
        this.reloadAgain = false;
        this.options.log.info('reload: another was asked for during this one; handing every worker over again', { event: 'reload' });
        this.reloadQueue = [...this.slots];
        continue;
      }
      if (!slot.worker || slot.next) continue;
      this.reloading = slot;
      slot.recycle = { at: Date.now(), reloads: 0, reload: true };
      this.fork(slot, true);
      return;
    }
    this.reloadQueue = [];
    this.reloadAgain = false;
    this.reloadKept = [];
  }

  /** The last line of a reload pass: says which workers, if any, still run the code from before it. */
  private reloadEnded(): void {
    const kept = this.reloadKept;
    this.reloadKept = [];
    if (kept.length === 0) {
      this.options.log.info('reload: every worker handed over', { event: 'reload-done', failed: 0 });
      return;
    }
    this.options.log.error(
      `reload: ${kept.length} of ${this.slots.length} worker(s) failed to hand over and still run the old code (worker ${kept.join(', ')}; see the recycle-failed lines)`,
      { event: 'reload-done', failed: kept.length, workers: kept },
    );
  }

  /**
   * The slot's hand-over ended (done, late or failed): a reload goes on with the next slot.
   * `ok` false: its replacement never consumed; if the old worker serves on, it runs the old code.
   */
  private handedOver(slot: Slot, ok: boolean): void {
    if (this.reloading !== slot) return;
    if (!ok && slot.worker) this.reloadKept.push(slot.n);
    this.reloadNext();
  }

  /** Worker processes alive now (replacements starting and recycled ones draining included). */
  alive(): number {
    return this.processes().length;
  }

  /** Workers that exited with a non-zero status during the stop (7: they aborted work at their deadline). */
  aborted(): number {
    // 2 (usage) and 5 (cannot connect): a worker that never started serving, so aborted nothing.
    return this.exitCodes.filter((c) => c !== 0 && c !== 2 && c !== 5).length;
  }

  /**
   * What a primary's signal handling stops (the CLIs' `handleShutdown` target): the workers, then
   * `also` (the primary's metrics endpoint, say) once they are gone.
   */
  shutdownTarget(also?: { close(): Promise<unknown> }) {
    return {
      pending: () => (this.alive() > 0 ? `${this.alive()} worker(s)` : ''),
      aborted: () => this.aborted(),
      // It counts workers, not calls: "aborted 2 piece(s) of work" read as 2 calls when the two
      // workers had aborted 6 between them.
      abortedText: (n: number) =>
        `${n} worker(s) did not stop cleanly: they aborted work still running at the deadline, or were killed (each worker's own line says how many calls)`,
      graceful: async (deadline: number) => {
        const failed = await this.stop(deadline);
        await also?.close();
        return failed;
      },
      abort: async () => {
        await this.abort();
        await also?.close();
      },
    };
  }

  private processes(): Worker[] {
    const out = [...this.retiring.keys(), ...this.abandoned.keys()];
    for (const s of this.slots) for (const w of [s.worker, s.next]) if (w) out.push(w);
    return out;
  }

  /**
   * Asks every worker to drain and waits until all have exited or `deadlineMs` passed (then the
   * rest are killed). Resolves with the number of workers that did not exit cleanly.
   */
  async stop(deadlineMs: number): Promise<number> {
    this.stopping = true;
    clearInterval(this.watchdog);
    for (const slot of this.slots) {
      clearTimeout(slot.timer);
      clearTimeout(slot.handOverTimer);
    }
    const done = new Promise<void>((resolve) => {
      this.allExited = resolve;
    });
    for (const slot of this.slots) for (const w of [slot.worker, slot.next]) if (w) this.askToStop(w);
    // Recycled workers are stopping already: a second request would abort their requests.
    if (this.alive() === 0) return this.aborted();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, deadlineMs);
    });
    await Promise.race([done, late]);
    clearTimeout(timer);
    let killed = 0;
    for (const w of this.processes()) {
      killed++;
      this.options.log.warn(`worker pid ${w.process.pid} did not exit by the deadline; killing it`, { workerPid: w.process.pid });
      w.process.kill('SIGKILL');
    }
    return this.aborted() + killed;
  }

  /**
   * Ends every worker now: a worker that listens is sent {@link ABORT_MESSAGE}, any other a
   * SIGTERM (which aborts a stopping worker's work).
   */
  async abort(): Promise<void> {
    this.stopping = true;
    clearInterval(this.watchdog);
    for (const slot of this.slots) {
      clearTimeout(slot.timer);
      clearTimeout(slot.handOverTimer);
    }
    for (const w of this.processes()) {
      if (w.isConnected() && this.heard.has(w))
        w.send(ABORT_MESSAGE, undefined, undefined, (err) => {
          if (err && !w.isDead()) w.process.kill('SIGTERM');
        });
      else w.process.kill('SIGTERM');
    }
  }

  /** Starts `w`'s graceful stop: now if it listens for the request, else once it says hello. */
  private askToStop(w: Worker): void {
    if (!w.isConnected()) w.process.kill('SIGTERM');
    else if (this.heard.has(w))
      w.send(STOP_MESSAGE, undefined, undefined, (err) => {
        // The channel broke on the way: a signal asks the same.
        if (err && !w.isDead()) w.process.kill('SIGTERM');
      });
    else this.askedEarly.add(w);
  }

  private fork(slot: Slot, replacement = false): Worker {
    const worker = cluster.fork({ [WORKER_ENV]: String(slot.n) });
    if (replacement) {
      slot.next = worker;
      slot.handOverTimer = setTimeout(
        () => this.handOverLate(slot, worker),
        this.options.handOverTimeoutMs ?? DEFAULT_HAND_OVER_TIMEOUT_MS,
      );
    } else {
      slot.worker = worker;
      slot.startedAt = Date.now();
    }
    worker.on('online', () =>
      this.options.log.info(`worker ${slot.n} started (pid ${worker.process.pid})${replacement ? ' to replace a recycled one' : ''}`, {
        worker: slot.n,
        workerPid: worker.process.pid,
      }),
    );
    worker.on('message', (m: unknown) => this.message(slot, worker, m));
    worker.on('exit', (code, signal) => this.exited(slot, worker, code, signal));
    // A send to a worker whose channel broke (it is exiting: its exit event follows) emits an
    // error; unheard, it ended the primary (EPIPE while stopping the others after an early death).
    worker.on('error', () => undefined);
    return worker;
  }

  private message(slot: Slot, worker: Worker, m: unknown): void {
    const msg = m as { hermod?: string; reloads?: unknown } | null;
    if (msg?.hermod === SPEC_REQUEST.hermod) {
      const answer: SpecMessage = { hermod: 'spec', spec: this.options.spec };
      if (worker.isConnected()) worker.send(answer, undefined, undefined, () => undefined);
      return;
    }
    if (msg?.hermod === BEAT_MESSAGE.hermod) {
      if (this.lastBeat.has(worker)) this.lastBeat.set(worker, Date.now());
      return;
    }
    if (msg?.hermod === HELLO_MESSAGE.hermod) {
      this.heard.add(worker);
      this.lastBeat.set(worker, Date.now());
      if (this.askedEarly.has(worker) && worker.isConnected()) worker.send(STOP_MESSAGE, undefined, undefined, () => undefined);
      return;
    }
    if (msg?.hermod === OUTPUT_CLOSED_MESSAGE.hermod) {
      this.options.onOutputClosed?.(slot.n);
      return;
    }
    if (msg?.hermod === READY_MESSAGE.hermod) {
      this.anyReady = true;
      this.serving.add(worker);
    }
    if (this.stopping || !msg) return;
    if (msg.hermod === 'recycle' && worker === slot.worker && !slot.next) {
      // Asked again after every further reload, so a replacement that failed is tried again.
      slot.recycle = { at: Date.now(), reloads: Number(msg.reloads) || 0 };
      this.fork(slot, true);
    } else if (msg.hermod === READY_MESSAGE.hermod && worker === slot.next) this.handOver(slot);
  }

  /** The replacement consumes: it becomes the slot's worker, and the old one drains and exits. */
  private handOver(slot: Slot): void {
    clearTimeout(slot.handOverTimer);
    slot.handOverTimer = undefined;
    const old = slot.worker;
    const fresh = slot.next!;
    slot.worker = fresh;
    slot.next = undefined;
    slot.startedAt = Date.now();
    this.recycles++;
    const { at, reloads, reload } = slot.recycle ?? { at: Date.now(), reloads: 0 };
    slot.recycle = undefined;
    if (!old) {
      this.options.log.info(`worker ${slot.n}: its replacement (pid ${fresh.process.pid}) consumes, the old one having died`, {
        worker: slot.n,
        workerPid: fresh.process.pid,
      });
      this.handedOver(slot, true);
      return;
    }
    this.retiring.set(old, slot.n);
    this.askToStop(old);
    this.options.log.info(
      `worker ${slot.n} ${reload ? 'reloaded' : `recycled after ${reloads} reloads`}: pid ${fresh.process.pid} consumes, pid ${old.process.pid} drains and exits (hand-over ${Date.now() - at} ms)`,
      {
        worker: slot.n,
        event: reload ? 'worker-reload' : 'worker-recycle',
        ...(reload ? {} : { reloads }),
        workerPid: fresh.process.pid,
        oldWorkerPid: old.process.pid,
        handOverMs: Date.now() - at,
      },
    );
    this.handedOver(slot, true);
  }

  /** The replacement did not consume in time: it is stopped (killed if it will not), the old worker serves on. */
  private handOverLate(slot: Slot, worker: Worker): void {
    slot.handOverTimer = undefined;
    if (slot.next !== worker || this.stopping) return;
    slot.next = undefined;
    slot.recycle = undefined;
    const ms = this.options.handOverTimeoutMs ?? DEFAULT_HAND_OVER_TIMEOUT_MS;
    this.options.log.error(
      `the replacement of worker ${slot.n} (pid ${worker.process.pid}) did not consume within ${ms} ms; stopping it, ${slot.worker ? 'the old one keeps serving' : 'and restarting the worker (the old one died)'}`,
      { worker: slot.n, workerPid: worker.process.pid, event: 'recycle-failed', handOverTimeoutMs: ms },
    );
    // It may hold calls it took before the rest of its services hung: the graceful stop lets
    // those finish, and the kill is for a process too stuck to stop.
    this.abandoned.set(
      worker,
      setTimeout(() => {
        if (!worker.isDead()) worker.process.kill('SIGKILL');
      }, this.options.abandonGraceMs ?? 10_000),
    );
    this.askToStop(worker);
    // The worker it was to replace died meanwhile: nothing serves this slot now.
    if (!slot.worker) this.restart(slot);
    this.handedOver(slot, false);
  }

  private exited(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    this.lastBeat.delete(worker);
    const how = signal ? `signal ${signal}` : `exit status ${code}`;
    const pid = worker.process.pid;
    const kill = this.abandoned.get(worker);
    if (kill) {
      clearTimeout(kill);
      this.abandoned.delete(worker);
      this.options.log.info(`the replacement of worker ${slot.n} that did not consume (pid ${pid}) ended (${how})`, {
        worker: slot.n,
        workerPid: pid,
        code,
        signal,
      });
      if (this.stopping && this.alive() === 0) this.allExited?.();
      return;
    }
    // During a stop, a worker that had not said hello had started no service: a stop signal that
    // killed it (a terminal's Ctrl-C reaches the whole group, also a worker still in Node's own
    // start-up, before any handler of ours) cut nothing, so it counts as a clean stop.
    const status = this.stopping && !this.heard.has(worker) && (signal === 'SIGINT' || signal === 'SIGTERM') ? 0 : (code ?? 1);
    if (this.retiring.delete(worker)) {
      // A recycled worker ran the graceful stop: not a crash, nothing to restart.
      if (this.stopping) this.exitCodes.push(code ?? 1);
      if (code !== 0)
        this.options.log.warn(`recycled worker ${slot.n} (pid ${pid}) ended with ${how}`, { worker: slot.n, workerPid: pid, code, signal });
    } else if (worker === slot.next) {
      clearTimeout(slot.handOverTimer);
      slot.handOverTimer = undefined;
      slot.next = undefined;
      slot.recycle = undefined;
      if (this.stopping) this.exitCodes.push(status);
      else {
        this.options.log.error(
          `the replacement of worker ${slot.n} (pid ${pid}) died (${how}) before it consumed; ${slot.worker ? 'the old one keeps serving' : 'the old one died too: restarting'}`,
          {
            worker: slot.n,
            workerPid: pid,
            code,
            signal,
            event: 'recycle-failed',
          },
        );
        if (!slot.worker) this.restart(slot);
        this.handedOver(slot, false);
      }
    } else if (worker === slot.worker) {
      slot.worker = undefined;
      if (this.stopping) {
        this.exitCodes.push(status);
        this.options.log.info(`worker ${slot.n} stopped (${how}${status === 0 && signal ? ', before it had started anything' : ''})`, {
          worker: slot.n,
          code,
          signal,
        });
      } else this.crashed(slot, worker, how, code, signal);
    }
    if (this.stopping && this.alive() === 0) this.allExited?.();
  }

  private crashed(slot: Slot, worker: Worker, how: string, code: number | null, signal: string | null): void {
    this.crashes++;
    if (!this.anyReady && this.options.onEarlyDeath) {
      const handled = this.options.onEarlyDeath({ worker: slot.n, pid: worker.process.pid, code, signal });
      if (handled !== false) return;
    }
    const lived = Date.now() - slot.startedAt;
    slot.failures = lived >= (this.options.stableMs ?? 10_000) ? 1 : slot.failures + 1;
    const fields = { worker: slot.n, workerPid: worker.process.pid, code, signal, event: 'worker-crash' };
    const died = `worker ${slot.n} (pid ${worker.process.pid}) died (${how}) after ${(lived / 1000).toFixed(1)} s`;
    if (slot.next) {
      // A replacement was starting already (a recycle): it takes the slot once it consumes, by
      // the hand-over deadline, or the slot restarts then. Made the worker at once, one that
      // never consumed (its new code hangs) held the slot for good, serving nothing.
      this.options.log.error(`${died}; its replacement (pid ${slot.next.process.pid}) takes over once it consumes`, fields);
      return;
    }
    this.restart(slot, died, fields);
  }

  /** Forks the slot's worker again after its backoff delay, saying so. */
  private restart(slot: Slot, died?: string, fields?: Record<string, unknown>): void {
    const delay = backoffDelay(Math.max(1, slot.failures), this.backoff);
    if (died) this.options.log.error(`${died}; restarting in ${delay} ms`, { ...fields, restartInMs: delay });
    clearTimeout(slot.timer);
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      if (!this.stopping && !slot.worker && !slot.next) this.fork(slot);
    }, delay);
  }
}
