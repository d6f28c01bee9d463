/** One waiter registered with a {@link Deadlines}: what to do when its deadline passes. */
export interface DeadlineEntry {
  /** Epoch ms. */
  readonly deadline: number;
  /** Called once, at or after `deadline`, unless removed before. */
  readonly expire: () => void;
}

/**
 * Deadlines of many waiters on one timer: a waiter registers its deadline and removes itself
 * when it settles first. Meant for the hot path (every confirmed publish), where a setTimeout per
 * message would cost a timer object, an insert into Node's timer lists and a clearTimeout each,
 * almost always for nothing. The timer is armed for the earliest deadline known when it was
 * armed; on firing it expires every waiter that is due and re-arms for the earliest left, so a
 * removed waiter costs clearing its slot and at most a wasted wake-up.
 *
 * The timer is unref'd: what a waiter waits for (a socket) keeps the process alive, not this.
 */
export class Deadlines {
  // A slot array, not a Set: a Set that takes and drops an entry per publish is rehashed every
  // few dozen operations, and the old tables it leaves point at every entry they held (its closure,
  // its publication and message) until a full collection, so each scavenge promoted them. That
  // took an rpc-server's RSS under 64 calls in flight from 73 to 100 MB (see SlotMap).
  private readonly slots: Array<DeadlineEntry | undefined> = [];
  private readonly free: number[] = [];
  private count = 0;
  private timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires (Infinity: not armed). */
  private armedFor = Number.POSITIVE_INFINITY;

  /** Registers `entry`; returns its slot, for {@link remove}. An entry already due expires on the next tick of the timer. */
  add(entry: DeadlineEntry): number {
    const slot = this.free.pop() ?? this.slots.length;
    this.slots[slot] = entry;
    this.count++;
    if (entry.deadline < this.armedFor) this.arm(entry.deadline);
    return slot;
  }

  /** Forgets `entry`, registered at `slot` (it settled before its deadline); nothing if it expired already. */
  remove(slot: number, entry: DeadlineEntry): void {
    // The slot may hold another entry by now: this one expired and its slot was taken again.
    if (this.slots[slot] !== entry) return;
    this.slots[slot] = undefined;
    this.free.push(slot);
    this.count--;
  }

  /** How many waiters are registered. */
  get size(): number {
    return this.count;
  }

  private arm(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.armedFor = at;
    this.timer = setTimeout(() => this.fire(), Math.max(1, at - Date.now()));
    this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    this.armedFor = Number.POSITIVE_INFINITY;
    const now = Date.now();
    let next = Number.POSITIVE_INFINITY;
    const due: DeadlineEntry[] = [];
    for (let i = 0; i < this.slots.length; i++) {
      const e = this.slots[i];
      if (!e) continue;
      if (e.deadline <= now) {
        due.push(e);
        this.remove(i, e);
      } else if (e.deadline < next) next = e.deadline;
    }
    if (next !== Number.POSITIVE_INFINITY) this.arm(next);
    for (const e of due) e.expire();
  }
}
