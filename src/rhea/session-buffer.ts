import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const FIXED = Symbol.for('hermod.rhea.session-buffer');

/** A delivery as rhea's session buffers keep it. */
interface Held {
  id: number;
}

/**
 * rhea's `CircularBuffer` (lib/session.js): `entries` a ring of `capacity` slots from `head`,
 * `size` the deliveries held; plus what this fix adds to each instance.
 */
interface Ring {
  capacity: number;
  size: number;
  head: number;
  tail: number;
  entries: Array<Held | undefined>;
  /** Slots in use from `head`, freed ones (holes) between held ones included. */
  span?: number;
  /** The id of the delivery at `head` (ids are pushed in order, one apart). */
  headId?: number;
  /** Unsettled deliveries moved out of the ring's front so that it could move on. */
  side?: Map<number, Held> | undefined;
  /** The span at which the next sweep comes. */
  nextSweep?: number;
}
interface BufferProto {
  available(this: Ring): number;
  push(this: Ring, o: Held): void;
  pop_if(this: Ring, f: (d: Held) => boolean): number;
  by_id(this: Ring, id: number): Held | undefined;
  get_head(this: Ring): Held | undefined;
  get_tail(this: Ring): Held | undefined;
  [FIXED]?: boolean;
}

const WRAP = 2 ** 32;

/** Deliveries pushed between two sweeps: a sweep's cost is spread over at least this many. */
const SWEEP_EVERY = 256;
/** Side entries checked at every pass while there are at most this many. */
const SIDE_ALWAYS = 64;

function advance(r: Ring): void {
  r.entries[r.head] = undefined;
  r.head = (r.head + 1) % r.capacity;
  r.span!--;
  r.headId!++;
}

/** Frees the settled deliveries wherever they are in the ring (holes) and in the side map. */
function sweep(r: Ring, f: (d: Held) => boolean): number {
  let count = 0;
  for (let i = 0; i < r.span!; i++) {
    const at = (r.head + i) % r.capacity;
    const d = r.entries[at];
    if (d !== undefined && f(d)) {
      r.entries[at] = undefined;
      count++;
    }
  }
  while (r.span! > 0 && r.entries[r.head] === undefined) advance(r);
  return count + sweepSide(r, f);
}

function sweepSide(r: Ring, f: (d: Held) => boolean): number {
  let count = 0;
  if (r.side === undefined) return 0;
  for (const d of r.side.values()) {
    if (!f(d)) continue;
    r.side.delete(d.id % WRAP);
    count++;
  }
  return count;
}

/** Moves the ring's front (holes skipped, unsettled deliveries to the side map) until `limit` slots are spanned. */
function compact(r: Ring, limit: number): void {
  while (r.span! > limit) {
    const d = r.entries[r.head];
    if (d !== undefined) {
      r.side ??= new Map();
      r.side.set(d.id % WRAP, d);
    }
    advance(r);
  }
}

/**
 * Works around rhea 3.0.5's head-of-line blocking in a session's delivery buffers. Each session
 * keeps its outgoing and incoming deliveries in a 2048-slot circular buffer (`CircularBuffer` in
 * lib/session.js) that frees slots only from its front, once the front delivery is settled. One
 * delivery left unsettled at the front (a request waiting in a router for a busy server, a call
 * abandoned at its timeout, a server's request queued behind its concurrency) kept every later
 * slot taken, settled or not: 2 000 messages later the whole connection stopped, every topic and
 * the replies the process owed its own callers included (on the incoming side, the session's
 * window fell to 0 and the peer could deliver nothing more).
 *
 * This replaces the buffer's methods (its prototype, reached through a throwaway session since
 * rhea does not export the class). The ring stays, and so does the common case: settled
 * deliveries freed from the front at each pass. When the ring's span has grown by
 * {@link SWEEP_EVERY} since the last sweep, settled deliveries are freed wherever they are
 * (holes), and a front that stays pinned is moved out to a side map so that the ring moves on;
 * lookups by id go to the ring, else the side map. `size`, and so the session window and the
 * driver's room to send, count the deliveries not settled. (A map for everything was simpler,
 * and cost the router a fifth of its throughput in allocations.) Installed once per process;
 * later calls do nothing.
 */
export function installSessionBuffers(): void {
  const Session = require('rhea/lib/session.js') as new (connection: object, channel: number) => { outgoing: { deliveries: object } };
  const proto = Object.getPrototypeOf(new Session({}, 0).outgoing.deliveries) as BufferProto;
  if (proto[FIXED]) return;
  proto.available = function () {
    return this.capacity - this.size;
  };
  proto.push = function (o) {
    if (this.size >= this.capacity) throw new Error(`session buffer overflow: size=${this.size} capacity=${this.capacity}`);
    if (this.span === undefined) {
      this.span = 0;
      this.headId = 0;
      this.side = undefined;
      this.nextSweep = SWEEP_EVERY;
    }
    // Full of holes (a burst between two passes): the front goes to the side map.
    if (this.span === this.capacity) compact(this, this.capacity - 1);
    if (this.span === 0) this.headId = o.id;
    this.entries[(this.head + this.span) % this.capacity] = o;
    this.span++;
    this.size++;
    this.tail = (this.head + this.span) % this.capacity;
  };
  proto.pop_if = function (f) {
    if (this.span === undefined) return 0;
    let count = 0;
    while (this.span > 0) {
      const d = this.entries[this.head];
      if (d !== undefined && !f(d)) break;
      if (d !== undefined) count++;
      advance(this);
    }
    const side = this.side?.size ?? 0;
    const room = this.capacity - (this.size - count);
    // Never further than SWEEP_EVERY above the span now, nor past three quarters of the capacity.
    const at = Math.min(this.nextSweep!, this.span + SWEEP_EVERY, Math.max(1, Math.floor((this.capacity * 3) / 4)));
    // Short of room, every pass: nothing more is pushed then, so the span would never reach `at`
    // while deliveries settled behind a pinned front stayed counted (a stall at ~800 unsettled).
    if (this.span >= at || (this.span > 0 && room < SWEEP_EVERY)) {
      count += sweep(this, f);
      if (this.span > this.capacity / 2) compact(this, Math.floor(this.capacity / 4));
      this.nextSweep = this.span + SWEEP_EVERY;
    } else {
      this.nextSweep = at;
      if (side > 0 && (side <= SIDE_ALWAYS || room < SWEEP_EVERY)) count += sweepSide(this, f);
    }
    this.size -= count;
    this.tail = (this.head + this.span) % this.capacity;
    return count;
  };
  // Modulo 2^32: rhea counts ids on without bound, a peer's dispositions name them as written
  // (see sequence-numbers.ts).
  proto.by_id = function (id) {
    if (this.span !== undefined) {
      const gap = (id - this.headId!) >>> 0;
      if (gap < this.span) return this.entries[(this.head + gap) % this.capacity];
    }
    return this.side?.get(id % WRAP);
  };
  proto.get_head = function () {
    for (let i = 0; i < (this.span ?? 0); i++) {
      const d = this.entries[(this.head + i) % this.capacity];
      if (d !== undefined) return d;
    }
    return undefined;
  };
  proto.get_tail = function () {
    for (let i = (this.span ?? 0) - 1; i >= 0; i--) {
      const d = this.entries[(this.head + i) % this.capacity];
      if (d !== undefined) return d;
    }
    return undefined;
  };
  proto[FIXED] = true;
}

/** Every delivery a session buffer holds (ring and side map), for a walk bounded by what is held. */
export function* heldDeliveries(buffer: object): Generator<object> {
  const r = buffer as Ring;
  for (let i = 0; i < (r.span ?? 0); i++) {
    const d = r.entries[(r.head + i) % r.capacity];
    if (d !== undefined) yield d;
  }
  if (r.side) yield* r.side.values();
}
