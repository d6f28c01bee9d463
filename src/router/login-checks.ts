/** What a login check came to: its result, or why it was not made. */
export type LoginOutcome = boolean | 'gone' | 'busy';

interface Waiter {
  readonly from: string;
  readonly gone: () => boolean;
  readonly wake: (granted: boolean) => void;
}

/**
 * Bounds the password checks a router runs for SASL PLAIN logins. Each is scrypt: about 16 MiB
 * and a libuv pool thread for tens of milliseconds. A peer can send a login and hang up at once,
 * so the limits on open sockets do not bound them: 600 such logins in 1.35 s kept the pool busy
 * for 18 s, grew the router by 77 MiB, and a real login waited 17.6 s (and lost two attempts to
 * the handshake timeout). Here at most `maxRunning` checks run; others wait, at most
 * `maxWaiting` in all and `perAddress` (running and waiting) from one client address; a check
 * whose connection closed while it waited is not made.
 */
export class LoginChecks {
  private running = 0;
  private waiting: Waiter[] = [];
  /** Checks running or waiting, by client address. */
  private readonly byAddress = new Map<string, number>();

  constructor(
    private readonly maxRunning = 2,
    private readonly maxWaiting = 64,
    private readonly perAddress = 32,
  ) {}

  /** Checks held now: running and waiting. */
  get held(): number {
    return this.running + this.waiting.length;
  }

  /**
   * Runs `check` once a slot is free. `gone` tells whether the connection closed meanwhile
   * (then: 'gone', nothing checked); 'busy' when the waiting room or the address's share is full.
   */
  async run(from: string, gone: () => boolean, check: () => Promise<boolean>): Promise<LoginOutcome> {
    if (gone()) return 'gone';
    // Waiters whose connections closed leave room before a newcomer is refused for want of it.
    if (this.heldFrom(from) >= this.perAddress) this.dropGone();
    if (this.heldFrom(from) >= this.perAddress) return 'busy';
    if (this.running < this.maxRunning) {
      this.running++;
    } else {
      if (this.waiting.length >= this.maxWaiting) this.dropGone();
      if (this.waiting.length >= this.maxWaiting) return 'busy';
      // Counted as it is now: dropGone() may just have released waiters of this address too.
      this.byAddress.set(from, this.heldFrom(from) + 1);
      const granted = await new Promise<boolean>((wake) => this.waiting.push({ from, gone, wake }));
      if (!granted) return 'gone';
      // The slot was handed over by the check that ended: running is unchanged.
      return this.checkIn(from, gone, check);
    }
    this.byAddress.set(from, this.heldFrom(from) + 1);
    return this.checkIn(from, gone, check);
  }

  /** Checks running or waiting for logins from `from`. */
  heldFrom(from: string): number {
    return this.byAddress.get(from) ?? 0;
  }

  private async checkIn(from: string, gone: () => boolean, check: () => Promise<boolean>): Promise<LoginOutcome> {
    try {
      return gone() ? 'gone' : await check();
    } finally {
      this.release(from);
      this.handOver();
    }
  }

  /** Passes the slot of a check that ended to the next waiter whose connection is still there. */
  private handOver(): void {
    for (;;) {
      const next = this.waiting.shift();
      if (!next) {
        this.running--;
        return;
      }
      if (!next.gone()) {
        next.wake(true);
        return;
      }
      this.release(next.from);
      next.wake(false);
    }
  }

  private dropGone(): void {
    const kept: Waiter[] = [];
    for (const w of this.waiting) {
      if (!w.gone()) {
        kept.push(w);
        continue;
      }
      this.release(w.from);
      w.wake(false);
    }
    this.waiting = kept;
  }

  private release(from: string): void {
    const n = (this.byAddress.get(from) ?? 1) - 1;
    if (n > 0) this.byAddress.set(from, n);
    else this.byAddress.delete(from);
  }
}
