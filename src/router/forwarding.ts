import type { AmqpError, EventContext, Receiver, Sender } from 'rhea';
import {
  markPresettled,
  type OutcomeKind,
  type RemoteOutcome,
  rawBytes,
  remoteOutcome,
  remoteSettled,
  settleLocally,
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
  /** Multicast copies not queued for a receiver that already had a full backlog (it grants no credit). */
  dropped: number;
}

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
  readonly counters: ForwardCounters = { forwarded: 0, released: 0, rejected: 0, dropped: 0 };
  /** Consumers told about once per episode of a full multicast backlog (see {@link onSlow}). */
  private readonly slow = new WeakSet<Consumer>();

  /**
   * @param backlog multicast copies (and their bytes) queued per receiver at most: a multicast
   *   sender gets its credit back at once (one slow receiver must not stop a fanout to the
   *   others), so only this bounds what a receiver that never grants credit makes the router hold
   * @param onSlow said once when a receiver's backlog fills, again after it has drained
   */
  constructor(
    private readonly table: AddressTable,
    private readonly maxMessageSize: number,
    private readonly backlog: { messages: number; bytes: number } = { messages: Number.POSITIVE_INFINITY, bytes: Number.POSITIVE_INFINITY },
    private readonly onSlow: (c: Consumer) => void = () => {},
  ) {}

  /** Whether a multicast copy of `item` would take `c`'s backlog past its bound (one message always fits). */
  private full(c: Consumer, item: Item): boolean {
    if (c.backlog.length === 0) return false;
    return c.backlog.length >= this.backlog.messages || c.backlogBytes + item.size > this.backlog.bytes;
  }

  private queue(c: Consumer, item: Item): void {
    c.backlog.push(item);
    c.backlogBytes += item.size;
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
    // rhea frees a session's incoming slot only for deliveries settled locally, even presettled
    // ones: without this, 2048 presettled messages (casts, replies) would close the session's
    // window for good.
    if (settled) settleLocally(delivery);
    if (raw && raw.length > this.maxMessageSize) {
      this.counters.rejected++;
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
        if (this.full(c, item)) {
          // Its copy is dropped, as Dispatch drops multicast for a receiver that cannot keep up:
          // the other receivers still get theirs.
          this.counters.dropped++;
          item.remaining--;
          if (!this.slow.has(c)) {
            this.slow.add(c);
            this.onSlow(c);
          }
          continue;
        }
        queued++;
        this.queue(c, item);
        this.drain(c.sender);
      }
      // Nobody could take a copy: as when nobody listens, the sender hears `released`.
      if (queued === 0) {
        this.counters.released++;
        this.settleInbound(item, 'released');
      }
      this.table.topUp(receiver);
    } else {
      // Balanced anycast, as Dispatch: the message is routed now to the receiver with the fewest
      // messages outstanding and waits in that link's queue for its credit; anycast credit
      // comes back to the sender only as messages move on, so a slow receiver pushes back.
      const c = this.pick(a);
      this.queue(c, item);
      this.drain(c.sender);
    }
  }

  /** The consumer with the fewest messages outstanding, round-robin among equals; drained ones are passed over. */
  private pick(a: Address): Consumer {
    const n = a.consumers.length;
    let bestAt = a.next % n;
    for (let i = 0; i < n && a.consumers[bestAt]!.drained; i++) bestAt = (a.next + i + 1) % n;
    let best = a.consumers[bestAt]!;
    for (let i = 1; i < n && outstanding(best) > 0; i++) {
      const at = (a.next + i) % n;
      const c = a.consumers[at]!;
      if (!c.drained && outstanding(c) < outstanding(best)) {
        best = c;
        bestAt = at;
      }
    }
    a.next = (bestAt + 1) % n;
    return best;
  }

  /** A receiving link got credit (or a message was queued for it): its queue goes out. */
  drain(sender: Sender): void {
    const c = this.table.consumer(sender);
    if (!c) return;
    if (c.drained && canSend(c)) c.drained = false;
    while (c.backlog.length > 0 && canSend(c)) {
      const item = c.backlog.shift()!;
      c.backlogBytes -= item.size;
      this.forward(c, item);
    }
    if (c.backlog.length === 0) this.slow.delete(c);
  }

  private forward(c: Consumer, item: Item): void {
    const raw = rawBytes(item.message);
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
    c.backlogBytes = 0;
    for (const item of c.backlog.splice(0)) {
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
