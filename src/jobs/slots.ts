/**
 * The running slots of a server's jobs: at most `limit` job methods run at once (the server's
 * concurrency); a job registered beyond that waits `pending`, first come first served. The
 * server's request pool is not used for this: a job holding a request slot for hours would
 * starve the polls that follow it. core/semaphore.ts has no cancellation of a waiter (a
 * pending job cancelled or aborted by a stop must leave the queue), hence this small class.
 */
export class JobSlots {
  private active = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(readonly limit: number) {}

  /** Job methods running now. */
  get running(): number {
    return this.active;
  }

  /** Whether {@link acquire} would take a slot at once. */
  get free(): boolean {
    return this.active < this.limit && this.waiters.length === 0;
  }

  /** Jobs waiting for a slot. */
  get waiting(): number {
    return this.waiters.length;
  }

  /**
   * Takes a slot even past the limit: a call that was already running when it outlived
   * `deferAfter` cannot wait any more; it only delays the pending ones.
   */
  take(): void {
    this.active++;
  }

  /**
   * Takes a slot: undefined when one was free (taken synchronously), else a promise that
   * resolves once one is, or rejects with the signal's reason (taking none) if it aborts first.
   */
  acquire(signal: AbortSignal): Promise<void> | undefined {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.free) {
      this.active++;
      return undefined;
    }
    return new Promise<void>((resolve, reject) => {
      const grant = () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(grant);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(grant);
    });
  }

  /** Gives a slot back; the oldest waiter gets it. */
  release(): void {
    this.active--;
    while (this.active < this.limit && this.waiters.length > 0) {
      this.active++;
      this.waiters.shift()!();
    }
  }
}
