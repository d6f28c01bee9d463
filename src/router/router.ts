import { randomUUID } from 'node:crypto';
import type { AddressInfo, Server, Socket } from 'node:net';
import type { Connection, Container, EventContext, ServerConnectionOptions } from 'rhea';
import rhea from 'rhea';
import { clearRheaTimers, installDispositionFix, installRawDecode, socketOf } from '../rhea/index.js';
import { AddressTable } from './addresses.js';
import { Forwarder } from './forwarding.js';

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

/**
 * An AMQP 1.0 message router with Qpid Dispatch Router's semantics for the addresses oslo
 * and hermod use: balanced anycast, multicast, dynamic reply addresses, anonymous relay,
 * outcomes passed back to senders, no credit where no receiver exists and no storage.
 * Not a broker: a message nobody can take is released back to its sender.
 */
export class Router {
  private readonly container: Container;
  private server: Server | undefined;
  private readonly table: AddressTable;
  private readonly forwarder: Forwarder;
  private readonly connections = new Set<Connection>();
  /** Every accepted socket, including ones that never completed an AMQP open. */
  private readonly sockets = new Set<Socket>();
  private readonly opts: Required<Omit<RouterOptions, 'log'>> & { log: (line: string) => void };

  constructor(options: RouterOptions = {}) {
    this.opts = {
      host: options.host ?? '127.0.0.1',
      port: options.port ?? 5672,
      linkCredit: options.linkCredit ?? 250,
      containerId: options.containerId ?? `hermod-router-${randomUUID()}`,
      log: options.log ?? (() => {}),
      maxMessageSize: options.maxMessageSize ?? 16 * 1024 * 1024,
    };
    // Forward the exact bytes a sender sent (properties, annotations and their AMQP types intact)
    // instead of re-encoding rhea's decoded view of them.
    installRawDecode();
    installDispositionFix();
    this.table = new AddressTable(this.opts.linkCredit);
    this.forwarder = new Forwarder(this.table, this.opts.maxMessageSize);
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
    return { connections: this.connections.size, addresses: this.table.size, ...this.forwarder.counters, held: this.table.held() };
  }

  /** Starts listening; resolves with the bound port. */
  async start(): Promise<number> {
    if (this.server) return this.port;
    // rhea passes listen options down to every accepted connection and its links as defaults;
    // its typings know only the connection-level ones.
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
    } as ServerConnectionOptions);
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
      // Accepted while stopping: stop() has already swept the sockets.
      if (this.server !== server) {
        socket.destroy();
        return;
      }
      socket.setNoDelay(true);
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    this.server = server;
    this.opts.log(`router listening on ${this.url}`);
    return this.port;
  }

  /**
   * Takes no new connections at once, tells every client to go elsewhere (`forced`), drops what
   * is left after a moment; bounded whatever the clients do.
   */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    for (const c of this.connections) {
      try {
        // "forced" tells clients to reconnect (to us later, or to another router).
        c.close({ condition: 'amqp:connection:forced', description: 'router shutting down' });
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
    await closed;
  }

  private wire(): void {
    const c = this.container;
    c.on('connection_open', (ctx: EventContext) => {
      const conn = ctx.connection;
      this.connections.add(conn);
      const sock = socketOf(conn);
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
    const f = this.forwarder;
    c.on('sender_open', (ctx: EventContext) => f.onConsumer(ctx.sender!));
    c.on('receiver_open', (ctx: EventContext) => f.onProducer(ctx.receiver!));
    c.on('sender_close', (ctx: EventContext) => f.dropConsumer(ctx.sender!));
    c.on('receiver_close', (ctx: EventContext) => f.dropProducer(ctx.receiver!));
    c.on('sender_error', () => {});
    c.on('receiver_error', () => {});
    c.on('session_error', () => {});
    c.on('message', (ctx: EventContext) => f.onMessage(ctx));
    c.on('sendable', (ctx: EventContext) => f.drain(ctx.sender!));
    c.on('sender_draining', (ctx: EventContext) => f.onDraining(ctx.sender!));
    for (const kind of ['accepted', 'released', 'rejected', 'modified'] as const) {
      c.on(kind, (ctx: EventContext) => f.onOutcome(ctx, kind));
    }
  }

  private dropConnection(conn: Connection): void {
    if (!this.connections.delete(conn)) return;
    clearRheaTimers(conn);
    for (const sender of this.table.consumerLinks()) if (sender.connection === conn) this.forwarder.dropConsumer(sender);
    for (const a of this.table.all()) {
      for (const r of [...a.producers]) if (r.connection === conn) this.forwarder.dropProducer(r);
    }
    this.opts.log(`connection closed container=${conn.container_id}`);
  }
}
