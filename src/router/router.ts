import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { AmqpError, Connection, Container, Delivery, EventContext, Receiver, Sender } from 'rhea';
import rhea from 'rhea';
import { ConfigError } from '../core/errors.js';
import {
  type AssemblyHolder,
  acceptSocket,
  batchWrites,
  clearRheaTimers,
  closeNow,
  discarded,
  headerMismatch,
  installRawDecode,
  installRheaFixes,
  limitIncomingMessages,
  NOT_A_HEADER,
  pauseWhileBacklogged,
  peerLabel,
  SocketGuard,
  scanInsteadOfDecode,
} from '../rhea/index.js';
import { AddressTable, spendCredit, targetAddress, WRITE_BACKLOG_BYTES } from './addresses.js';
import { Forwarder } from './forwarding.js';
import { LoginChecks } from './login-checks.js';
import { allowed, UserDb, type UserEntry } from './users.js';

/** TLS files of the router's listener (PEM paths or contents). */
export interface RouterTls {
  cert: string | Buffer;
  key: string | Buffer;
  /** CA of client certificates: when set, clients may authenticate with one (SASL EXTERNAL, user = the certificate's CN). */
  ca?: string | Buffer;
}

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
  /**
   * Receives one line per connection and notable event (info level). Lines quote what peers sent
   * (container ids, addresses, error descriptions) as they sent it, cut short but not escaped:
   * escape control characters before writing them to a terminal or a line-based log, as
   * `hermod-router` does.
   */
  log?: (line: string) => void;
  /** Largest message accepted, bytes; counted as frames arrive, larger ones are rejected. @default 16 MiB */
  maxMessageSize?: number;
  /**
   * Bytes of messages the router may hold for receivers without credit, all together (a multicast
   * message once); past it, a message that would wait is released to its sender (a presettled one
   * dropped). At least `maxMessageSize`. The bytes of messages still arriving (frames gathered,
   * the last not yet come) are bounded by four times `maxMessageSize` on one connection (past it,
   * that connection is closed with `amqp:resource-limit-exceeded`) and by the same figure over all
   * connections (past it, the connection holding the most of them is closed so). @default 512 MiB
   */
  maxHeldBytes?: number;
  /** Largest incoming frame after `open` (the advertised max-frame-size). @default 65536 */
  maxFrameSize?: number;
  /** Largest SASL frame and `open` frame. @default 4096 */
  handshakeFrameSize?: number;
  /** Open connections (sockets) at most; more are refused and logged. @default 1000 */
  maxConnections?: number;
  /**
   * Connections from one client address still in their handshake (before AMQP `open`) at most;
   * more from that address are refused and logged, so one client cannot hold every slot of
   * `maxConnections` with sockets that never log in. @default 64
   */
  maxHandshakesPerAddress?: number;
  /** Sessions per connection at most; the connection that opens more is closed. @default 64 */
  maxSessions?: number;
  /**
   * Password checks (scrypt: about 16 MiB and a libuv pool thread each) run at once for SASL
   * PLAIN logins; others wait. More than libuv's pool (4 threads unless `UV_THREADPOOL_SIZE` says
   * otherwise) only queues them there, behind DNS lookups and file reads. @default 2
   */
  maxLoginChecks?: number;
  /**
   * Logins waiting for a password check, all together; past it a login is answered with the SASL
   * outcome `sys` (clients retry it), and a waiter whose peer hung up is dropped unchecked. @default 64
   */
  maxLoginsWaiting?: number;
  /**
   * Logins from one client address being checked or waiting at most; past it, SASL outcome `sys`.
   * Keeps one client from filling the waiting room; raise it when many services behind one
   * address (a NAT, one host) log in at once when they start. @default 32
   */
  maxLoginsPerAddress?: number;
  /** Links per connection at most; more are refused (detached with an error). @default 1000 */
  maxLinks?: number;
  /** Milliseconds from accept to the peer's `open` (TLS, AMQP header, SASL included). @default 5000 */
  handshakeTimeout?: number;
  /** Idle timeout advertised in `open`, ms (0: none); rhea closes a peer silent for twice as long. @default 16000 */
  idleTimeout?: number;
  /** Users file path (or a loaded {@link UserDb}): SASL PLAIN against it, and per-user address rules. */
  users?: string | UserDb;
  /**
   * Offer SASL ANONYMOUS. @default true without users and client certificates, else false.
   * Listening on a non-loopback interface with anonymous access must be asked for (true).
   */
  allowAnonymous?: boolean;
  /** Listen with TLS (amqps). */
  tls?: RouterTls;
}

/**
 * What a multicast receiver may have queued for its credit: this many senders' credit windows
 * (2,500 messages by default), and at most this many bytes. A burst of fanout casts to a busy
 * server fits; a receiver that never grants credit cannot make the router hold more.
 */
const MULTICAST_BACKLOG_CREDITS = 10;
const MULTICAST_BACKLOG_BYTES = 64 * 1024 * 1024;
/**
 * Bytes written to a client's socket and not yet taken by the kernel past which the router stops
 * reading that client until they went (see pauseWhileBacklogged): twice what stops forwarding to
 * it, so a consumer taking its messages slowly keeps sending its dispositions and flows.
 */
const READ_PAUSE_BACKLOG_BYTES = 2 * WRITE_BACKLOG_BYTES;
/** At most one line of each kind of repeated refusal (connection limits, address rules) per this interval. */
const LIMIT_LOG_INTERVAL_MS = 10_000;

/** What {@link Router.stats} reports, for tests and the `--stats` view: counts since start, and the state now. */
export interface RouterStats {
  /** Open client connections. */
  connections: number;
  /** Addresses with a sender or receiver attached. */
  addresses: number;
  /** Messages handed to a receiver. */
  forwarded: number;
  /** Messages handed back to their sender `released` (no receiver, or the router stopped holding them). */
  released: number;
  /** Messages and links refused (too large, not allowed, over a limit). */
  rejected: number;
  /** Messages waiting for receiver credit (anycast, and multicast copies). */
  held: number;
  /** Bytes of the held messages (a multicast message once). */
  heldBytes: number;
  /** Multicast copies dropped for a receiver whose backlog was full, and presettled messages past `maxHeldBytes`. */
  dropped: number;
  /**
   * Messages (and multicast copies) whose header ttl ran out while they waited for a receiver's
   * credit, dropped (an unsettled one settled `rejected` with `hermod:ttl-expired`): a call whose
   * caller had given up does not reach its busy server once it has room again.
   */
  expired: number;
  /** Sockets refused or closed by the router's limits, bounds and authentication. */
  refused: number;
}

/** A TCP socket from accept to its AMQP open: one deadline over TLS, the AMQP header and SASL. */
interface Handshake {
  /** `address:port`, taken at accept: a TLS socket that failed has none left to read. */
  label: string;
  /** Its connection, once TLS (if any) is done. */
  peer?: Peer;
  /** The router closed it at the deadline before TLS was done (its handshake error is not another refusal). */
  cut?: boolean;
  /** Stops the deadline and takes the socket out of its address's handshake count; idempotent. */
  done: () => void;
}

/** One accepted socket and what the router knows of its peer. */
interface Peer {
  label: string;
  socket: Socket;
  conn?: Connection;
  guard?: SocketGuard;
  /** The authenticated identity: a user name, a certificate CN or `anonymous`. */
  user?: string;
  sessions: number;
  links: number;
  /** Links refused by the user's address rules, and their log lines. */
  denied: Throttle;
  timer?: NodeJS.Timeout;
  closing?: boolean;
  /** Gives back what the connection's messages still arriving count against the router's bound. */
  releaseAssembly?: () => void;
}

type Resolved = Required<Omit<RouterOptions, 'log' | 'users' | 'tls'>> & { log: (line: string) => void };

/** The protocol headers the router answers a foreign one with: AMQP, or SASL when it requires a login. */
const AMQP_HEADER = Buffer.from('AMQP\x00\x01\x00\x00', 'latin1');
const SASL_HEADER = Buffer.from('AMQP\x03\x01\x00\x00', 'latin1');

/**
 * The TCP socket under a TLS socket, or a plain socket itself. The handshake count is kept per TCP
 * socket (all the listener's 'connection' event gives); the TLS socket the router talks AMQP over
 * is another object, and Node links the two only by `_parent` (no public accessor).
 *
 * Neither public route keeps client certificates safe (Node 20, 22 and 24): Node verifies a
 * client's certificate only on the sockets its own tls.Server makes, so a TLSSocket the router
 * made over the TCP socket (`new tls.TLSSocket(tcp, { isServer: true, … })`) is never
 * `authorized` and completes TLS with a certificate from any CA, rejectUnauthorized or not; and
 * from a tls.Server's socket whose handshake failed nothing public leads back to its TCP socket,
 * not even its address. Should `_parent` go, router-tls.test.ts fails (handshake counts).
 */
function tcpOf(socket: Socket): Socket {
  return (socket as Socket & { _parent?: Socket | null })._parent ?? socket;
}

/**
 * Deepest nesting of AMQP values (lists, maps, arrays, described values) a message may have; a
 * deeper one closes its connection with amqp:decode-error. hermod's own messages nest 3 deep.
 */
export const MAX_NESTING = 128;
const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

/**
 * An AMQP 1.0 message router with Qpid Dispatch Router's semantics for the addresses oslo
 * and hermod use: balanced anycast, multicast, dynamic reply addresses, anonymous relay,
 * outcomes passed back to senders, no credit where no receiver exists and no storage.
 * Not a broker: a message nobody can take is released back to its sender.
 *
 * It is a network server and bounded like one: frames are checked against the negotiated
 * limits before rhea buffers them, messages are counted as they arrive, connections, sessions
 * and links are limited, a peer must finish its handshake in time, and peers authenticate
 * (SASL PLAIN against a users file, EXTERNAL with a client certificate, ANONYMOUS when allowed).
 */
export class Router {
  private readonly container: Container;
  private server: Server | undefined;
  private readonly table: AddressTable;
  private readonly forwarder: Forwarder;
  private readonly connections = new Set<Connection>();
  /** Bytes of messages still arriving over all connections (see `maxHeldBytes`). */
  private readonly assembling: { bytes: number; limit: number; holders: Set<AssemblyHolder> };
  private readonly peers = new Map<Connection, Peer>();
  /** Links counted in their peer's `links`, until their detach or their session's end. */
  private readonly counted = new WeakSet<Sender | Receiver>();
  /** Every accepted TCP socket, including ones that never completed an AMQP open. */
  private readonly sockets = new Set<Socket>();
  /** Sockets in their handshake, by client address (maxHandshakesPerAddress). */
  private readonly handshaking = new Map<string, number>();
  /** Each TCP socket's handshake, from accept until its connection's open or its close. */
  private readonly handshakes = new WeakMap<Socket, Handshake>();
  private readonly opts: Resolved;
  private readonly users: UserDb | undefined;
  private readonly tls: RouterTls | undefined;
  private refused = 0;
  /** Lines of sockets refused at a connection limit. */
  private readonly atLimit = new Throttle();
  /** Lines of failed TLS handshakes (a scanner or a load balancer's probe may fail thousands). */
  private readonly tlsFailed = new Throttle();
  /** Password checks (scrypt) of PLAIN logins: bounded, and skipped for peers that left. */
  private readonly logins: LoginChecks;
  /** Lines of logins refused because too many were being checked. */
  private readonly loginsBusy = new Throttle();
  /** Presettled messages over --max-message-size, dropped: one line per interval. */
  private readonly oversized = new Throttle();
  /** Messages whose ttl ran out while held, dropped: one line per interval. */
  private readonly expiredLines = new Throttle();

  constructor(options: RouterOptions = {}) {
    this.users = typeof options.users === 'string' ? UserDb.load(options.users) : options.users;
    this.tls = options.tls;
    const anonymousDefault = !this.users && !this.tls?.ca;
    this.opts = {
      host: options.host ?? '127.0.0.1',
      port: options.port ?? 5672,
      linkCredit: options.linkCredit ?? 250,
      containerId: options.containerId ?? `hermod-router-${randomUUID()}`,
      log: options.log ?? (() => {}),
      maxMessageSize: options.maxMessageSize ?? 16 * 1024 * 1024,
      maxHeldBytes: options.maxHeldBytes ?? 512 * 1024 * 1024,
      maxFrameSize: options.maxFrameSize ?? 65536,
      handshakeFrameSize: options.handshakeFrameSize ?? 4096,
      maxConnections: options.maxConnections ?? 1000,
      maxHandshakesPerAddress: options.maxHandshakesPerAddress ?? 64,
      maxSessions: options.maxSessions ?? 64,
      maxLoginChecks: options.maxLoginChecks ?? 2,
      maxLoginsWaiting: options.maxLoginsWaiting ?? 64,
      maxLoginsPerAddress: options.maxLoginsPerAddress ?? 32,
      maxLinks: options.maxLinks ?? 1000,
      handshakeTimeout: options.handshakeTimeout ?? 5000,
      idleTimeout: options.idleTimeout ?? 16000,
      allowAnonymous: options.allowAnonymous ?? anonymousDefault,
    };
    // A NaN limit compared false everywhere and switched the bound off; 0 or less refused everyone.
    for (const key of [
      'maxConnections',
      'maxHandshakesPerAddress',
      'maxSessions',
      'maxLoginChecks',
      'maxLoginsWaiting',
      'maxLoginsPerAddress',
      'maxLinks',
      'maxMessageSize',
      'maxHeldBytes',
      'maxFrameSize',
      'linkCredit',
    ] as const) {
      const v = this.opts[key];
      if (!Number.isInteger(v) || v < 1) throw new ConfigError(`router ${key} must be a whole number ≥ 1, got ${v}`, { key });
    }
    this.logins = new LoginChecks(this.opts.maxLoginChecks, this.opts.maxLoginsWaiting, this.opts.maxLoginsPerAddress);
    // A budget below one message would refuse every message that has to wait at all.
    if (this.opts.maxHeldBytes < this.opts.maxMessageSize) {
      throw new ConfigError(
        `router maxHeldBytes (${this.opts.maxHeldBytes}) must be at least maxMessageSize (${this.opts.maxMessageSize})`,
        { key: 'maxHeldBytes' },
      );
    }
    if (!this.opts.allowAnonymous && !this.users && !this.tls?.ca) {
      throw new ConfigError('the router needs a way to authenticate: users, TLS client certificates (tls.ca) or allowAnonymous');
    }
    if (this.opts.allowAnonymous && !LOOPBACK.test(this.opts.host) && options.allowAnonymous !== true) {
      throw new ConfigError(
        `listening on ${this.opts.host} (beyond loopback) without authentication must be asked for: anyone who can reach it could send and receive on every address. Give users (--users <file>) or client certificates (--tls-ca), or allow it with allowAnonymous: true (--allow-anonymous)`,
        { key: 'allowAnonymous' },
      );
    }
    // Forward the exact bytes a sender sent (properties, annotations and their AMQP types intact)
    // instead of re-encoding rhea's decoded view of them.
    installRawDecode();
    installRheaFixes();
    this.table = new AddressTable(this.opts.linkCredit);
    this.assembling = { bytes: 0, limit: this.opts.maxHeldBytes, holders: new Set() };
    const limits = {
      multicastMessages: MULTICAST_BACKLOG_CREDITS * this.opts.linkCredit,
      multicastBytes: MULTICAST_BACKLOG_BYTES,
      heldBytes: this.opts.maxHeldBytes,
    };
    this.forwarder = new Forwarder(this.table, this.opts.maxMessageSize, limits, (e) => {
      if (e.kind === 'oversize') {
        const more = this.oversized.tick();
        if (more === undefined) return;
        const peer = this.peers.get(e.item.from.connection);
        this.opts.log(
          `presettled message of ${e.bytes} bytes from ${peer?.label ?? 'a peer'}${peer?.user ? ` (${peer.user})` : ''} to ${logAddress(targetAddress(e.item.from) ?? e.item.message.to)} dropped: over --max-message-size ${this.opts.maxMessageSize}${more}`,
        );
        return;
      }
      if (e.kind === 'expired') {
        const more = this.expiredLines.tick();
        if (more === undefined) return;
        const from = this.peers.get(e.item.from.connection);
        const to = this.peers.get(e.consumer.sender.connection);
        this.opts.log(
          `message from ${from?.label ?? 'a peer'}${from?.user ? ` (${from.user})` : ''} to ${logAddress(e.consumer.address)} dropped: its ttl of ${e.item.ttl} ms ran out after ${Math.round(e.heldMs)} ms waiting for the credit of ${to?.label ?? 'its receiver'}${more}`,
        );
        return;
      }
      if (e.kind === 'budget') {
        this.opts.log(
          `holding ${e.held} bytes for receivers without credit (--max-held-bytes ${this.opts.maxHeldBytes}): further messages that would wait are released (presettled ones dropped) until half of that is free`,
        );
        return;
      }
      const c = e.consumer;
      const peer = this.peers.get(c.sender.connection);
      this.opts.log(
        `multicast to ${c.address}: ${peer?.label ?? 'a receiver'}${peer?.user ? ` (${peer.user})` : ''} has ${c.backlog.length} messages (${c.backlogBytes} bytes) waiting for its credit; its copies are dropped until it takes them`,
      );
    });
    this.container = rhea.create_container({ id: this.opts.containerId });
    this.wire();
  }

  /** The port listened on (after start). */
  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  /** `amqp://host:port/` (`amqps://` with TLS) of this router (after start). */
  get url(): string {
    const h = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    return `${this.tls ? 'amqps' : 'amqp'}://${h}:${this.port}/`;
  }

  /** The counters and the state now; cheap enough to poll. */
  stats(): RouterStats {
    return {
      connections: this.connections.size,
      addresses: this.table.size,
      ...this.forwarder.counters,
      held: this.table.held(),
      heldBytes: this.forwarder.heldBytes,
      refused: this.refused,
    };
  }

  /** Starts listening; resolves with the bound port. */
  async start(): Promise<number> {
    if (this.server) return this.port;
    // TCP first, TLS only for sockets within the limits: a socket refused at a limit costs no TLS
    // state, and its refusal is counted and logged once (a tls.Server listening itself wrapped it
    // before the router saw it, and reported each as a failed handshake with no address).
    const server = net.createServer();
    // It never listens itself: the router hands it the TCP sockets it admits.
    const tlsSide = this.tls ? this.tlsServer(this.tls) : undefined;
    server.on('connection', (socket: Socket) => {
      if (!this.onSocket(socket)) return;
      if (tlsSide) tlsSide.emit('connection', socket);
      else this.accept(socket);
    });
    server.listen({ host: this.opts.host, port: this.opts.port });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      server.once('error', onError);
      server.once('listening', () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', (err) => this.opts.log(`router: listener error: ${err.message}`));
    this.server = server;
    const auth = [
      this.users ? `PLAIN (${this.users.size} users)` : '',
      this.tls?.ca ? 'EXTERNAL' : '',
      this.opts.allowAnonymous ? 'ANONYMOUS' : '',
    ]
      .filter(Boolean)
      .join(', ');
    this.opts.log(`router listening on ${this.url} (SASL: ${auth})`);
    if (this.opts.allowAnonymous && !LOOPBACK.test(this.opts.host)) {
      this.opts.log(
        `WARNING: anonymous clients are accepted on ${this.opts.host}: anyone who can reach it can send and receive any message`,
      );
    }
    return this.port;
  }

  private tlsServer(t: RouterTls): tls.Server {
    const pem = (v: string | Buffer) => (Buffer.isBuffer(v) || v.includes('-----BEGIN') ? v : readFileSync(v));
    const server = tls.createServer({
      cert: pem(t.cert),
      key: pem(t.key),
      ...(t.ca ? { ca: pem(t.ca), requestCert: true, rejectUnauthorized: false } : {}),
      // No TLS timer of its own: the router's handshake deadline runs from TCP accept and covers
      // TLS (Node's started again at zero for AMQP once TLS was done: up to twice the limit).
    });
    server.on('secureConnection', (socket: TLSSocket) => this.accept(socket));
    server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
      // Sockets dropped by stop() fail their handshake too: not a refusal.
      const hs = this.handshakes.get(tcpOf(socket));
      if (!this.server || hs?.cut) return;
      this.refused++;
      const more = this.tlsFailed.tick();
      if (more !== undefined) this.opts.log(`refused ${hs?.label ?? peerLabel(socket)}: TLS handshake failed: ${err.message}${more}`);
    });
    return server;
  }

  /** Every TCP socket: the connection limit, and the handshake clock (TLS included). False: refused. */
  private onSocket(socket: Socket): boolean {
    // Accepted while stopping: stop() has already swept the sockets.
    if (!this.server) {
      socket.destroy();
      return false;
    }
    if (this.sockets.size >= this.opts.maxConnections) {
      this.refuseAtLimit(socket, `connection limit of ${this.opts.maxConnections} reached`);
      return false;
    }
    const from = socket.remoteAddress ?? '';
    const shaking = this.handshaking.get(from) ?? 0;
    if (shaking >= this.opts.maxHandshakesPerAddress) {
      this.refuseAtLimit(socket, `${shaking} connections from its address are still in their handshake (maxHandshakesPerAddress)`);
      return false;
    }
    this.handshaking.set(from, shaking + 1);
    let counted = true;
    const deadline = setTimeout(() => this.handshakeExpired(socket, hs), this.opts.handshakeTimeout);
    const hs: Handshake = {
      label: peerLabel(socket),
      done: () => {
        if (!counted) return;
        counted = false;
        clearTimeout(deadline);
        const left = (this.handshaking.get(from) ?? 1) - 1;
        if (left > 0) this.handshaking.set(from, left);
        else this.handshaking.delete(from);
      },
    };
    this.handshakes.set(socket, hs);
    // Small request/reply frames must not wait for Nagle's algorithm.
    socket.setNoDelay(true);
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      hs.done();
    });
    return true;
  }

  private handshakeExpired(socket: Socket, hs: Handshake): void {
    const why = `no AMQP open within ${this.opts.handshakeTimeout} ms`;
    if (hs.peer) {
      this.hangUp(hs.peer, why);
      return;
    }
    // Still in TLS: there is no AMQP connection to close, only the socket.
    hs.cut = true;
    this.refused++;
    this.opts.log(`closing ${hs.label}: ${why} (TLS handshake not finished)`);
    socket.destroy();
  }

  /**
   * Refuses a socket at a connection limit. A flood past a limit is one line per interval, not
   * one per socket: the log is the disk's, and the flood is the peer's.
   */
  private refuseAtLimit(socket: Socket, why: string): void {
    this.refused++;
    const more = this.atLimit.tick();
    if (more !== undefined) this.opts.log(`refused ${peerLabel(socket)}: ${why}${more}`);
    socket.destroy();
  }

  private accept(socket: Socket): void {
    if (socket.destroyed) return;
    const hs = this.handshakes.get(tcpOf(socket));
    const peer: Peer = { label: hs?.label ?? peerLabel(socket), socket, sessions: 0, links: 0, denied: new Throttle() };
    if (hs) hs.peer = peer;
    peer.guard = new SocketGuard(socket, { handshake: this.opts.handshakeFrameSize, maxFrame: this.opts.maxFrameSize }, (reason) => {
      // AMQP 1.0 §2.2: a protocol header the server does not take is answered with the header it
      // does take, then the socket closes, so that a client of another version (AMQP 0-9-1) learns
      // at once, as from Qpid Dispatch Router or RabbitMQ. Only for the first header: the one
      // after SASL (user known) already had rhea's answer.
      if (peer.user === undefined && reason.startsWith(NOT_A_HEADER)) socket.write(this.opts.allowAnonymous ? AMQP_HEADER : SASL_HEADER);
      this.refuse(peer, 'amqp:connection:framing-error', reason);
    });
    // A peer that sends and does not read meets a router that stops reading it.
    pauseWhileBacklogged(socket, READ_PAUSE_BACKLOG_BYTES, () => !peer.closing);
    const cert = (socket as TLSSocket).authorized ? (socket as TLSSocket).getPeerCertificate() : undefined;
    const users = this.users;
    const conn = acceptSocket(this.container, this.connectionOptions(), socket, {
      anonymous: this.opts.allowAnonymous,
      external: cert !== undefined,
      ...(users
        ? {
            plain: async (user: string, password: string) => {
              const from = socket.remoteAddress ?? '';
              const ok = await this.logins.run(
                from,
                () => socket.destroyed || peer.closing === true,
                () => users.check(user, password),
              );
              // The peer hung up while its login waited: nobody to answer, nothing to check.
              if (ok === 'gone') return false;
              if (ok === 'busy') {
                this.refused++;
                const more = this.loginsBusy.tick();
                if (more !== undefined)
                  this.opts.log(`refused ${peer.label}: too many logins being checked (${this.logins.held}); it may try again${more}`);
                // rhea answers a throw with the SASL outcome `sys` and closes the connection with
                // amqp:internal-error: a client retries that, unlike a refused login.
                throw new Error('too many logins being checked');
              }
              if (!ok) {
                this.refused++;
                this.opts.log(`refused ${peer.label}: authentication failed for user ${JSON.stringify(user)}`);
                // After rhea has written the failed outcome (it does so when this promise settles).
                setImmediate(() => this.hangUp(peer));
              }
              return ok;
            },
          }
        : {}),
      succeeded: (mechanism, user) => {
        peer.user = mechanism === 'PLAIN' ? user : mechanism === 'EXTERNAL' ? String(cert?.subject?.CN ?? '') : 'anonymous';
      },
    });
    batchWrites(conn);
    peer.conn = conn;
    this.peers.set(conn, peer);
    peer.releaseAssembly = limitIncomingMessages(
      conn,
      this.opts.maxMessageSize,
      (delivery, bytes) => this.oversize(peer, delivery, bytes),
      {
        shared: this.assembling,
        perConnection: 4 * this.opts.maxMessageSize,
        onOver: (mine, all) =>
          this.refuse(
            peer,
            'amqp:resource-limit-exceeded',
            all > this.assembling.limit
              ? `its messages still arriving hold ${mine} bytes, the most of any connection, when those of all connections reached ${all} (--max-held-bytes ${this.assembling.limit})`
              : `its messages still arriving hold ${mine} bytes (at most ${4 * this.opts.maxMessageSize}, four times --max-message-size)`,
          ),
      },
    );
    // The router reads only `to` of a message and forwards its bytes: checked, not decoded.
    scanInsteadOfDecode(conn, MAX_NESTING);
    // rhea dispatches read errors (a decoder blowing its stack on a 100,000-deep list, a frame it
    // cannot parse) on the connection, then ends the socket.
    conn.on('error', (err: Error) => this.readError(peer, err));
    conn.on('protocol_error', (err: Error) => this.readError(peer, err));
    socket.once('close', () => this.gone(peer));
  }

  /** rhea options of every accepted connection (and, through them, defaults of its links). */
  private connectionOptions(): object {
    return {
      // Incoming links: no automatic credit or settlement, the router decides both.
      credit_window: 0,
      autoaccept: false,
      autosettle: true,
      treat_modified_as_released: false,
      offered_capabilities: ['ANONYMOUS-RELAY'],
      properties: { product: 'hermod-router', version: '0.1.0' },
      max_frame_size: this.opts.maxFrameSize,
      channel_max: this.opts.maxSessions - 1,
      ...(this.opts.idleTimeout > 0 ? { idle_time_out: this.opts.idleTimeout } : {}),
    };
  }

  /** Closes a peer's connection for breaking a bound: a close frame with `condition` once open, else just the socket. */
  private refuse(peer: Peer, condition: string, reason: string): void {
    if (peer.closing) return;
    this.refused++;
    this.opts.log(`closing ${peer.label}${peer.user ? ` (${peer.user})` : ''}: ${reason} (${condition})`);
    const conn = peer.conn;
    if (conn?.is_remote_open()) closeNow(conn, { condition, description: reason } as AmqpError);
    this.hangUp(peer);
  }

  /** Stops reading from a peer, ends its socket and destroys it if it does not go within a second. */
  private hangUp(peer: Peer, reason?: string): void {
    if (reason) {
      this.refused++;
      this.opts.log(`closing ${peer.label}: ${reason}`);
    }
    peer.closing = true;
    peer.guard?.trip();
    if (peer.timer) clearTimeout(peer.timer);
    // Read nothing more: a peer streaming junk meets a full TCP window, not a router reading it.
    peer.socket.pause();
    peer.socket.end();
    peer.timer = setTimeout(() => peer.socket.destroy(), 1000);
  }

  private readError(peer: Peer, err: Error): void {
    // AMQP 1.0 §2.2, as for a foreign header (see accept): a client that skipped SASL where the
    // router requires a login gets the SASL header before the close, not a bare close.
    if (peer.user === undefined && headerMismatch(err) === 'sasl') peer.socket.write(SASL_HEADER);
    const framing = err.name === 'ProtocolError';
    // rhea hands a field of the wrong AMQP type (an attach whose name is a uint) or a missing one (a
    // transfer with no payload) to Node, whose TypeError names no frame: say what the peer got wrong first.
    const text =
      err instanceof RangeError
        ? `cannot decode a frame: ${err.message}`
        : err instanceof TypeError
          ? `cannot decode a frame: a field missing or of the wrong type (${err.message})`
          : err.message;
    this.refuse(peer, framing ? 'amqp:connection:framing-error' : 'amqp:decode-error', text);
  }

  private oversize(peer: Peer, delivery: Delivery, bytes: number): void {
    const max = this.opts.maxMessageSize;
    this.forwarder.counters.rejected++;
    this.opts.log(`rejected a message from ${peer.label} at ${bytes} bytes: larger than ${max}`);
    try {
      delivery.reject({ condition: 'amqp:link:message-size-exceeded', description: `message exceeds ${max} bytes` } as AmqpError);
    } catch {
      // link already gone
    }
  }

  /** The socket closed: whatever the reason, forget the connection and its rhea timers. */
  private gone(peer: Peer): void {
    if (peer.timer) clearTimeout(peer.timer);
    peer.timer = undefined;
    peer.releaseAssembly?.();
    peer.releaseAssembly = undefined;
    const conn = peer.conn;
    if (!conn) return;
    clearRheaTimers(conn);
    this.dropConnection(conn);
    this.peers.delete(conn);
  }

  /**
   * Takes no new connections at once, tells every client to go elsewhere (`forced`), drops what
   * is left after a moment; bounded whatever the clients do.
   */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.forwarder.stop();
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
    for (const p of this.peers.values()) if (p.timer) clearTimeout(p.timer);
    this.sockets.clear();
    this.connections.clear();
    this.peers.clear();
    await closed;
  }

  private rulesOf(conn: Connection): UserEntry | undefined {
    const user = this.peers.get(conn)?.user;
    return user !== undefined ? this.users?.rules(user) : undefined;
  }

  /** Counts a new link against its connection's limit; false (and the link refused) past it. */
  private admitLink(link: Sender | Receiver): boolean {
    const peer = this.peers.get(link.connection);
    // Its socket closed already (a login checked after the client hung up, whose buffered
    // attaches rhea then replayed): registered, it stayed a receiver of its address for good,
    // and messages forwarded to it were never settled.
    if (!peer) return false;
    // AMQP 1.0 §2.4.1: nothing but an open comes first. rhea took begin and attach before it, and
    // such a link was registered and routed to (and left behind when the peer went).
    if (!this.connections.has(link.connection)) {
      this.refuse(peer, 'amqp:not-allowed', 'a link attached before the connection was opened');
      return false;
    }
    peer.links++;
    this.counted.add(link);
    if (peer.links <= this.opts.maxLinks) return true;
    const reason = `link limit of ${this.opts.maxLinks} per connection reached`;
    // A peer that keeps attaching after refusals is not going to stop.
    if (peer.links > 2 * this.opts.maxLinks) this.refuse(peer, 'amqp:resource-limit-exceeded', reason);
    else link.close({ condition: 'amqp:resource-limit-exceeded', description: reason } as AmqpError);
    return false;
  }

  /**
   * Refuses a link the user's rules do not allow. A refused link is detached at once, so it never
   * counts against --max-links: a client attaching forbidden links in a loop wrote one log line
   * per link (22,000 in 5 s from one connection). Each connection's lines are throttled as
   * refusals at the connection limits are (per connection, so one client's flood does not hide
   * another's first refusal), and a connection refused more links than --max-links is closed.
   */
  private deny(link: Sender | Receiver, direction: string, address: string | undefined): void {
    const peer = this.peers.get(link.connection);
    if (peer && peer.denied.count >= this.opts.maxLinks) {
      this.refuse(peer, 'amqp:unauthorized-access', `more than ${this.opts.maxLinks} links refused by its address rules`);
      return;
    }
    this.refused++;
    const more = peer ? peer.denied.tick() : '';
    if (more !== undefined) {
      this.opts.log(`refused ${peer?.label}${peer?.user ? ` (${peer.user})` : ''}: may not ${direction} ${logAddress(address)}${more}`);
    }
    link.close({
      condition: 'amqp:unauthorized-access',
      description: `not allowed to ${direction} ${JSON.stringify(address)}`,
    } as AmqpError);
  }

  private wire(): void {
    const c = this.container;
    c.on('connection_open', (ctx: EventContext) => {
      const conn = ctx.connection;
      const peer = this.peers.get(conn);
      // No peer: its socket closed while its login was checked, and rhea replays the open it had
      // buffered. Counted as open, it was never closed again (`connection open from undefined`).
      if (!peer || peer.closing) return;
      this.handshakes.get(tcpOf(peer.socket))?.done();
      // A client that skipped SASL (allowed only with ANONYMOUS offered) is anonymous.
      peer.user ??= 'anonymous';
      this.connections.add(conn);
      // What waited for this socket to take its writes (see WRITE_BACKLOG_BYTES) goes out.
      peer?.socket.on('drain', () => this.forwarder.drainConnection(conn));
      const props = conn.properties as Record<string, unknown> | undefined;
      const product = props?.product ? ` product=${String(props.product)}` : '';
      this.opts.log(`connection open from ${peer?.label} user=${peer?.user} container=${conn.container_id}${product}`);
    });
    const gone = (ctx: EventContext) => this.dropConnection(ctx.connection);
    c.on('connection_close', gone);
    c.on('disconnected', gone);
    c.on('connection_error', () => {});
    c.on('error', (err: Error) => this.opts.log(`router: ${err.message}`));
    c.on('protocol_error', (err: Error) => this.opts.log(`router: protocol error ${err.message}`));
    // Once per link, whichever comes first: its own detach or its session's end.
    const linkGone = (link: Sender | Receiver) => {
      if (!this.counted.delete(link)) return;
      const peer = this.peers.get(link.connection);
      if (peer) peer.links--;
    };
    const f = this.forwarder;
    const dropLink = (link: Sender | Receiver) => {
      linkGone(link);
      if (link.is_sender()) f.dropConsumer(link as Sender);
      else f.dropProducer(link as Receiver);
    };
    c.on('session_open', (ctx: EventContext) => {
      const peer = this.peers.get(ctx.connection);
      if (peer && ++peer.sessions > this.opts.maxSessions) {
        this.refuse(peer, 'amqp:resource-limit-exceeded', `session limit of ${this.opts.maxSessions} per connection reached`);
      }
    });
    c.on('session_close', (ctx: EventContext) => {
      const peer = this.peers.get(ctx.connection);
      if (peer) peer.sessions--;
      // A peer may end a session without detaching its links first (the end implies the
      // detaches), and rhea raises no link events then: without this, a consumer on the ended
      // session kept being offered messages that could never be settled, and its links counted
      // against the connection until it closed.
      const links = (ctx.session as unknown as { links?: Record<string, Sender | Receiver> }).links;
      for (const link of Object.values(links ?? {})) dropLink(link);
    });
    c.on('sender_open', (ctx: EventContext) => {
      const sender = ctx.sender!;
      if (!this.admitLink(sender)) return;
      const source = sender.source as { address?: string; dynamic?: boolean } | undefined;
      const rules = this.rulesOf(sender.connection);
      if (rules && !source?.dynamic && !allowed(rules.receive, source?.address ?? '')) {
        this.deny(sender, 'receive from', source?.address);
        return;
      }
      f.onConsumer(sender);
    });
    c.on('receiver_open', (ctx: EventContext) => {
      const receiver = ctx.receiver!;
      if (!this.admitLink(receiver)) return;
      const target = targetAddress(receiver);
      const rules = this.rulesOf(receiver.connection);
      if (rules && target !== undefined && !mayAddress(rules, target)) {
        this.deny(receiver, 'send to', target);
        return;
      }
      f.onProducer(receiver);
    });
    c.on('sender_close', (ctx: EventContext) => dropLink(ctx.sender!));
    c.on('receiver_close', (ctx: EventContext) => dropLink(ctx.receiver!));
    c.on('sender_error', () => {});
    c.on('receiver_error', () => {});
    c.on('session_error', () => {});
    c.on('message', (ctx: EventContext) => this.onMessage(ctx));
    c.on('sendable', (ctx: EventContext) => f.drain(ctx.sender!));
    c.on('sender_draining', (ctx: EventContext) => f.onDraining(ctx.sender!));
    for (const kind of ['accepted', 'released', 'rejected', 'modified'] as const) {
      c.on(kind, (ctx: EventContext) => f.onOutcome(ctx, kind));
    }
  }

  private onMessage(ctx: EventContext): void {
    const receiver = ctx.receiver!;
    const delivery = ctx.delivery!;
    if (!spendCredit(receiver)) {
      this.refuseOverCredit(receiver, delivery);
      return;
    }
    if (discarded(delivery)) {
      // Rejected while it arrived (too large): only its credit is left to give back.
      this.table.topUp(receiver);
      return;
    }
    if (this.users && targetAddress(receiver) === undefined) {
      // Anonymous relay: the rules apply to each message's `to`.
      const rules = this.rulesOf(receiver.connection);
      const to = ctx.message?.to;
      if (rules && !mayAddress(rules, String(to ?? ''))) {
        this.forwarder.counters.rejected++;
        try {
          delivery.reject({
            condition: 'amqp:unauthorized-access',
            description: `not allowed to send to ${JSON.stringify(to)}`,
          } as AmqpError);
        } catch {
          // link already gone
        }
        this.table.topUp(receiver);
        return;
      }
    }
    this.forwarder.onMessage(ctx);
  }

  /**
   * A peer sent a transfer the router gave it no credit for: it ignores flow control, and what it
   * sends would pile up in the router. Its link is detached with
   * `amqp:link:transfer-limit-exceeded` (as the AMQP 1.0 spec names it); that transfer is rejected.
   */
  private refuseOverCredit(receiver: Receiver, delivery: Delivery): void {
    this.forwarder.counters.rejected++;
    const error = { condition: 'amqp:link:transfer-limit-exceeded', description: 'transfer sent without link credit' } as AmqpError;
    const peer = this.peers.get(receiver.connection);
    this.opts.log(
      `link detached: transfer without credit from ${peer?.label ?? 'a peer'} on ${JSON.stringify(targetAddress(receiver) ?? '(anonymous relay)')}`,
    );
    try {
      delivery.reject(error);
      receiver.close(error);
    } catch {
      // link already gone
    }
  }

  private dropConnection(conn: Connection): void {
    const wasOpen = this.connections.delete(conn);
    clearRheaTimers(conn);
    // Whether or not it got as far as open: its links go with it, whenever they were made.
    for (const sender of this.table.consumerLinks()) if (sender.connection === conn) this.forwarder.dropConsumer(sender);
    for (const a of this.table.all()) {
      for (const r of [...a.producers]) if (r.connection === conn) this.forwarder.dropProducer(r);
    }
    if (!wasOpen) return;
    const peer = this.peers.get(conn);
    this.opts.log(`connection closed ${peer?.label ?? ''} container=${conn.container_id}`);
  }
}

/**
 * One kind of log line at most once per LIMIT_LOG_INTERVAL_MS: the log is the disk's, and a
 * flood of refusals is the peer's.
 */
class Throttle {
  /** Events so far. */
  count = 0;
  private countAtLine = 0;
  private lineAt = 0;

  /** Counts one event; undefined when its line is held back, else the suffix the line ends with (what was held back). */
  tick(): string | undefined {
    this.count++;
    const now = Date.now();
    if (now - this.lineAt < LIMIT_LOG_INTERVAL_MS) return undefined;
    const more = this.count - this.countAtLine - 1;
    this.lineAt = now;
    this.countAtLine = this.count;
    return more > 0 ? ` (and ${more} more since the last such line)` : '';
  }
}

/** A peer's address in a log line: quoted (newlines escaped), and cut short when long, since the peer chooses it. */
function logAddress(address: string | undefined): string {
  const quoted = JSON.stringify(address) ?? 'undefined';
  return quoted.length <= 200 ? quoted : `${quoted.slice(0, 200)}…" (${address!.length} characters)`;
}

/** Whether a user with `rules` may send to `address`: its send prefixes, and always to dynamic (reply) addresses. */
function mayAddress(rules: UserEntry, address: string): boolean {
  return address.startsWith('_dynamic/') || allowed(rules.send, address);
}
