import { createRequire } from 'node:module';
import { heldDeliveries } from './session-buffer.js';

const require = createRequire(import.meta.url);
const FIXED = Symbol.for('hermod.rhea.sequence-numbers');

/** AMQP 1.0 §2.8.7: the longest delivery-tag, in octets. */
export const MAX_DELIVERY_TAG = 32;
const WRAP = 2 ** 32;
const HALF = 2 ** 31;

/** A value read from a peer's uint field: the number, or undefined for anything else. */
function uint(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < WRAP ? v : undefined;
}

/** `n` modulo 2^32 as a uint: JavaScript's `%` keeps the sign, and rhea's encoder throws on a negative uint. */
function wrap(n: number): number {
  return ((Math.trunc(n) % WRAP) + WRAP) % WRAP;
}

type Fields = Record<string, unknown>;
interface FramesModule {
  transfer(fields: Fields): unknown;
  disposition(fields: Fields): unknown;
  flow(fields: Fields): unknown;
  [FIXED]?: boolean;
}
interface Held {
  id: number;
  remote_settled: boolean;
  remote_state: unknown;
  link: { dispatch(name: string, ctx: unknown): void; _context(extra: unknown): unknown };
}
interface Buffer_ {
  by_id(id: number): Held | undefined;
}
interface SideProto {
  deliveries: Buffer_;
  updated: Held[];
  next_delivery_id?: number;
  on_disposition(this: SideProto, fields: Fields): void;
  on_transfer(
    this: SideProto,
    frame: { performative: Fields },
    receiver: { _incomplete?: { id: number }; is_receiver?(): boolean } | undefined,
  ): void;
}
interface LinkProto {
  credit: number;
  delivery_count: number;
  _draining: boolean;
  _drained: boolean;
  is_open(): boolean;
  sendable(): boolean;
  dispatch(name: string, ctx: unknown): void;
  _context(): unknown;
  _get_drain(this: LinkProto): boolean;
  on_flow(this: LinkProto, frame: { performative: Fields }): void;
}

interface OutgoingState {
  next_transfer_id: number;
  remote_next_transfer_id: unknown;
}

/** The number whose low 32 bits are `wire` nearest to `ours` (serial number arithmetic). */
function near(ours: number, wire: number): number {
  const ahead = (wire - ours) >>> 0;
  return ahead < HALF ? ours + ahead : ours - (WRAP - ahead);
}

/** Spans of a disposition walked id by id up to this width; wider ones visit only what is held. */
const WALK_AT_MOST = 4096;

/**
 * Calls `apply` for each delivery of `deliveries` whose id is in the disposition's range
 * [first, last], read as serial numbers (the range may wrap past 2^32 - 1). rhea walks the range
 * id by id: a peer's disposition of 0 to 2^32 - 1 held its event loop for about 48 s.
 */
function inRange(deliveries: Buffer_, fields: Fields, apply: (d: Held) => void): void {
  const first = uint(fields.first);
  if (first === undefined) return;
  const last = uint(fields.last) ?? first;
  const width = (last - first) >>> 0;
  if (width < WALK_AT_MOST) {
    for (let i = 0; i <= width; i++) {
      const d = deliveries.by_id((first + i) % WRAP);
      if (d) apply(d);
    }
    return;
  }
  for (const d of heldDeliveries(deliveries)) if (((d as Held).id - first) >>> 0 <= width) apply(d as Held);
}

/**
 * Works around rhea 3.0.5's unbounded sequence numbers, which a peer could turn into a crash or
 * a frozen event loop with a frame or two (AMQP 1.0 §2.6.7 and §2.7.4: delivery ids and
 * delivery counts are serial numbers that wrap at 2^32).
 *
 * - Written fields: delivery ids, disposition ranges and flow delivery counts are written
 *   modulo 2^32 and link credit within 0..2^32-1 (rhea counts them on without bound, and its
 *   encoder throws on 2^32: a drain flow with delivery-count 2^32-1, then one transfer, made the
 *   router's next flow throw out of its event loop and the process exit).
 * - Read fields: a transfer whose delivery id is the expected one modulo 2^32 is that one (a
 *   peer's ids wrapping after 2^32 deliveries closed the connection); a sender's credit from a
 *   flow is computed in serial arithmetic and kept within 0..link-credit (a receiver's drain
 *   flow with a delivery-count ahead of ours made it negative, and rhea's drain loop, which
 *   counts credit down to zero one by one, then never ended; 2^32 - 1 credit held the loop for
 *   35 s); a drain completes in one step; disposition ranges visit only deliveries held.
 *
 * Counters stay unbounded inside rhea (its comparisons of ids are plain `<`), and session
 * buffers look deliveries up modulo 2^32 (session-buffer.ts). Installed once per process.
 */
export function installSequenceNumbers(): void {
  const frames = require('rhea/lib/frames.js') as FramesModule;
  if (frames[FIXED]) return;
  const { transfer, disposition, flow } = frames;
  frames.transfer = (fields) => {
    if (typeof fields.delivery_id === 'number') fields.delivery_id = wrap(fields.delivery_id);
    return transfer(fields);
  };
  frames.disposition = (fields) => {
    if (typeof fields.first === 'number') fields.first = wrap(fields.first);
    if (typeof fields.last === 'number') fields.last = wrap(fields.last);
    return disposition(fields);
  };
  frames.flow = (fields) => {
    if (typeof fields.delivery_count === 'number') fields.delivery_count = wrap(fields.delivery_count);
    if (typeof fields.link_credit === 'number') fields.link_credit = Math.min(WRAP - 1, Math.max(0, Math.floor(fields.link_credit)));
    return flow(fields);
  };
  frames[FIXED] = true;

  const Session = require('rhea/lib/session.js') as new (
    connection: object,
    channel: number,
  ) => { outgoing: SideProto; incoming: SideProto };
  const s = new Session({}, 0);
  const outgoing = Object.getPrototypeOf(s.outgoing) as SideProto;
  const incoming = Object.getPrototypeOf(s.incoming) as SideProto;

  const unwrap = (require('rhea') as { message: { unwrap_outcome(s: unknown): unknown } }).message.unwrap_outcome;
  // rhea's bodies, with the range walk bounded (see inRange).
  outgoing.on_disposition = function (fields) {
    inRange(this.deliveries, fields, (d) => {
      if (d.remote_settled) return;
      let updated = false;
      if (fields.settled) {
        d.remote_settled = fields.settled as boolean;
        updated = true;
      }
      if (fields.state && fields.state !== d.remote_state) {
        d.remote_state = unwrap(fields.state);
        updated = true;
      }
      if (updated) this.updated.push(d);
    });
  };
  incoming.on_disposition = function (fields) {
    inRange(this.deliveries, fields, (d) => {
      if (d.remote_settled) return;
      if (fields.state && fields.state !== d.remote_state) d.remote_state = unwrap(fields.state);
      if (fields.settled) {
        d.remote_settled = fields.settled as boolean;
        d.link.dispatch('settled', d.link._context({ delivery: d }));
      }
    });
  };
  // The peer's next-incoming-id against our next-outgoing-id, which counts on past 2^32: read
  // near ours, else the transfer window after a wrap was 2^32 short and nothing more was sent.
  for (const name of ['on_begin', 'on_flow'] as const) {
    const original = (outgoing as unknown as Record<string, (this: OutgoingState, fields: Fields) => void>)[name]!;
    (outgoing as unknown as Record<string, (this: OutgoingState, fields: Fields) => void>)[name] = function (fields) {
      original.call(this, fields);
      const wire = uint(this.remote_next_transfer_id);
      if (wire !== undefined) this.remote_next_transfer_id = near(this.next_transfer_id, wire);
    };
  }
  const onTransfer = incoming.on_transfer;
  const { ProtocolError } = require('rhea/lib/errors.js') as { ProtocolError: new (message: string) => Error };
  incoming.on_transfer = function (frame, receiver) {
    const p = frame.performative;
    // A transfer on a link of the peer's that receives (ours sends): rhea read a sender as a
    // receiver and threw "Cannot read properties of undefined (reading 'connection')". Plain
    // errors close the connection with amqp:decode-error and their message.
    if (!receiver?.is_receiver?.()) {
      throw new Error(`transfer on handle ${String(p.handle).slice(0, 20)}, a link on which the peer receives: it may not send there`);
    }
    // AMQP 1.0 §2.7.5: the first transfer of a delivery carries its delivery-id. Without one rhea
    // forwarded a delivery with no id (its disposition went out with first=null) or, with no
    // credit, dropped the socket with no close.
    if (!receiver._incomplete && (p.delivery_id === undefined || p.delivery_id === null)) {
      throw new Error('first transfer of a delivery without a delivery-id (AMQP 1.0 §2.7.5)');
    }
    const id = uint(p.delivery_id);
    // An id encoded as a signed type (int -1) became rhea's count of deliveries, and the
    // disposition written from it later threw out of the event loop: the router exited. rhea
    // closes the connection on a ProtocolError thrown while it reads.
    if (id === undefined && p.delivery_id !== undefined && p.delivery_id !== null) {
      throw new ProtocolError(`transfer with delivery-id ${String(p.delivery_id).slice(0, 40)}, which is not a uint`);
    }
    // AMQP 1.0 §2.8.7: a delivery-tag is at most 32 octets. Each unsettled delivery keeps its tag,
    // and a client pinning deliveries with 60 KB tags took a router to 1.5 GB, outside
    // --max-held-bytes.
    const tag = p.delivery_tag as { length?: unknown } | undefined | null;
    if (tag !== undefined && tag !== null && typeof tag.length === 'number' && tag.length > MAX_DELIVERY_TAG) {
      throw new ProtocolError(`transfer with a delivery-tag of ${tag.length} octets, over AMQP's limit of ${MAX_DELIVERY_TAG}`);
    }
    const expected = receiver._incomplete ? receiver._incomplete.id : this.next_delivery_id;
    // The peer's ids wrapped where ours count on: the expected one it is.
    if (id !== undefined && expected !== undefined && id !== expected && id === expected % WRAP) p.delivery_id = expected;
    onTransfer.call(this, frame, receiver);
  };

  const link = require('rhea/lib/link.js') as { Sender: { prototype: LinkProto }; Receiver: { prototype: LinkProto } };
  const sender = link.Sender.prototype;
  sender.on_flow = function (frame) {
    const f = frame.performative;
    const credit = uint(f.link_credit) ?? 0;
    const theirs = uint(f.delivery_count);
    // Transfers we sent that the receiver had not counted when it wrote the flow; "behind" by
    // more than half the number space means it claims to be ahead of us: no transfer in flight.
    const inFlight = theirs === undefined ? 0 : (this.delivery_count - theirs) % WRAP;
    const behind = inFlight < 0 ? inFlight + WRAP : inFlight;
    this.credit = behind >= HALF ? credit : Math.max(0, credit - behind);
    this._draining = f.drain === true;
    this._drained = this.credit > 0;
    if (this.is_open()) {
      this.dispatch('sender_flow', this._context());
      if (this._draining) this.dispatch('sender_draining', this._context());
      if (this.sendable()) this.dispatch('sendable', this._context());
    }
  };
  sender._get_drain = function () {
    if (!(this._draining && this._drained && this.credit)) return false;
    this.delivery_count += this.credit;
    this.credit = 0;
    return true;
  };
  // rhea's body, with the peer's fields checked (it copied them as they came) and without its
  // console.error for a drain flow with credit, which a peer could repeat at will.
  link.Receiver.prototype.on_flow = function (frame) {
    const f = frame.performative;
    this.dispatch('receiver_flow', this._context());
    if (!f.drain) return;
    this.credit = uint(f.link_credit) ?? 0;
    this.delivery_count = uint(f.delivery_count) ?? this.delivery_count;
    if (this.credit === 0) this.dispatch('receiver_drained', this._context());
  };
}

/**
 * Whether a sending link's peer asked it to drain in its last flow: the same flow also makes
 * the link sendable (rhea dispatches `sender_draining`, then `sendable`), and only a later flow
 * without `drain` is a fresh grant of credit.
 */
export function isDraining(sender: unknown): boolean {
  return (sender as Partial<LinkProto> | undefined)?._draining === true;
}
