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
 * removed waiter costs one Set delete and at most a wasted wake-up.
 *
 * The timer is unref'd: what a waiter waits for (a socket) keeps the process alive, not this.
 */
export class Deadlines {
  private readonly entries = new Set<DeadlineEntry>();
  private timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires (Infinity: not armed). */
  private armedFor = Number.POSITIVE_INFINITY;

  /** Registers `entry`; returns it, for {@link remove}. An entry already due expires on the next tick of the timer. */
  add(entry: DeadlineEntry): DeadlineEntry {
    this.entries.add(entry);
    if (entry.deadline < this.armedFor) this.arm(entry.deadline);
    return entry;
  }

  /** Forgets `entry` (it settled before its deadline). */
  remove(entry: DeadlineEntry): void {
    this.entries.delete(entry);
  }

  /** How many waiters are registered. */
  get size(): number {
    return this.entries.size;
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
    for (const e of this.entries) {
      if (e.deadline <= now) due.push(e);
      else if (e.deadline < next) next = e.deadline;
    }
    for (const e of due) this.entries.delete(e);
    if (next !== Number.POSITIVE_INFINITY) this.arm(next);
    for (const e of due) e.expire();
  }
}
