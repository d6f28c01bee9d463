import { InvalidArgument, MAX_TIMER_MS } from './errors.js';
import { SlotList } from './slot-map.js';

/**
 * One unit of work a {@link WorkPool} runs: an RPC request, a notification or a batch of them.
 * The work settles its own message; the pool only decides when it starts and when it is over.
 */
export interface Work {
  /** Does the work. The pool counts it completed when this settles, either way. */
  run(): Promise<void>;
  /**
   * Ends the work at a drain deadline. After this the work must not settle its message again:
   * a late result of `run()` is the work's to drop (the pool no longer counts it).
   */
  abort(): Promise<void>;
  /** Gives back work that was accepted but never started (the pool was closed). */
  requeue(): void;
}

/** What a drain (a server's or listener's `wait()`) saw. */
export interface WaitResult {
  /** Work that finished while waiting. */
  completed: number;
  /** Work still running at the deadline, ended through its `abort()`. */
  aborted: number;
}

/** Counters of a {@link WorkPool}. */
export interface WorkPoolStats {
  /** Running now. */
  inFlight: number;
  /** Accepted, waiting for a free slot. */
  queued: number;
  /** Finished on their own since the pool was made. */
  completed: number;
  /** Ended by a drain deadline. */
  aborted: number;
  /** Given back without being started. */
  requeued: number;
}

/**
 * How long a drain waits for the aborts themselves (a ServerStopped reply, a requeue) before it
 * returns anyway: an abort that needs a broker which stopped answering must not hold up a stop.
 */
export const ABORT_GRACE_MS = 1000;

/**
 * A stop deadline's timer, or none for `Infinity` (or anything past the longest timer Node
 * sets): Node fires such a timer after 1 ms, so `wait(Infinity)` ended every request at once.
 */
export function deadlineTimer(ms: number, fn: () => void): NodeJS.Timeout | undefined {
  return ms > MAX_TIMER_MS ? undefined : setTimeout(fn, ms);
}

/** Checks a stop deadline: milliseconds, 0 or more; `Infinity` waits as long as the work runs. */
export function assertDeadline(deadlineMs: unknown): void {
  if (typeof deadlineMs !== 'number' || Number.isNaN(deadlineMs) || deadlineMs < 0) {
    throw new InvalidArgument(
      `deadlineMs must be a non-negative number of milliseconds (Infinity: no deadline), got ${String(deadlineMs)}`,
    );
  }
}

interface Entry<W> {
  readonly work: W;
  /** Set once the pool started aborting it: from then on its own end is not counted. */
  aborting: boolean;
  /** Its place in the pool's running slots, -1 once it ended. */
  slot: number;
}

/**
 * What RPC servers and notification listeners share: at most `concurrency` pieces of work run
 * at once, the rest wait in a FIFO backlog; {@link drain} waits for the running ones until a
 * deadline and aborts what is left; {@link close} and {@link requeueBacklog} implement "no new
 * work" on stop. Pure bookkeeping: the work itself knows how to settle its message.
 */
export class WorkPool<W extends Work = Work> {
  /**
   * What runs, in slots that an end clears (each entry knows its slot), not a Set: a Set
   * with an entry in and out per request keeps every request it held reachable from its old
   * tables until a full GC (see SlotMap), and a busy server promoted each request that way.
   */
  private readonly running = new SlotList<Entry<W>>();
  private readonly backlog: W[] = [];
  private readonly idleWaiters: Array<() => void> = [];
  private closed = false;
  private completed = 0;
  private aborted = 0;
  private requeued = 0;

  /** @param concurrency at most this many run at once (an integer ≥ 1, or Infinity: no bound) */
  constructor(readonly concurrency: number) {
    if (!(concurrency === Infinity || (Number.isInteger(concurrency) && concurrency >= 1))) {
      throw new InvalidArgument(`concurrency must be an integer of 1 or more, got ${concurrency}`);
    }
  }

  /** Running now. */
  get inFlight(): number {
    return this.running.size;
  }

  /** Waiting for a slot. */
  get queued(): number {
    return this.backlog.length;
  }

  stats(): WorkPoolStats {
    return {
      inFlight: this.running.size,
      queued: this.backlog.length,
      completed: this.completed,
      aborted: this.aborted,
      requeued: this.requeued,
    };
  }

  /**
   * Starts `work` now if a slot is free, else queues it behind the others. A closed pool takes
   * nothing: the work is requeued at once. Returns whether the pool took it.
   */
  submit(work: W): boolean {
    if (this.closed) {
      this.requeued++;
      work.requeue();
      return false;
    }
    if (this.running.size < this.concurrency) this.start(work);
    else this.backlog.push(work);
    return true;
  }

  /**
   * Starts nothing more: running work goes on, queued work stays queued until
   * {@link requeueBacklog}, and later submits are requeued at once.
   */
  close(): void {
    this.closed = true;
  }

  /** Closes the pool and gives every queued piece of work back; returns how many. */
  requeueBacklog(): number {
    this.close();
    const queued = this.backlog.splice(0);
    for (const w of queued) w.requeue();
    this.requeued += queued.length;
    this.checkIdle();
    return queued.length;
  }

  /** Resolves once nothing runs (at once if nothing does). */
  idle(): Promise<void> {
    if (this.running.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Waits until nothing runs, for at most `deadlineMs`; then aborts what still runs (each
   * through its own `abort()`) and waits for those aborts, at most `abortGraceMs`. Counts what
   * finished on its own before the deadline and what was aborted (also by a concurrent drain)
   * meanwhile. Returns within `deadlineMs + abortGraceMs` whatever the work does.
   */
  async drain(deadlineMs: number, abortGraceMs: number = ABORT_GRACE_MS): Promise<WaitResult> {
    if (this.running.size === 0) return { completed: 0, aborted: 0 };
    const completedBefore = this.completed;
    const abortedBefore = this.aborted;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<boolean>((resolve) => {
      timer = deadlineTimer(deadlineMs, () => resolve(false));
    });
    const drained = await Promise.race([this.idle().then(() => true), deadline]);
    clearTimeout(timer);
    const completed = this.completed - completedBefore;
    if (!drained) await this.abortRunning(abortGraceMs);
    return { completed, aborted: this.aborted - abortedBefore };
  }

  /** Aborts what runs: counted and out of the pool at once; their aborts get `graceMs` to finish. */
  private async abortRunning(graceMs: number): Promise<void> {
    const left = this.running.values().filter((e) => !e.aborting);
    for (const e of left) e.aborting = true;
    const aborts = Promise.all(left.map((e) => e.work.abort().catch(() => {})));
    this.aborted += left.length;
    for (const e of left) this.end(e);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([aborts, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
  }

  private start(work: W): void {
    const entry: Entry<W> = { work, aborting: false, slot: -1 };
    entry.slot = this.running.add(entry);
    const ended = () => {
      if (entry.aborting) return;
      this.completed++;
      this.end(entry);
    };
    // A work that rejects is still over; reporting its error is the work's business.
    work.run().then(ended, ended);
  }

  private end(entry: Entry<W>): void {
    if (entry.slot >= 0) {
      this.running.remove(entry.slot);
      entry.slot = -1;
    }
    const next = this.closed ? undefined : this.backlog.shift();
    if (next) this.start(next);
    this.checkIdle();
  }

  private checkIdle(): void {
    if (this.running.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  }
}
