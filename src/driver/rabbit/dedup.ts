/**
 * How many `_unique_id`s a receiver remembers to drop duplicates. oslo keeps 16, enough for its
 * immediate redeliveries; hermod resends unconfirmed casts after a reconnect, and their
 * duplicates can arrive after hundreds of other messages.
 */
export const DEDUP_WINDOW = 4096;

/** Remembers the last few ids seen, as oslo's duplicate check does. */
export class DedupRing {
  constructor(private readonly window = DEDUP_WINDOW) {}

  private readonly ids: string[] = [];
  private readonly set = new Set<string>();
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
    this.ids.push(id);
    this.set.add(id);
    if (this.ids.length > this.window) this.set.delete(this.ids.shift()!);
  }
}
