/**
 * Short-lived values in a long-lived list, for the same reason as {@link SlotMap}: `add`
 * returns the value's slot, and `remove(slot)` clears it at once. Values may not be undefined.
 */
export class SlotList<V> {
  private readonly slots: Array<V | undefined> = [];
  private readonly free: number[] = [];
  private count = 0;

  /** Values held. */
  get size(): number {
    return this.count;
  }

  add(value: V): number {
    const slot = this.free.pop() ?? this.slots.length;
    this.slots[slot] = value;
    this.count++;
    return slot;
  }

  /** The value in `slot`, undefined once it was removed. */
  get(slot: number): V | undefined {
    return this.slots[slot];
  }

  /** Replaces the value in a slot that holds one. */
  set(slot: number, value: V): void {
    if (this.slots[slot] !== undefined) this.slots[slot] = value;
  }

  /** Clears `slot`; a slot already cleared is left alone. */
  remove(slot: number): void {
    if (this.slots[slot] === undefined) return;
    this.slots[slot] = undefined;
    this.free.push(slot);
    this.count--;
  }

  /** The values held now: a copy, so the caller may remove while walking it. */
  values(): V[] {
    return this.slots.filter((v): v is V => v !== undefined);
  }

  clear(): void {
    for (let i = 0; i < this.slots.length; i++) this.remove(i);
  }
}

/**
 * A map for short-lived entries in a long-lived table: the calls waiting for replies, the
 * requests a server runs. Values sit in a slot array that a delete clears at once; the key
 * index holds slot numbers only.
 *
 * Why not a plain Map: V8 rehashes a Map or Set that keeps taking and dropping entries every
 * few dozen operations, and the table it leaves behind still points at every value it held
 * (and at the next table) until a full mark-compact. Once such a table is in the old
 * generation, each scavenge takes those pointers as roots: every value that went through the
 * Map (a pending call's promise and everything its continuation holds, a request and its
 * message) survives twice and is promoted. A busy client or server promoted about 2 KB per
 * call this way, which grew its young generation to the maximum and its old space with
 * garbage. Here the old tables hold keys and small integers, and a deleted value is
 * unreachable at once.
 */
export class SlotMap<K, V> {
  private readonly index = new Map<K, number>();
  private readonly values = new SlotList<V>();

  /** Entries held. */
  get size(): number {
    return this.index.size;
  }

  has(key: K): boolean {
    return this.index.has(key);
  }

  get(key: K): V | undefined {
    const slot = this.index.get(key);
    return slot === undefined ? undefined : this.values.get(slot);
  }

  set(key: K, value: V): this {
    const slot = this.index.get(key);
    if (slot === undefined) this.index.set(key, this.values.add(value));
    else this.values.set(slot, value);
    return this;
  }

  /** Removes `key`'s entry and returns its value (undefined when there was none). */
  take(key: K): V | undefined {
    const slot = this.index.get(key);
    if (slot === undefined) return undefined;
    const value = this.values.get(slot);
    this.index.delete(key);
    this.values.remove(slot);
    return value;
  }

  delete(key: K): boolean {
    if (!this.index.has(key)) return false;
    this.take(key);
    return true;
  }

  /** The keys held now, in no particular order: a copy, so the caller may delete while walking it. */
  keys(): K[] {
    return [...this.index.keys()];
  }

  /** The entries held now, in no particular order: a copy, so the caller may delete while walking it. */
  entries(): Array<[K, V]> {
    const out: Array<[K, V]> = [];
    for (const [key, slot] of this.index) out.push([key, this.values.get(slot)!]);
    return out;
  }
}
