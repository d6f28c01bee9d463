import type { AmqpError, EventContext, Receiver, Sender } from 'rhea';
import {
  isDraining,
  markPresettled,
  type OutcomeKind,
  type RemoteOutcome,
  rawBytes,
  remoteOutcome,
  remoteSettled,
  type ScannedMessage,
  settleLocally,
  withTtl,
} from '../rhea/index.js';
import {
  type Address,
  type AddressTable,
  type Consumer,
  canSend,
  type Item,
  outstanding,
  type SlottedDelivery,
  targetAddress,
  UNSETTLED_SLOT,
} from './addresses.js';

/** Counters kept by the {@link Forwarder}. */
export interface ForwardCounters {
  forwarded: number;
  released: number;
  rejected: number;
  /**
   * Messages (or multicast copies) not queued: for a receiver whose multicast backlog was full, or
   * presettled ones past the router's held-bytes budget (unsettled ones are `released` instead).
   */
  dropped: number;
  /**
   * Messages (or multicast copies) whose header ttl ran out while they waited for a receiver's
   * credit: not forwarded; an unsettled one is settled `rejected` ({@link EXPIRED}).
   */
  expired: number;
}

/**
 * The error condition of a message the router settles `rejected` because its ttl ran out while
 * it waited for receiver credit. `rejected`, not `released` or `modified`: hermod's and oslo's
 * senders resend a released message (hermod a modified one too) while their deadline allows, and
 * a sender that keeps no deadline of its own would resend it for ever; its ttl says nobody wants
 * it any more.
 */
export const EXPIRED = 'hermod:ttl-expired';

/**
 * How often messages that carry a ttl and wait for receiver credit are checked for one that ran
 * out (only while some wait): one that did is also dropped when its receiver grants credit, so
 * this only frees what they hold (their sender's credit, the held-bytes budget, a multicast
 * receiver's backlog) from a receiver that grants none for a long time.
 */
export const EXPIRY_SWEEP_MS = 1000;

/** Bounds on what the router holds for receivers that have no credit for it. */
export interface HoldLimits {
  /** Multicast copies queued per receiver at most, and their bytes. */
  multicastMessages: number;
  multicastBytes: number;
  /** Bytes of messages waiting for receiver credit, over all receivers (a multicast message counted once). */
  heldBytes: number;
}

const UNBOUNDED: HoldLimits = {
  multicastMessages: Number.POSITIVE_INFINITY,
  multicastBytes: Number.POSITIVE_INFINITY,
  heldBytes: Number.POSITIVE_INFINITY,
};

/** How the sender of a message is settled: an outcome, with the error or flags it carries. */
interface Settlement {
  error?: AmqpError;
  deliveryFailed?: boolean;
  undeliverableHere?: boolean;
}

/**
 * Moves messages from sending links to receiving links with Dispatch Router's semantics:
 * balanced anycast (each message queued for the receiver with the fewest outstanding) with
 * credit that comes back only as messages move on, multicast to every receiver, settlement
 * mode kept end to end, outcomes passed back to senders, `released` at once where nobody can
 * take a message, and a vanished receiver's messages handed back to their senders.
 */
export class Forwarder {
  readonly counters: ForwardCounters = { forwarded: 0, released: 0, rejected: 0, dropped: 0, expired: 0 };
  /** Bytes of the messages in every backlog, a multicast message once. */
  private held = 0;
  /** Consumers told about once per episode of a full multicast backlog (see `notify`). */
  private readonly slow = new WeakSet<Consumer>();
  /** Whether the held-bytes budget was reached and not yet relieved (said once per episode). */
  private overBudget = false;
  /** Backlog entries of messages that carry a ttl (a multicast message once per copy). */
  private expiring = 0;
  /** Runs {@link sweep} while `expiring` is above 0. */
  private sweeper: NodeJS.Timeout | undefined;

  /**
   * @param limits what may wait for receiver credit. An anycast sender's credit comes back only as
   *   its messages move on, but a window of large messages is still a lot (250 of 16 MiB is 4 GB
   *   for one link): the held-bytes budget bounds all of them together. A multicast sender gets
   *   its credit back at once (one slow receiver must not stop a fanout to the others), so its
   *   per-receiver bound is what stops a receiver that never grants credit.
   * @param notify said once when a receiver's multicast backlog fills (`slow`), again after it
   *   has drained; and once when the held-bytes budget is reached (`budget`), again after it was
   *   relieved
   */
  constructor(
    private readonly table: AddressTable,
    private readonly maxMessageSize: number,
    private readonly limits: HoldLimits = UNBOUNDED,
    private readonly notify: (
      e:
        | { kind: 'slow'; consumer: Consumer }
        | { kind: 'budget'; held: number }
        | { kind: 'oversize'; item: Item; bytes: number }
        | { kind: 'expired'; item: Item; consumer: Consumer; heldMs: number },
    ) => void = () => {},
  ) {}

  /** Bytes of the messages waiting for receiver credit. */
  get heldBytes(): number {
    return this.held;
  }

  /** Whether a multicast copy of `item` would take `c`'s backlog past its bound (one message always fits). */
  private full(c: Consumer, item: Item): boolean {
    if (c.backlog.length === 0) return false;
    return c.backlog.length >= this.limits.multicastMessages || c.backlogBytes + item.size > this.limits.multicastBytes;
  }

  /**
   * Hands `item` to `c`: at once when it has credit and nothing queued, else into its backlog
   * if the held-bytes budget allows. False when it was not taken (over the budget).
   */
  private route(c: Consumer, item: Item): boolean {
    if (c.backlog.length === 0 && canSend(c)) {
      this.forward(c, item);
      return true;
    }
    if (!item.copies && this.held + item.size > this.limits.heldBytes) {
      if (!this.overBudget) {
        this.overBudget = true;
        this.notify({ kind: 'budget', held: this.held });
      }
      return false;
    }
    c.backlog.push(item);
    c.backlogBytes += item.size;
    item.copies = (item.copies ?? 0) + 1;
    if (item.copies === 1) this.held += item.size;
    // Counted from arrival, which was this very turn: only a message that has to wait pays for the clock.
    if (item.ttl !== undefined) item.expires ??= performance.now() + item.ttl;
    if (item.expires !== undefined && this.expiring++ === 0 && !this.sweeper) {
      this.sweeper = setInterval(() => this.sweep(), EXPIRY_SWEEP_MS);
      this.sweeper.unref();
    }
    this.drain(c.sender);
    return true;
  }

  /** `item` left `c`'s backlog (forwarded, released or dropped with it). */
  private unqueued(c: Consumer, item: Item): void {
    if (item.expires !== undefined) this.expiring--;
    c.backlogBytes -= item.size;
    item.copies = (item.copies ?? 1) - 1;
    if (item.copies === 0) this.held -= item.size;
    // Relieved once half the budget is free again: one line per episode, not one per message.
    if (this.overBudget && this.held <= this.limits.heldBytes / 2) this.overBudget = false;
  }

  /** A receiving client attached: producers of its address get credit. */
  onConsumer(sender: Sender): void {
    const a = this.table.attachConsumer(sender);
    if (!a) return;
    for (const p of a.producers) this.table.topUp(p);
  }

  /** A sending client attached. */
  onProducer(receiver: Receiver): void {
    this.table.attachProducer(receiver);
  }

  onMessage(ctx: EventContext): void {
    const receiver = ctx.receiver!;
    const delivery = ctx.delivery!;
    const message = ctx.message!;
    const raw = rawBytes(message);
    const settled = remoteSettled(delivery);
    const item: Item = { message, inbound: settled ? undefined : delivery, from: receiver, presettled: settled, size: raw?.length ?? 0 };
    // AMQP 1.0 §3.2.1: a ttl counts from the message's arrival at an intermediary (see route).
    // proton sends 0 for none.
    const ttl = message.ttl;
    if (typeof ttl === 'number' && ttl > 0) item.ttl = ttl;
    // rhea frees a session's incoming slot only for deliveries settled locally, even presettled
    // ones: without this, 2048 presettled messages (casts, replies) would close the session's
    // window for good.
    if (settled) settleLocally(delivery);
    if (raw && raw.length > this.maxMessageSize) {
      this.counters.rejected++;
      // A presettled message (a reply, a presettled cast) has no outcome to carry the refusal:
      // without a line it vanished and its call waited out its timeout with no trace anywhere.
      if (settled) this.notify({ kind: 'oversize', item, bytes: raw.length });
      this.settleInbound(item, 'rejected', {
        error: {
          condition: 'amqp:link:message-size-exceeded',
          description: `message of ${raw.length} bytes exceeds ${this.maxMessageSize}`,
        },
      });
      return;
    }
    const name = targetAddress(receiver) ?? message.to;
    const a = name ? this.table.get(name) : undefined;
    if (!a?.consumers.some((c) => !c.drained)) {
      // Nobody to take it: hand it back at once so the sender can retry or fail fast.
      this.counters.released++;
      this.settleInbound(item, 'released');
      this.table.topUp(receiver);
      return;
    }
    if (a.multicast) {
      const open = a.consumers.filter((c) => !c.drained);
      item.remaining = open.length;
      let queued = 0;
      for (const c of open) {
        const full = this.full(c, item);
        if (full && !this.slow.has(c)) {
          this.slow.add(c);
          this.notify({ kind: 'slow', consumer: c });
        }
        // Its copy is dropped, as Dispatch drops multicast for a receiver that cannot keep up:
        // the other receivers still get theirs.
        if (full || !this.route(c, item)) {
          this.counters.dropped++;
          item.remaining--;
          continue;
        }
        queued++;
      }
      // Nobody could take a copy: as when nobody listens, the sender hears `released` (a presettled
      // message's copies were counted as dropped above).
      if (queued === 0 && item.inbound) this.release(item);
      this.table.topUp(receiver);
    } else {
      // Balanced anycast, as Dispatch: the message is routed now to the receiver with the fewest
      // messages outstanding and waits in that link's queue for its credit; anycast credit
      // comes back to the sender only as messages move on, so a slow receiver pushes back.
      const c = this.pick(a);
      if (!this.route(c, item)) {
        // Past the held-bytes budget: handed back (or, presettled, dropped) instead of held.
        this.release(item);
        this.table.topUp(receiver);
      }
    }
  }

  /** `item` goes back to its sender `released`; a presettled one, which cannot be, is dropped. */
  private release(item: Item): void {
    if (item.inbound) {
      this.counters.released++;
      this.settleInbound(item, 'released');
    } else if (item.presettled) {
      this.counters.dropped++;
    }
  }

  /**
   * The consumer with the fewest messages outstanding among those with credit (round-robin among
   * equals), else among those that have granted credit before, else among all; drained ones are
   * passed over. A receiver that never grants any (a stopping server's links re-attached after a
   * router restart) had the fewest outstanding and held half the calls until it went.
   */
  private pick(a: Address): Consumer {
    const n = a.consumers.length;
    let bestAt = a.next % n;
    for (let i = 0; i < n && a.consumers[bestAt]!.drained; i++) bestAt = (a.next + i + 1) % n;
    let best = a.consumers[bestAt]!;
    let bestScore = score(best);
    for (let i = 1; i < n && bestScore > 0; i++) {
      const at = (a.next + i) % n;
      const c = a.consumers[at]!;
      if (c.drained) continue;
      const sc = score(c);
      if (sc < bestScore) {
        best = c;
        bestAt = at;
        bestScore = sc;
      }
    }
    a.next = (bestAt + 1) % n;
    return best;
  }

  /** A connection's socket took what was written to it: the queues of its receiving links go out. */
  drainConnection(conn: unknown): void {
    for (const c of this.table.consumersOf(conn)) this.drain(c.sender);
  }

  /** A receiving link got credit (or a message was queued for it): its queue goes out. */
  drain(sender: Sender): void {
    const c = this.table.consumer(sender);
    if (!c) return;
    // The flow that asked for the drain makes the link sendable too, before rhea zeroes its
    // credit: clearing `drained` then routed new calls to a stopping server, where they waited
    // for its stop to end (or for their callers' timeout). Only a fresh grant brings it back.
    if (c.drained && canSend(c) && !isDraining(sender)) c.drained = false;
    if (!c.granted && canSend(c)) c.granted = true;
    while (c.backlog.length > 0 && canSend(c)) {
      const item = c.backlog.shift()!;
      this.unqueued(c, item);
      const now = item.expires === undefined ? 0 : performance.now();
      // A call whose caller gave up while it waited here must not run, nor hold up those behind it.
      if (item.expires !== undefined && item.expires <= now) this.expire(c, item, now);
      else this.forward(c, item);
    }
    if (c.backlog.length === 0) this.slow.delete(c);
  }

  /**
   * Drops the messages whose ttl ran out from every backlog, so that what they hold (their
   * sender's credit, the held-bytes budget, room in a multicast backlog) is freed while their
   * receiver grants no credit: a peer sending messages with a 1 ms ttl to a busy receiver
   * otherwise kept a full window of dead messages there.
   */
  private sweep(): void {
    const now = performance.now();
    for (const c of this.table.everyConsumer()) {
      if (c.backlog.length === 0) continue;
      const expired: Item[] = [];
      let kept = 0;
      for (const item of c.backlog) {
        if (item.expires !== undefined && item.expires <= now) expired.push(item);
        else c.backlog[kept++] = item;
      }
      if (expired.length === 0) continue;
      c.backlog.length = kept;
      for (const item of expired) {
        this.unqueued(c, item);
        this.expire(c, item, now);
      }
      if (kept === 0) this.slow.delete(c);
    }
    if (this.expiring === 0) this.stop();
  }

  /** Stops the expiry sweep (the router stops; it starts again with the next message held with a ttl). */
  stop(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  /** `item`, taken out of `c`'s backlog, outlived its ttl there: counted, settled back, not forwarded. */
  private expire(c: Consumer, item: Item, now: number): void {
    this.counters.expired++;
    this.notify({ kind: 'expired', item, consumer: c, heldMs: now - (item.expires! - item.ttl!) });
    if (item.remaining !== undefined) {
      if (--item.remaining === 0) this.settleInbound(item, 'accepted');
      return;
    }
    this.settleInbound(item, 'rejected', {
      error: {
        condition: EXPIRED,
        description: `its ttl of ${item.ttl} ms ran out while the router held it for a receiver without credit`,
      },
    });
    // Anycast credit comes back as a message leaves a queue, forwarded or not.
    this.table.topUp(item.from);
  }

  private forward(c: Consumer, item: Item): void {
    let raw = rawBytes(item.message);
    // AMQP 1.0 §3.2.1: an intermediary passes on what is left of a ttl, so that the receiver (a
    // server holding requests behind its concurrency) counts from the sender's deadline, not
    // from its own receipt. Only a message that waited here is copied for it.
    const at = (item.message as ScannedMessage).ttlAt;
    if (raw && item.expires !== undefined && at !== undefined) {
      const left = Math.ceil(item.expires - performance.now());
      if (left < item.ttl!) raw = withTtl(raw, at, Math.max(1, left));
    }
    const out = raw ? c.sender.send(raw, undefined, 0) : c.sender.send(item.message);
    this.counters.forwarded++;
    c.sent++;
    // Settlement mode is kept end to end: presettled in, presettled out, with no outcome.
    if (item.presettled) markPresettled(out);
    else (out as SlottedDelivery)[UNSETTLED_SLOT] = c.unsettled.add({ out, item });
    if (item.remaining === undefined) this.table.topUp(item.from);
  }

  /** A receiver settled a message we forwarded: its sender hears the same outcome. */
  onOutcome(ctx: EventContext, outcome: OutcomeKind): void {
    const c = this.table.consumer(ctx.sender!);
    const delivery = ctx.delivery! as SlottedDelivery;
    const slot = delivery[UNSETTLED_SLOT];
    if (!c || slot === undefined) return;
    const entry = c.unsettled.get(slot);
    if (!entry || entry.out !== delivery) return;
    c.unsettled.remove(slot);
    delivery[UNSETTLED_SLOT] = undefined;
    const item = entry.item;
    const state = remoteOutcome(delivery);
    if (item.remaining !== undefined) {
      // Multicast: the sender hears once, after every copy is settled.
      if (--item.remaining === 0) this.settleInbound(item, 'accepted');
      return;
    }
    this.settleInbound(item, outcome, settlementOf(state));
  }

  private settleInbound(item: Item, outcome: OutcomeKind, detail: Settlement = {}): void {
    const d = item.inbound;
    if (!d) return;
    item.inbound = undefined;
    try {
      if (outcome === 'accepted') d.accept();
      else if (outcome === 'released') d.release();
      else if (outcome === 'rejected') d.reject(detail.error);
      else d.modified({ delivery_failed: detail.deliveryFailed ?? true, undeliverable_here: detail.undeliverableHere ?? false });
    } catch {
      // The sender's link is gone; nothing to tell it.
    }
  }

  /**
   * A receiving client asked to drain its credit (an RPC server that is stopping does): what its
   * credit allows goes out first, as a drain asks; the messages still queued for it go back to
   * their senders as `released` (they resend, and the address's other receivers get them), and
   * it is passed over by routing until it grants credit again.
   */
  onDraining(sender: Sender): void {
    const c = this.table.consumer(sender);
    if (!c) return;
    this.drain(sender);
    c.drained = true;
    this.releaseBacklog(c);
    sender.set_drained(true);
  }

  /** Messages queued for `c` and not yet forwarded go back to their senders. */
  private releaseBacklog(c: Consumer): void {
    for (const item of c.backlog.splice(0)) {
      this.unqueued(c, item);
      if (item.remaining !== undefined) {
        if (--item.remaining === 0) this.settleInbound(item, 'accepted');
        continue;
      }
      if (item.inbound) {
        this.counters.released++;
        this.settleInbound(item, 'released');
      }
      // Anycast credit comes back as a message leaves a queue, forwarded or not.
      this.table.topUp(item.from);
    }
  }

  /** A receiving link closed or its connection dropped. */
  dropConsumer(sender: Sender): void {
    const c = this.table.consumer(sender);
    if (!c) return;
    const a = this.table.detachConsumer(c);
    // Delivered but unsettled: the receiver may have seen them, so tell the sender "modified,
    // delivery failed"; queued for it only: released. Same as Dispatch Router, which offers
    // neither to another receiver: the sender decides whether to resend.
    // rhea records a disposition at once but raises its event only on its next processing pass,
    // while a detach in the same read is handled immediately: an outcome the receiver already
    // sent must win over "vanished", or an accepted message would be delivered twice.
    for (const { out, item } of c.unsettled.values()) {
      const known = remoteOutcome(out);
      if (item.remaining !== undefined) {
        if (--item.remaining === 0) this.settleInbound(item, 'accepted');
      } else if (known) {
        this.settleInbound(item, known.kind, settlementOf(known));
      } else {
        this.settleInbound(item, 'modified', { deliveryFailed: true, undeliverableHere: false });
      }
    }
    c.unsettled.clear();
    this.releaseBacklog(c);
    if (a) this.table.gc(a);
  }

  /** A sending link closed or its connection dropped. */
  dropProducer(receiver: Receiver): void {
    this.table.detachProducer(receiver);
  }
}

/** What a receiver's outcome tells the sender: a rejection's error, a modification's flags. */
function settlementOf(o: RemoteOutcome | undefined): Settlement {
  if (!o) return {};
  const s: Settlement = {};
  if (o.error) s.error = o.error;
  if (o.deliveryFailed !== undefined) s.deliveryFailed = o.deliveryFailed;
  if (o.undeliverableHere !== undefined) s.undeliverableHere = o.undeliverableHere;
  return s;
}

/**
 * What {@link Forwarder.pick} minimises: messages outstanding, behind any receiver with credit,
 * and behind any that has granted credit before when none has any now.
 */
function score(c: Consumer): number {
  if (canSend(c)) return outstanding(c);
  return (c.granted ? NO_CREDIT : NEVER_GRANTED) + outstanding(c);
}

/** Puts a receiver without credit behind every one with some. */
const NO_CREDIT = 2 ** 40;
/** And one that has never granted any behind those too. */
const NEVER_GRANTED = 2 ** 41;
