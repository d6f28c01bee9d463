import { randomUUID } from 'node:crypto';
import type { Delivery, Message, Receiver, Sender, Source, TerminusOptions } from 'rhea';
import { SlotList } from '../core/slot-map.js';
import { attachPending, deliveryCount, linkCredit, socketOf } from '../rhea/index.js';

/** One message on its way through the router. */
export interface Item {
  message: Message;
  /** The sender's delivery; undefined once settled back. */
  inbound: Delivery | undefined;
  /** Inbound link, to return credit. */
  from: Receiver;
  /** The sender settled it before sending (presettled): forwarded presettled, no outcome. */
  presettled: boolean;
  /** Multicast: copies not yet settled downstream. */
  remaining?: number;
  /** Encoded size in bytes (0 when unknown), for the multicast backlog's bound and the held-bytes budget. */
  size: number;
  /** Backlogs holding it now (a multicast message is held once, whatever its copies). */
  copies?: number;
  /** The header's ttl (ms), when it has one: past it, the router no longer forwards the message. */
  ttl?: number;
  /**
   * When `ttl` runs out, on `performance.now()`'s clock, counted from the message's arrival; set
   * when it first has to wait (in the turn it arrived), undefined for one forwarded at once.
   */
  expires?: number;
}

/** A receiving client's link (our sender) on one address. */
export interface Consumer {
  sender: Sender;
  /** Transfers handed to rhea on this link; rhea spends credit only when it writes them. */
  sent: number;
  address: string;
  /** Messages routed to this link and waiting for its credit (Dispatch's per-link queue). */
  backlog: Item[];
  /** The bytes of `backlog`'s messages. */
  backlogBytes: number;
  /**
   * Forwarded and not yet settled by the receiver; each outbound delivery carries its slot
   * ({@link UNSETTLED_SLOT}). A slot list, not a Map by delivery: a Map with an entry in and out
   * per message kept every delivery and its message reachable for the scavenger until a full
   * GC (see SlotMap), and the router promoted about 1.4 MB per young collection.
   */
  unsettled: SlotList<Unsettled>;
  /**
   * The receiver drained its credit (a stopping server does) and has granted none since: no
   * new message is routed to it until it grants credit again.
   */
  drained: boolean;
  /** It has granted credit since it attached: one that never has is the last choice of routing. */
  granted: boolean;
}

/** A message forwarded to a consumer, until the consumer settles it. */
export interface Unsettled {
  out: Delivery;
  item: Item;
}

/** Where an outbound delivery keeps its slot in its consumer's `unsettled`. */
export const UNSETTLED_SLOT = Symbol('hermod.router.unsettled');
export type SlottedDelivery = Delivery & { [UNSETTLED_SLOT]?: number | undefined };

/** Messages routed to a consumer and not yet settled by it: what balanced anycast evens out. */
export const outstanding = (c: Consumer) => c.backlog.length + c.unsettled.size;

/** An address with its receivers (consumers) and senders (producers). */
export interface Address {
  name: string;
  multicast: boolean;
  consumers: Consumer[];
  producers: Set<Receiver>;
  /** Round-robin position among the consumers (breaks ties of outstanding counts). */
  next: number;
}

/**
 * The first `anycast`, `unicast` or `multicast` segment of a routable address: oslo's
 * `<prefix>/<rpc|notify>/<kind>[/<vhost>]/<exchange>/<topic>`. The kind is the segment after the
 * prefix, as Qpid Dispatch's prefix-configured distribution reads it: a vhost, exchange or topic
 * named `multicast` further on (`…/anycast/multicast/nova/compute`) is not one. It was any
 * `/multicast/` in the address, which ran every call of such a topic on every server.
 */
const ROUTABLE_KIND = /^(?:[^/]*\/)*?(anycast|unicast|multicast)\//;

/** oslo's multicast addresses (routable `<prefix>/multicast/`, legacy `broadcast.`) and `multicast.` ones. */
export const isMulticast = (address: string) =>
  address.startsWith('broadcast.') || address.startsWith('multicast.') || ROUTABLE_KIND.exec(address)?.[1] === 'multicast';

/**
 * Bytes written to a receiving client's socket and not yet taken by the kernel past which the
 * router sends it nothing more until the socket drains. A client that grants all the credit and
 * session window AMQP allows and then stops reading made the router buffer every message sent to
 * it in that socket, past any held-bytes budget (1 GiB of presettled casts: 1.1 GiB of RSS).
 */
export const WRITE_BACKLOG_BYTES = 1024 * 1024;

/**
 * Credit left on a consumer link, counting transfers rhea has not written yet; none while its
 * attach waits for the detach of the link it replaced under its name (see attachPending), nor
 * while its connection's socket holds {@link WRITE_BACKLOG_BYTES} unwritten (what it is sent then
 * waits in its backlog, within the router's held-bytes budget).
 */
export function canSend(c: Consumer): boolean {
  return (
    c.sender.sendable() &&
    linkCredit(c.sender) - (c.sent - deliveryCount(c.sender)) > 0 &&
    !attachPending(c.sender) &&
    (socketOf(c.sender.connection)?.writableLength ?? 0) < WRITE_BACKLOG_BYTES
  );
}

/**
 * The router's addresses: which links receive from and send to each, created on first use and
 * dropped when nothing uses them. Producers get credit only while their address has receivers.
 */
export class AddressTable {
  private readonly addresses = new Map<string, Address>();
  private readonly consumers = new Map<Sender, Consumer>();

  /** @param linkCredit credit given to each sender link while its address has receivers */
  constructor(private readonly linkCredit: number) {}

  /** Addresses in use. */
  get size(): number {
    return this.addresses.size;
  }

  /** Messages routed to a receiver and waiting for its credit, over all receivers. */
  held(): number {
    let held = 0;
    for (const c of this.consumers.values()) held += c.backlog.length;
    return held;
  }

  get(name: string): Address | undefined {
    return this.addresses.get(name);
  }

  /** Every address (a copy: callers may drop links while iterating). */
  all(): Address[] {
    return [...this.addresses.values()];
  }

  /** The address called `name`, created if new. */
  address(name: string): Address {
    let a = this.addresses.get(name);
    if (!a) {
      a = { name, multicast: isMulticast(name), consumers: [], producers: new Set(), next: 0 };
      this.addresses.set(name, a);
    }
    return a;
  }

  /** Forgets an address nothing uses. */
  gc(a: Address): void {
    if (a.consumers.length === 0 && a.producers.size === 0) this.addresses.delete(a.name);
  }

  consumer(sender: Sender): Consumer | undefined {
    return this.consumers.get(sender);
  }

  /** The consumer links of one connection. */
  *consumersOf(conn: unknown): Generator<Consumer> {
    for (const [sender, c] of this.consumers) if (sender.connection === conn) yield c;
  }

  /** Every consumer. */
  everyConsumer(): IterableIterator<Consumer> {
    return this.consumers.values();
  }

  /** Every consumer link (a copy). */
  consumerLinks(): Sender[] {
    return [...this.consumers.keys()];
  }

  /**
   * Adds a receiving client's link: its source address, or a fresh unique one for a dynamic
   * source. A link with neither is refused (closed). Returns the address joined.
   */
  attachConsumer(sender: Sender): Address | undefined {
    const source = sender.source as { address?: string; dynamic?: boolean } | undefined;
    let name = source?.address;
    if (source?.dynamic) name = `_dynamic/${randomUUID()}`;
    // The attach reply names the address joined, as Qpid Dispatch does: rhea would answer with an
    // empty source, which peers that check it (qpid-proton's BlockingReceiver) refuse.
    if (name) sender.set_source({ address: name } as Source);
    if (!name) {
      sender.close({ condition: 'amqp:invalid-field', description: 'a receiver needs a source address (or a dynamic source)' });
      return undefined;
    }
    const consumer: Consumer = {
      sender,
      sent: 0,
      address: name,
      backlog: [],
      backlogBytes: 0,
      unsettled: new SlotList<Unsettled>(),
      drained: false,
      granted: false,
    };
    this.consumers.set(sender, consumer);
    const a = this.address(name);
    a.consumers.push(consumer);
    return a;
  }

  /** Removes a consumer link from the table; its messages are the caller's to settle. */
  detachConsumer(c: Consumer): Address | undefined {
    this.consumers.delete(c.sender);
    const a = this.addresses.get(c.address);
    if (a) {
      a.consumers = a.consumers.filter((x) => x !== c);
      if (a.next >= a.consumers.length) a.next = 0;
    }
    return a;
  }

  /** Adds a sending client's link (anonymous relay when it has no target address) and credits it. */
  attachProducer(receiver: Receiver): void {
    const name = targetAddress(receiver);
    if (name) {
      // Echo the target in the attach reply (see attachConsumer).
      receiver.set_target({ address: name } as TerminusOptions);
      this.address(name).producers.add(receiver);
    }
    this.topUp(receiver);
  }

  /** Removes a sending client's link. */
  detachProducer(receiver: Receiver): void {
    const name = targetAddress(receiver);
    const a = name ? this.addresses.get(name) : undefined;
    if (a) {
      a.producers.delete(receiver);
      // Queued messages of a vanished sender can no longer be settled back; they stay queued
      // for their receivers and are delivered (at-most-once) rather than dropped.
      this.gc(a);
    }
  }

  /**
   * Credit for a producer: a full window for anonymous relay or an address with receivers, none
   * otherwise. Refilled once half the window is used, as proton's credit windows do: topping up
   * after every message cost a flow frame per message each way (written by the router, read by
   * the client), and the bound on what a sender may have in the router stays the window.
   */
  topUp(receiver: Receiver): void {
    if (!receiver.is_open()) return;
    const name = targetAddress(receiver);
    if (name && (this.addresses.get(name)?.consumers.length ?? 0) === 0) return;
    const want = this.linkCredit - linkCredit(receiver);
    if (want > 0 && 2 * want >= this.linkCredit) {
      receiver.add_credit(want);
      const t = tallies.get(receiver);
      if (t) t.granted += want;
      else tallies.set(receiver, { granted: want, received: 0 });
    }
  }
}

/**
 * Credit granted to and transfers received from each producer link. rhea neither refuses nor
 * reports a transfer sent without credit (it only logs one and keeps the credit at 0), so the
 * router counts both sides itself to find a peer that ignores flow control.
 */
const tallies = new WeakMap<Receiver, { granted: number; received: number }>();

/** Counts one transfer from `receiver`'s peer; false when the peer had no credit left for it. */
export function spendCredit(receiver: Receiver): boolean {
  const t = tallies.get(receiver);
  if (!t) return false;
  t.received++;
  return t.received <= t.granted;
}

/** A producer link's target address; undefined for anonymous relay. */
export function targetAddress(receiver: Receiver): string | undefined {
  return (receiver.target as { address?: string } | undefined)?.address;
}
