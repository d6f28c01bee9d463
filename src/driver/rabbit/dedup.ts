import { createHash, randomInt } from 'node:crypto';

/**
 * How many `_unique_id`s a receiver remembers to drop duplicates. oslo keeps 16, enough for its
 * immediate redeliveries; hermod resends unconfirmed casts after a reconnect, and their
 * duplicates can arrive after hundreds of other messages.
 */
export const DEDUP_WINDOW = 4096;

/**
 * Ids of other forms longer than this are remembered by their SHA-256, not as the string: an id
 * is bounded only by the message size, and a window of 16 MiB ids sent by any peer on the broker
 * grew a server past its heap.
 */
export const MAX_KEPT_ID = 128;

/**
 * Lower-case hex digit values by char code, -1 for anything else: a table, not comparisons,
 * since random digits and letters made the comparisons' branches mispredict (180 against 50 ns
 * an id).
 */
const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) HEX[97 + i] = 10 + i;

/**
 * Remembers the last few ids seen, as oslo's duplicate check does.
 *
 * oslo's and hermod's ids are 32 lower-case hex digits (`uuid4().hex`); those are kept as four
 * 32-bit words in typed arrays with an open-addressing index, not as strings in a Set. A
 * Set of strings that keeps taking and dropping entries held every id string (and, through
 * the tables V8 leaves behind on rehash, ids already dropped) in the old generation: each
 * message's id was promoted, and checking and recording one cost a busy server about half a
 * microsecond. Ids of any other form (a foreign peer's) go to a Set beside it; both share one
 * ring, so the window is the last N ids whatever their form.
 */
export class DedupRing {
  /** Ring slot → the id's words (hex ids), 4 per slot. */
  private readonly words: Uint32Array;
  /** Ring slot → its index's home position (hex ids), for eviction. */
  private readonly homes: Int32Array;
  /** Ring slot → a non-hex id, or undefined (a hex id, or empty). */
  private readonly others: Array<string | undefined>;
  /** Ring slot → whether it holds an id. */
  private readonly used: Uint8Array;
  /** Open addressing, linear probing: ring slot + 1, 0 empty. At most half full. */
  private readonly index: Int32Array;
  private readonly mask: number;
  /**
   * Per ring, so that ids a peer picks do not fall on one probe run by design (this is no keyed
   * hash; at worst a lookup walks the window's entries, as a bounded cost).
   */
  private readonly seed = randomInt(0x7fffffff);
  private readonly otherSet = new Set<string>();
  private readonly scratch = new Uint32Array(4);
  /** The id last read into `scratch`, and whether it was hex. */
  private lastId: string | undefined;
  private lastHex = false;
  /** The long id last digested, and its digest. */
  private lastLong: string | undefined;
  private lastDigest = '';
  /** The oldest slot, overwritten next. */
  private next = 0;

  constructor(private readonly window = DEDUP_WINDOW) {
    this.words = new Uint32Array(window * 4);
    this.homes = new Int32Array(window);
    this.others = new Array<string | undefined>(window).fill(undefined);
    this.used = new Uint8Array(window);
    let cap = 8;
    while (cap < window * 2) cap *= 2;
    this.index = new Int32Array(cap);
    this.mask = cap - 1;
  }

  /** True when `id` was recorded recently (a duplicate). */
  seen(id: unknown): boolean {
    if (typeof id !== 'string') return false;
    if (!this.parse(id)) return this.otherSet.has(this.otherKey(id));
    return this.find(this.home()) >= 0;
  }

  /**
   * Records `id`. Listeners record on acknowledge, as oslo does, so a requeued message is not
   * mistaken for a duplicate when it comes back.
   */
  add(raw: unknown): void {
    if (typeof raw !== 'string') return;
    const hex = this.parse(raw);
    const id = hex ? raw : this.otherKey(raw);
    let home = 0;
    if (hex) {
      home = this.home();
      if (this.find(home) >= 0) return;
    } else if (this.otherSet.has(id)) return;
    const slot = this.next;
    this.evict(slot);
    this.used[slot] = 1;
    if (hex) {
      const w = this.words;
      const sc = this.scratch;
      const at = slot * 4;
      w[at] = sc[0]!;
      w[at + 1] = sc[1]!;
      w[at + 2] = sc[2]!;
      w[at + 3] = sc[3]!;
      this.homes[slot] = home;
      let i = home;
      while (this.index[i] !== 0) i = (i + 1) & this.mask;
      this.index[i] = slot + 1;
    } else {
      this.others[slot] = id;
      this.otherSet.add(id);
    }
    this.next = (slot + 1) % this.window;
  }

  /** What the Set keeps for a non-hex id: itself, or the digest of a long one (computed once per id). */
  private otherKey(id: string): string {
    if (id.length <= MAX_KEPT_ID) return id;
    if (id !== this.lastLong) {
      this.lastLong = id;
      this.lastDigest = `sha256:${createHash('sha256').update(id).digest('base64')}`;
    }
    return this.lastDigest;
  }

  /** Reads a 32-digit lower-case hex id into `scratch`; false for any other string. */
  private parse(id: string): boolean {
    // A listener checks an id and records the same one a moment later: parse it once.
    if (id === this.lastId) return this.lastHex;
    this.lastId = id;
    this.lastHex = this.parseNew(id);
    return this.lastHex;
  }

  private parseNew(id: string): boolean {
    if (id.length !== 32) return false;
    const s = this.scratch;
    // Any -1 sets the sign bit of `bad`; checked once at the end.
    let bad = 0;
    for (let w = 0; w < 4; w++) {
      let v = 0;
      for (let i = w * 8, end = i + 8; i < end; i++) {
        const c = id.charCodeAt(i);
        const d = c < 128 ? HEX[c]! : -1;
        bad |= d;
        v = (v << 4) | (d & 15);
      }
      s[w] = v;
    }
    return bad >= 0;
  }

  /** The index position `scratch`'s id starts probing from. */
  private home(): number {
    const s = this.scratch;
    let h = Math.imul(s[0]! ^ this.seed, 0x85ebca6b);
    h = Math.imul(h ^ s[1]! ^ (h >>> 13), 0xc2b2ae35);
    h = Math.imul(h ^ s[2]! ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ s[3]! ^ (h >>> 13), 0xc2b2ae35);
    return (h ^ (h >>> 16)) & this.mask;
  }

  /** The index position holding `scratch`'s id, or -1. */
  private find(home: number): number {
    const s = this.scratch;
    const words = this.words;
    for (let i = home; ; i = (i + 1) & this.mask) {
      const e = this.index[i]!;
      if (e === 0) return -1;
      const at = (e - 1) * 4;
      if (words[at] === s[0] && words[at + 1] === s[1] && words[at + 2] === s[2] && words[at + 3] === s[3]) return i;
    }
  }

  /** Forgets what ring `slot` holds. */
  private evict(slot: number): void {
    if (!this.used[slot]) return;
    this.used[slot] = 0;
    const other = this.others[slot];
    if (other !== undefined) {
      this.others[slot] = undefined;
      this.otherSet.delete(other);
      return;
    }
    const mask = this.mask;
    const index = this.index;
    let i = this.homes[slot]!;
    while (index[i] !== slot + 1) i = (i + 1) & mask;
    // Backward-shift deletion: later entries of the probe run move up into the hole unless their
    // home lies cyclically after it, so a lookup never stops early at an empty position.
    for (let j = (i + 1) & mask; index[j] !== 0; j = (j + 1) & mask) {
      const k = this.homes[index[j]! - 1]!;
      const stays = i <= j ? i < k && k <= j : i < k || k <= j;
      if (!stays) {
        index[i] = index[j]!;
        i = j;
      }
    }
    index[i] = 0;
  }
}
