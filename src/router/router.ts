import { randomUUID } from 'node:crypto';
import type { AddressInfo, Server, Socket } from 'node:net';
import rhea from 'rhea';
import { clearRheaTimers } from '../rhea/index.js';
import type { Connection, Container, Delivery, EventContext, Receiver, Sender } from 'rhea';

/** Options of the embedded {@link Router}. */
export interface RouterOptions {
  /** Interface to listen on. @default '127.0.0.1' */
  host?: string;
  /** TCP port; 0 picks a free one. @default 5672 */
  port?: number;
  /** Credit given to each sender link while its address has receivers. @default 250 */
  linkCredit?: number;
  /** Container id announced in Open. @default `hermod-router-<uuid>` */
  containerId?: string;
  /** Receives one line per connection and notable event (info level). */
  log?: (line: string) => void;
  /** Largest message accepted, bytes; larger transfers are rejected. @default 16 MiB */
  maxMessageSize?: number;
}

/** Counters for tests and the `--stats` view. */
export interface RouterStats {
  connections: number;
  addresses: number;
  forwarded: number;
  released: number;
  rejected: number;
  /** Anycast messages waiting for receiver credit. */
  held: number;
}

const RAW = Symbol('hermod.router.raw');
// Forward the exact bytes a sender sent (properties, annotations and their AMQP types intact)
// instead of re-encoding rhea's decoded view of them.
const messageModule = (rhea as unknown as { message: { decode: (b: Buffer) => object } }).message;
const originalDecode = messageModule.decode;
if (!(originalDecode as { hermodRaw?: boolean }).hermodRaw) {
  const decode = (buffer: Buffer) => {
    const m = originalDecode(buffer);
    Object.defineProperty(m, RAW, { value: buffer, enumerable: false });
    return m;
  };
  (decode as { hermodRaw?: boolean }).hermodRaw = true;
  messageModule.decode = decode;
}

interface Item {
  message: Record<string | symbol, unknown>;
  /** The sender's delivery; undefined once settled back. */
  inbound: Delivery | undefined;
  /** Inbound link, to return credit. */
  from: Receiver;
  /** Multicast: copies not yet settled downstream. */
  remaining?: number;
}

interface Consumer {
  sender: Sender;
  /** Transfers handed to rhea on this link; rhea spends credit only when it writes them. */
  sent: number;
  address: string;
  backlog: Item[];
  unsettled: Map<Delivery, Item>;
}

interface Address {
  name: string;
  multicast: boolean;
  consumers: Consumer[];
  producers: Set<Receiver>;
  pending: Item[];
  next: number;
}

/** Credit left on a consumer link, counting transfers rhea has not written yet. */
function canSend(c: Consumer): boolean {
  const link = c.sender as unknown as { credit: number; delivery_count: number };
  return c.sender.sendable() && link.credit - (c.sent - link.delivery_count) > 0;
}

const isMulticast = (address: string) => address.includes('/multicast/') || address.startsWith('broadcast.') || address.startsWith('multicast.');

/**
 * An AMQP 1.0 message router with Qpid Dispatch Router's semantics for the addresses oslo
 * and hermod use: balanced anycast, multicast, dynamic reply addresses, anonymous relay,
 * outcomes passed back to senders, no credit where no receiver exists and no storage.
 * Not a broker: a message nobody can take is released back to its sender.
 */
export class Router {
  private readonly container: Container;
  private server: Server | undefined;
  private readonly addresses = new Map<string, Address>();
  private readonly consumers = new Map<Sender, Consumer>();
  private readonly connections = new Set<Connection>();
  /** Every accepted socket, including ones that never completed an AMQP open. */
  private readonly sockets = new Set<Socket>();
  private readonly opts: Required<Omit<RouterOptions, 'log'>> & { log: (line: string) => void };
  private readonly counters = { forwarded: 0, released: 0, rejected: 0 };

  constructor(options: RouterOptions = {}) {
    this.opts = {
      host: options.host ?? '127.0.0.1',
      port: options.port ?? 5672,
      linkCredit: options.linkCredit ?? 250,
      containerId: options.containerId ?? `hermod-router-${randomUUID()}`,
      log: options.log ?? (() => {}),
      maxMessageSize: options.maxMessageSize ?? 16 * 1024 * 1024,
    };
    this.container = rhea.create_container({ id: this.opts.containerId });
    this.wire();
  }

  /** The port listened on (after start). */
  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  /** `amqp://host:port/` of this router (after start). */
  get url(): string {
    const h = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    return `amqp://${h}:${this.port}/`;
  }

  stats(): RouterStats {
    let held = 0;
    for (const a of this.addresses.values()) held += a.pending.length;
    return { connections: this.connections.size, addresses: this.addresses.size, ...this.counters, held };
  }

  /** Starts listening; resolves with the bound port. */
  async start(): Promise<number> {
    if (this.server) return this.port;
    const server = this.container.listen({
      host: this.opts.host,
      port: this.opts.port,
      // Incoming links: no automatic credit or settlement, the router decides both.
      credit_window: 0,
      autoaccept: false,
      autosettle: true,
      treat_modified_as_released: false,
      offered_capabilities: ['ANONYMOUS-RELAY'],
      properties: { product: 'hermod-router', version: '0.1.0' },
      max_frame_size: 65536,
    } as never) as unknown as Server;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      server.once('error', onError);
      server.once('listening', () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', (err) => this.opts.log(`router: listener error: ${err.message}`));
    // Small request/reply frames must not wait for Nagle's algorithm.
    server.on('connection', (socket: Socket) => {
      socket.setNoDelay(true);
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    this.server = server;
    this.opts.log(`router listening on ${this.url}`);
    return this.port;
  }

  /** Closes every connection and the listener. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const c of this.connections) {
      try {
        // "forced" tells clients to reconnect (to us later, or to another router).
        c.close({ condition: 'amqp:connection:forced', description: 'router shutting down' } as never);
      } catch {
        // already gone
      }
    }
    // Give close frames a moment, then drop whatever is left.
    await new Promise((r) => setTimeout(r, 20));
    for (const socket of this.sockets) socket.destroy();
    for (const c of this.connections) clearRheaTimers(c);
    this.sockets.clear();
    this.connections.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private wire(): void {
    const c = this.container;
    c.on('connection_open', (ctx: EventContext) => {
      const conn = ctx.connection;
      this.connections.add(conn);
      const sock = (conn as unknown as { socket?: { remoteAddress?: string; remotePort?: number } }).socket;
      const props = conn.properties as Record<string, unknown> | undefined;
      const product = props?.product ? ` product=${String(props.product)}` : '';
      this.opts.log(`connection open from ${sock?.remoteAddress}:${sock?.remotePort} container=${conn.container_id}${product}`);
    });
    const gone = (ctx: EventContext) => this.dropConnection(ctx.connection);
    c.on('connection_close', gone);
    c.on('disconnected', gone);
    c.on('connection_error', () => {});
    c.on('error', (err: Error) => this.opts.log(`router: ${err.message}`));
    c.on('protocol_error', (err: Error) => this.opts.log(`router: protocol error ${err.message}`));
    c.on('sender_open', (ctx: EventContext) => this.onConsumer(ctx.sender!));
    c.on('receiver_open', (ctx: EventContext) => this.onProducer(ctx.receiver!));
    c.on('sender_close', (ctx: EventContext) => this.dropConsumer(ctx.sender!));
    c.on('receiver_close', (ctx: EventContext) => this.dropProducer(ctx.receiver!));
    c.on('sender_error', () => {});
    c.on('receiver_error', () => {});
    c.on('session_error', () => {});
    c.on('message', (ctx: EventContext) => this.onMessage(ctx));
    c.on('sendable', (ctx: EventContext) => this.drain(ctx.sender!));
    c.on('accepted', (ctx: EventContext) => this.onOutcome(ctx, 'accepted'));
    c.on('released', (ctx: EventContext) => this.onOutcome(ctx, 'released'));
    c.on('rejected', (ctx: EventContext) => this.onOutcome(ctx, 'rejected'));
    c.on('modified', (ctx: EventContext) => this.onOutcome(ctx, 'modified'));
  }

  private address(name: string): Address {
    let a = this.addresses.get(name);
    if (!a) {
      a = { name, multicast: isMulticast(name), consumers: [], producers: new Set(), pending: [], next: 0 };
      this.addresses.set(name, a);
    }
    return a;
  }

  private gc(a: Address): void {
    if (a.consumers.length === 0 && a.producers.size === 0 && a.pending.length === 0) this.addresses.delete(a.name);
  }

  private onConsumer(sender: Sender): void {
    const source = sender.source as { address?: string; dynamic?: boolean } | undefined;
    let name = source?.address;
    if (source?.dynamic) {
      name = `_dynamic/${randomUUID()}`;
      sender.set_source({ address: name } as never);
    }
    if (!name) {
      sender.close({ condition: 'amqp:invalid-field', description: 'a receiver needs a source address (or a dynamic source)' });
      return;
    }
    const consumer: Consumer = { sender, sent: 0, address: name, backlog: [], unsettled: new Map() };
    this.consumers.set(sender, consumer);
    const a = this.address(name);
    a.consumers.push(consumer);
    for (const p of a.producers) this.topUp(p);
    this.drainAddress(a);
  }

  private onProducer(receiver: Receiver): void {
    const target = receiver.target as { address?: string } | undefined;
    const name = target?.address;
    if (name) this.address(name).producers.add(receiver);
    this.topUp(receiver);
  }

  /** Credit for a producer: a full window for anonymous relay or an address with receivers, none otherwise. */
  private topUp(receiver: Receiver): void {
    if (!receiver.is_open()) return;
    const name = (receiver.target as { address?: string } | undefined)?.address;
    if (name && (this.addresses.get(name)?.consumers.length ?? 0) === 0) return;
    const want = this.opts.linkCredit - (receiver as unknown as { credit: number }).credit;
    if (want > 0) receiver.add_credit(want);
  }

  private onMessage(ctx: EventContext): void {
    const receiver = ctx.receiver!;
    const delivery = ctx.delivery!;
    const message = ctx.message as unknown as Record<string | symbol, unknown>;
    const raw = message[RAW] as Buffer | undefined;
    const settled = (delivery as unknown as { remote_settled?: boolean }).remote_settled === true;
    const item: Item = { message, inbound: settled ? undefined : delivery, from: receiver };
    // rhea frees a session's incoming slot only for deliveries settled locally, even presettled
    // ones: without this, 2048 presettled messages (casts, replies) would close the session's
    // window for good.
    if (settled) (delivery as unknown as { update(settled: boolean): void }).update(true);
    if (raw && raw.length > this.opts.maxMessageSize) {
      this.counters.rejected++;
      this.settleInbound(item, 'rejected', { condition: 'amqp:link:message-size-exceeded', description: `message of ${raw.length} bytes exceeds ${this.opts.maxMessageSize}` });
      return;
    }
    const name = (receiver.target as { address?: string } | undefined)?.address ?? (message.to as string | undefined);
    const a = name ? this.addresses.get(name) : undefined;
    if (!a || a.consumers.length === 0) {
      // Nobody to take it: hand it back at once so the sender can retry or fail fast.
      this.counters.released++;
      this.settleInbound(item, 'released');
      this.topUp(receiver);
      return;
    }
    if (a.multicast) {
      item.remaining = a.consumers.length;
      for (const c of a.consumers) {
        c.backlog.push(item);
        this.drain(c.sender);
      }
      this.topUp(receiver);
    } else {
      // Anycast credit comes back only as messages move on, so a slow receiver pushes back.
      a.pending.push(item);
      this.drainAddress(a);
    }
  }

  private drainAddress(a: Address): void {
    while (a.pending.length > 0) {
      const n = a.consumers.length;
      let chosen: Consumer | undefined;
      for (let i = 0; i < n; i++) {
        const c = a.consumers[(a.next + i) % n]!;
        if (canSend(c)) {
          chosen = c;
          a.next = (a.next + i + 1) % n;
          break;
        }
      }
      if (!chosen) return;
      this.forward(chosen, a.pending.shift()!);
    }
  }

  private drain(sender: Sender): void {
    const c = this.consumers.get(sender);
    if (!c) return;
    while (c.backlog.length > 0 && canSend(c)) this.forward(c, c.backlog.shift()!);
    const a = this.addresses.get(c.address);
    if (a && !a.multicast) this.drainAddress(a);
  }

  private forward(c: Consumer, item: Item): void {
    const raw = item.message[RAW] as Buffer | undefined;
    const out = raw ? c.sender.send(raw as never, undefined, 0) : c.sender.send(item.message as never);
    this.counters.forwarded++;
    c.sent++;
    c.unsettled.set(out, item);
    if (item.remaining === undefined) this.topUp(item.from);
  }

  private onOutcome(ctx: EventContext, outcome: 'accepted' | 'released' | 'rejected' | 'modified'): void {
    const c = this.consumers.get(ctx.sender!);
    const delivery = ctx.delivery!;
    const item = c?.unsettled.get(delivery);
    if (!c || !item) return;
    c.unsettled.delete(delivery);
    const state = (delivery as unknown as { remote_state?: Record<string, unknown> }).remote_state;
    if (item.remaining !== undefined) {
      // Multicast: the sender hears once, after every copy is settled.
      if (--item.remaining === 0) this.settleInbound(item, 'accepted');
      return;
    }
    if (outcome === 'rejected') this.settleInbound(item, 'rejected', state?.error as never);
    else if (outcome === 'modified') this.settleInbound(item, 'modified', state as never);
    else this.settleInbound(item, outcome);
  }

  private settleInbound(item: Item, outcome: 'accepted' | 'released' | 'rejected' | 'modified', detail?: Record<string, unknown>): void {
    const d = item.inbound;
    if (!d) return;
    item.inbound = undefined;
    try {
      if (outcome === 'accepted') d.accept();
      else if (outcome === 'released') d.release();
      else if (outcome === 'rejected') d.reject(detail as never);
      else d.modified({
        delivery_failed: (detail?.delivery_failed as boolean | undefined) ?? true,
        undeliverable_here: (detail?.undeliverable_here as boolean | undefined) ?? false,
      } as never);
    } catch {
      // The sender's link is gone; nothing to tell it.
    }
  }

  private dropConsumer(sender: Sender): void {
    const c = this.consumers.get(sender);
    if (!c) return;
    this.consumers.delete(sender);
    const a = this.addresses.get(c.address);
    if (a) {
      a.consumers = a.consumers.filter((x) => x !== c);
      a.next = 0;
    }
    // Delivered but unsettled: the receiver may have seen them, so tell the sender "modified,
    // delivery failed"; queued for it only: released. Same as Dispatch Router.
    // rhea records a disposition at once but raises its event only on its next processing pass,
    // while a detach in the same read is handled immediately: an outcome the receiver already
    // sent must win over "vanished", or an accepted message would be delivered twice.
    for (const [out, item] of c.unsettled) {
      const known = (out as unknown as { remote_state?: { constructor?: { composite_type?: string } } & Record<string, unknown> }).remote_state;
      const outcome = known?.constructor?.composite_type as 'accepted' | 'released' | 'rejected' | 'modified' | undefined;
      if (item.remaining !== undefined) {
        if (--item.remaining === 0) this.settleInbound(item, 'accepted');
      } else if (outcome === 'accepted' || outcome === 'released') {
        this.settleInbound(item, outcome);
      } else if (outcome === 'rejected') {
        this.settleInbound(item, 'rejected', known!.error as never);
      } else if (outcome === 'modified') {
        this.settleInbound(item, 'modified', known as never);
      } else {
        this.settleInbound(item, 'modified', { delivery_failed: true, undeliverable_here: false });
      }
    }
    c.unsettled.clear();
    for (const item of c.backlog.splice(0)) {
      if (item.remaining !== undefined && --item.remaining === 0) this.settleInbound(item, 'accepted');
    }
    if (a) {
      if (a.consumers.length === 0) {
        for (const item of a.pending.splice(0)) { this.counters.released++; this.settleInbound(item, 'released'); }
      } else {
        this.drainAddress(a);
      }
      this.gc(a);
    }
  }

  private dropProducer(receiver: Receiver): void {
    const name = (receiver.target as { address?: string } | undefined)?.address;
    const a = name ? this.addresses.get(name) : undefined;
    if (a) {
      a.producers.delete(receiver);
      // Queued messages of a vanished sender can no longer be settled back; keep delivering
      // them (at-most-once) rather than dropping work already sent.
      this.gc(a);
    }
  }

  private dropConnection(conn: Connection): void {
    if (!this.connections.delete(conn)) return;
    clearRheaTimers(conn);
    for (const sender of [...this.consumers.keys()]) if (sender.connection === conn) this.dropConsumer(sender);
    for (const a of [...this.addresses.values()]) {
      for (const r of [...a.producers]) if (r.connection === conn) this.dropProducer(r);
    }
    this.opts.log(`connection closed container=${conn.container_id}`);
  }
}
