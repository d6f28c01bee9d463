/**
 * How many `_unique_id`s a receiver remembers to drop duplicates. oslo keeps 16, enough for its
 * immediate redeliveries; hermod resends unconfirmed casts after a reconnect, and their
 * duplicates can arrive after hundreds of other messages.
 */
export const DEDUP_WINDOW = 4096;

/** Remembers the last few ids seen, as oslo's duplicate check does. */
export class DedupRing {
  /** The last `window` ids in a ring: `next` is the oldest slot, overwritten next. */
  private readonly ids: Array<string | undefined>;
  private next = 0;
  private readonly set = new Set<string>();

  constructor(private readonly window = DEDUP_WINDOW) {
    this.ids = new Array<string | undefined>(window).fill(undefined);
  }

  /** True when `id` was recorded recently (a duplicate). */
  seen(id: unknown): boolean {
    return typeof id === 'string' && this.set.has(id);
  }

  /**
   * Records `id`. Listeners record on acknowledge, as oslo does, so a requeued message is not
   * mistaken for a duplicate when it comes back.
   */
  add(id: unknown): void {
    if (typeof id !== 'string' || this.set.has(id)) return;
    const old = this.ids[this.next];
    if (old !== undefined) this.set.delete(old);
    this.ids[this.next] = id;
    this.next = (this.next + 1) % this.window;
    this.set.add(id);
  }
}
