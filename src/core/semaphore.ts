import { MessagingTimeout, TooManyInFlight } from './errors.js';

/** A counting semaphore with optional fail-fast and acquire deadlines. */
export class Semaphore {
  private active = 0;
  private readonly waiters: Array<{ grant: () => void; timer?: NodeJS.Timeout }> = [];

  constructor(
    readonly limit: number,
    private readonly overflow: 'wait' | 'fail' = 'wait',
  ) {}

  get inUse(): number {
    return this.active;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** Takes a slot; waits (up to `timeoutMs`) or fails fast when none is free. */
  acquire(timeoutMs?: number, what = 'call'): Promise<void> | void {
    if (this.active < this.limit) {
      this.active++;
      return;
    }
    if (this.overflow === 'fail') {
      throw new TooManyInFlight(`${this.limit} calls already in flight; ${what} refused (rpc.inFlightOverflow=fail)`);
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: { grant: () => void; timer?: NodeJS.Timeout } = { grant: resolve };
      if (timeoutMs !== undefined) {
        waiter.timer = setTimeout(() => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new MessagingTimeout(`timed out after ${timeoutMs} ms waiting for one of ${this.limit} in-flight slots (${what})`));
        }, timeoutMs);
      }
      this.waiters.push(waiter);
    });
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) {
      if (next.timer) clearTimeout(next.timer);
      next.grant();
    } else {
      this.active--;
    }
  }
}
