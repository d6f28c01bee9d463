import * as diagnostics_channel from 'node:diagnostics_channel';
import { EventEmitter } from 'node:events';
import net, { type Socket } from 'node:net';
import os from 'node:os';
import amqplib, { type ChannelModel } from 'amqplib';
import type { HermodConfig } from '../../config/index.js';
import type { TransportHost, TransportUrl } from '../../config/transport-url.js';
import { backoffDelay } from '../../core/backoff.js';
import { AccessRefused, ConfigError } from '../../core/errors.js';
import { uuid } from '../../core/ids.js';
import { ConnectGate } from '../connect-gate.js';
import type { ConnectionState } from '../driver.js';
import { CLOSE_GRACE_MS, within } from '../driver-base.js';
import { HostRotation, hostLabel } from '../hosts.js';
import { isPlainTextPeer, probeProtocol, tlsMismatch, tlsPortSpeaks, wrongProtocol } from '../protocol-probe.js';
import { tlsOptions } from '../tls.js';
import { decodeHeadersLeniently } from './header-frames.js';
import { encodePublishes } from './publish-frames.js';

/** Runs on every (re)connect, before the connection counts as open: channels, topology, consumers. */
export type SetupHook = (model: ChannelModel) => Promise<void>;

/**
 * amqplib writes every frame with its own `socket.write`, and with `noDelay` each becomes its own
 * syscall and TCP segment. Corking on the first write and uncorking once the current tick's
 * work is done turns a burst (acks, replies, publishes of one batch of deliveries) into one
 * `writev`, without adding latency: the flush happens before the event loop moves on.
 */
function coalesceWrites(model: ChannelModel): void {
  const socket = (
    model as unknown as { connection?: { stream?: { write: (...a: unknown[]) => boolean; cork?: () => void; uncork?: () => void } } }
  ).connection?.stream;
  if (!socket || typeof socket.cork !== 'function' || typeof socket.uncork !== 'function') return;
  const write = socket.write.bind(socket);
  let corked = false;
  const uncork = () => {
    corked = false;
    socket.uncork!();
  };
  socket.write = (...args: unknown[]) => {
    if (!corked) {
      corked = true;
      socket.cork!();
      process.nextTick(uncork);
    }
    return write(...args);
  };
}

/**
 * Opens one AMQP connection to a host. `onSocket` gets the TCP socket as soon as it exists, so
 * that a close during the handshake can drop it instead of waiting for the connect timeout.
 * Tests hand in a fake.
 */
export type Dial = (host: TransportHost, onSocket: (s: Socket) => void) => Promise<ChannelModel>;

/**
 * The socket `fn` creates synchronously with `net.connect` (amqplib does so inside `connect()`),
 * seen through Node's `net.client.socket` diagnostics channel. For TLS, {@link open} makes the TCP
 * socket itself and hands it to amqplib's `tls.connect`, so it is seen too.
 */
function capturingSocket<T>(fn: () => T, onSocket: (s: Socket) => void): T {
  const seen = (m: unknown) => onSocket((m as { socket: Socket }).socket);
  diagnostics_channel.subscribe('net.client.socket', seen);
  try {
    return fn();
  } finally {
    diagnostics_channel.unsubscribe('net.client.socket', seen);
  }
}

/** The socket under an open amqplib connection. */
function socketOfModel(model: ChannelModel): { destroy(): void } | undefined {
  return (model as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream;
}

/**
 * Drops an amqplib connection whose broker does not answer its close (blocked, frozen). amqplib
 * stops its heartbeat timers only when a close completes or the socket ends; a socket destroyed
 * here does neither, and those intervals would keep the process alive.
 */
function dropModel(model: ChannelModel): void {
  const c = (model as unknown as { connection?: { heartbeater?: { clear(): void } } }).connection;
  c?.heartbeater?.clear();
  socketOfModel(model)?.destroy();
}

/**
 * Broker answers that retrying at full speed cannot fix: bad credentials, missing vhost,
 * untrusted certificates. Read from the text: amqplib reports a refused handshake (login,
 * connection.open) as a plain Error naming the close frame, with no reply code on it.
 *
 * `opened`: the failure came after the connection was open, from a setup hook's declare. Every
 * RabbitMQ channel error names its vhost ("NOT_FOUND - home node … of durable queue 'q' in vhost
 * 'v' is down or inaccessible", as a quorum queue or stream answers while its node recovers), so
 * there only a refused permission (403 ACCESS_REFUSED) counts: taken as a refused login, a broker
 * restart left a server deaf for `intervalMax` and its callers with AccessRefused.
 */
export function isAuthProblem(message: string, opened = false): boolean {
  if (opened) return /ACCESS_REFUSED|ACCESS-REFUSED/.test(message);
  // Certificate problems are configuration too: a retry cannot fix them.
  return /ACCESS_REFUSED|NOT_ALLOWED|access_refused|not_allowed|authentication|vhost|certificate|CERT_|self.signed/i.test(message);
}

function isCertificateProblem(message: string): boolean {
  return /certificate|CERT_|self.signed/i.test(message);
}

/**
 * How amqplib fails when the peer is no AMQP 0-9-1 broker: it closes the socket (an AMQP 1.0
 * peer refusing the 0-9-1 header, as hermod-router does) or answers bytes that are no 0-9-1
 * frame (an AMQP 1.0 header). Such failures are worth asking the peer what it speaks.
 */
function isHandshakeFailure(message: string): boolean {
  return /opening handshake|frame|Expected ConnectionStart|Unexpected|Unknown|Invalid/i.test(message);
}

/**
 * One AMQP 0-9-1 connection that stays up: it connects to the URL's hosts round-robin, runs
 * its setup hooks (the topology, declared as data by its owners) on every connect, and after a
 * loss reconnects with capped exponential backoff and jitter. Every connection and channel has
 * an error listener, so a broker or network failure never becomes an uncaught exception.
 *
 * Events: `state` (ConnectionState), `lost` (after an open connection closed), `setup-failed`
 * (a hook threw on a fresh connection). No `error` event is ever emitted. A hook that throws a
 * ConfigError ends the loop for good (state `failed` after a reconnect): retrying cannot help.
 *
 * Stopping: {@link holdOpen} keeps the connection as it is (so delivered messages can still be
 * settled) but ends the loop at the next loss or failure instead of reconnecting; {@link close}
 * ends it in any state within CLOSE_GRACE_MS, dropping the socket of a peer that does not answer.
 */
export class RabbitConnection extends EventEmitter {
  private model: ChannelModel | undefined;
  /** The connection being set up (hooks running) or open; what close() must close. */
  private current: ChannelModel | undefined;
  /** The broker sent connection.blocked (a resource alarm) and has not unblocked it since. */
  private blocked = false;
  /** The socket of a connect in progress. */
  private dialing: Socket | undefined;
  private noReconnect = false;
  private closing: Promise<void> | undefined;
  private readonly hooks: SetupHook[] = [];
  private readonly hosts: HostRotation;
  private readonly gate: ConnectGate;
  private lastError: string | undefined;
  private authProblem = false;
  /** Why retrying cannot help (a refused login, the wrong protocol): the error waiters fail with. */
  private refusal: ((what: string) => Error) | undefined;
  /** Failed connect attempts since the last successful one. */
  private failedAttempts = 0;
  /** Failed attempts over the connection's life (the gate's per-send retry budget counts from it). */
  private failuresEver = 0;
  private closed = false;
  /** It was open once: a later give-up is news only a `failed` state can carry. */
  private wasConnected = false;
  /** Gave up for good (see {@link refusal}); unlike `closed`, waiters learn why. */
  private failed = false;
  private started = false;
  private sleepTimer: NodeJS.Timeout | undefined;
  /** A {@link recycle} waiting for its delay; how many came in a row, and when the last did. */
  private recycleTimer: NodeJS.Timeout | undefined;
  /** Why the owner asked for the {@link recycle} under way, for the `disconnected` state. */
  private recycleReason: string | undefined;
  private recycles = 0;
  private lastRecycle = 0;
  /** Closes in progress, so that close() during a recycle waits for it instead of closing twice. */
  private readonly modelClosing = new WeakMap<ChannelModel, Promise<void>>();
  /** Ends a protocol probe in progress on close. */
  private readonly aborter = new AbortController();
  private wakeSleep: (() => void) | undefined;
  /** Hosts whose failed handshake a protocol probe found nothing to say of, since the last connect. */
  private readonly probedHosts = new Set<string>();
  /** When the current backoff sleep ends (Date.now() clock), while one runs. */
  private sleepUntil: number | undefined;

  constructor(
    private readonly url: TransportUrl,
    private readonly config: HermodConfig,
    readonly role: string,
    private readonly dial: Dial = (h, onSocket) => capturingSocket(() => this.open(h), onSocket),
  ) {
    super();
    this.hosts = new HostRotation(url);
    this.gate = new ConnectGate(
      () => ({
        closed: this.closed,
        connected: this.model !== undefined,
        failedAttempts: this.failedAttempts,
        failuresEver: this.failuresEver,
        refused: this.refusal ?? this.authProblem,
        problem: `cannot connect to ${this.hosts.describe()}${this.lastError ? `: ${this.lastError}` : ''}`,
      }),
      (attempts) => this.hurry(attempts),
    );
  }

  get isOpen(): boolean {
    return this.model !== undefined;
  }

  /** Adds a hook; runs it now if connected (a failure there is the caller's to handle). */
  async addHook(hook: SetupHook): Promise<void> {
    this.hooks.push(hook);
    if (this.model) await hook(this.model);
  }

  /**
   * Closes the open connection so that the loop dials again and every setup hook runs anew: for
   * an owner whose channel the broker closed while the connection stayed up (a declare refused
   * after a consumer was cancelled, an acknowledgement it did not know), which nothing else
   * would set up again. Another connection by now, or stopping: nothing to do.
   */
  recycle(model: ChannelModel, reason?: string): void {
    // Only the connection the owner's channel was on: after a loss the loop dials by itself.
    if (this.model !== model || this.over || this.recycleTimer) return;
    // Said with the disconnect: the log showed "disconnected" and nothing else when RabbitMQ's
    // consumer_timeout closed a server's channel.
    this.recycleReason = reason;
    // A broker that closes the channel again right after every setup must not get a reconnect
    // storm: the first recycle in a while is at once, later ones back off as failed attempts do.
    const r = this.config.rabbit;
    const now = Date.now();
    this.recycles = now - this.lastRecycle > r.intervalMax ? 1 : this.recycles + 1;
    this.lastRecycle = now;
    const delay =
      this.recycles <= 1 ? 0 : backoffDelay(this.recycles - 1, { initial: r.retryInterval, factor: r.retryBackoff, max: r.intervalMax });
    this.recycleTimer = setTimeout(() => {
      this.recycleTimer = undefined;
      if (this.model === model && !this.over) this.closeModel(model).catch(() => {});
    }, delay);
    // The connection itself keeps the process up; a stop meanwhile makes this a no-op.
    this.recycleTimer.unref();
  }

  /** Starts the connect loop (idempotent). */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    void this.loop();
  }

  private setState(s: ConnectionState): void {
    this.emit('state', s);
  }

  private async open(h: TransportHost): Promise<ChannelModel> {
    const r = this.config.rabbit;
    const user = h.username ?? 'guest';
    const pass = h.password ?? 'guest';
    const socketOptions: Record<string, unknown> = {
      noDelay: true,
      timeout: r.connectTimeout,
      credentials: r.loginMethod === 'PLAIN' ? amqplib.credentials.plain(user, pass) : amqplib.credentials.amqplain(user, pass),
      clientProperties: {
        connection_name: `${(process.argv[1] ?? 'node').split('/').pop()}:${process.pid}:${this.role}:${uuid()}`,
        product: 'hermod',
        platform: `Node.js ${process.version}`,
        host: os.hostname(),
      },
    };
    if (this.url.tls) {
      // Our own TCP socket under amqplib's TLS one: it is created here with net.connect, so the
      // dialing capture sees it and a close during the TLS handshake drops it at once.
      // The files first: one that became unreadable since the transport was made throws here,
      // before a socket is opened that nothing would close.
      const secure = tlsOptions(this.config.tls);
      const raw = net.connect({ host: h.hostname, port: h.port });
      raw.on('error', () => {}); // reported through the TLS socket amqplib listens on
      // SNI takes host names only (RFC 6066); Node warns when given an address.
      const sni = net.isIP(h.hostname) === 0 ? { servername: h.hostname } : {};
      Object.assign(socketOptions, secure, sni, { socket: raw });
    }
    return amqplib.connect(
      {
        protocol: this.url.tls ? 'amqps' : 'amqp',
        hostname: h.hostname,
        port: h.port,
        username: user,
        password: pass,
        vhost: this.url.virtualHost ?? '/',
        heartbeat: r.heartbeat,
        frameMax: r.frameMax,
      } as never,
      socketOptions as never,
    ) as unknown as Promise<ChannelModel>;
  }

  /**
   * Brings the next attempt forward to the backoff a waiter that has seen `attempts` failures of
   * its own would have (see ConnectGate): the connection's own backoff keeps growing through an
   * outage, a new send's starts again at `retryInterval`. Only a backoff sleep is shortened.
   */
  private hurry(attempts: number): void {
    if (!this.wakeSleep || this.authProblem || this.refusal || this.sleepUntil === undefined) return;
    const r = this.config.rabbit;
    const at = Date.now() + backoffDelay(Math.max(1, attempts), { initial: r.retryInterval, factor: r.retryBackoff, max: r.intervalMax });
    if (at >= this.sleepUntil) return;
    clearTimeout(this.sleepTimer);
    this.sleepUntil = at;
    this.sleepTimer = setTimeout(this.wakeSleep, at - Date.now());
  }

  /**
   * The wait before the next attempt. As kombu (oslo's rabbit driver) fails over: the next host at
   * once until every host of the URL has been tried in this round, then the backoff, which grows
   * per round. A dead first host cost every new connection a full retryInterval before the
   * second host was tried.
   */
  private backoff(): number {
    const r = this.config.rabbit;
    const hosts = this.url.hosts.length;
    if (this.failedAttempts % hosts !== 0) return 0;
    if (this.authProblem || this.refusal) return r.intervalMax;
    return backoffDelay(this.failedAttempts / hosts, { initial: r.retryInterval, factor: r.retryBackoff, max: r.intervalMax });
  }

  /**
   * The owner is stopping: no reconnect from now on. A connection that is open or being set up
   * stays until {@link close} (its channels may hold deliveries to settle); one that is not
   * (dialing, backing off) is closed now.
   */
  async holdOpen(): Promise<void> {
    this.noReconnect = true;
    if (!this.current) await this.close();
  }

  /** The loop must end: closed, or stopping and the connection is gone. */
  private get over(): boolean {
    return this.closed || this.noReconnect || this.failed;
  }

  private async loop(): Promise<void> {
    while (!this.over) {
      const h = this.hosts.next();
      const host = hostLabel(h);
      let model: ChannelModel | undefined;
      let socket: Socket | undefined;
      // Set when the connection closes; read only by the catch below, while hooks still ran.
      let lostInSetup: Error | undefined;
      try {
        model = await this.dial(h, (s) => {
          this.dialing = s;
          socket = s;
        });
        this.dialing = undefined;
        this.current = model;
        this.blocked = false;
        coalesceWrites(model);
        encodePublishes(model);
        decodeHeadersLeniently(model);
        model.on('error', (err: Error) => {
          this.lastError = err.message;
        });
        model.on('blocked', (reason: string) => {
          this.blocked = true;
          this.setState({ state: 'blocked', host, reason });
        });
        model.on('unblocked', () => {
          this.blocked = false;
          this.setState({ state: 'unblocked', host });
        });
        const closedP = new Promise<Error | undefined>((resolve) =>
          model!.once('close', (err?: Error) => {
            lostInSetup = err ?? new Error('the broker closed the connection');
            resolve(err);
          }),
        );
        if (this.over) {
          await this.closeModel(model);
          return;
        }
        for (const hook of [...this.hooks]) await hook(model);
        // Stopping but not closed: the owner may still settle deliveries on it; close() ends it.
        if (this.closed) {
          await this.closeModel(model);
          return;
        }
        this.model = model;
        this.wasConnected = true;
        this.failedAttempts = 0;
        this.probedHosts.clear();
        this.authProblem = false;
        this.refusal = undefined;
        this.lastError = undefined;
        this.setState({ state: 'connected', host });
        this.gate.wake();
        const closedWith = await closedP;
        const err = closedWith ?? (this.recycleReason === undefined ? undefined : new Error(this.recycleReason));
        this.recycleReason = undefined;
        this.model = undefined;
        this.current = undefined;
        if (this.closed) return;
        if (err) this.lastError = err.message;
        this.setState({ state: 'disconnected', host, ...(err ? { error: err } : {}) });
        this.emit('lost', err);
        this.gate.wake();
        // Stopping: a lost connection stays lost (the broker requeues what it had delivered).
        if (this.noReconnect) {
          this.closed = true;
          this.gate.wake();
          return;
        }
        // Reconnect at once after a loss (the next host may be fine); back off only on failures.
        continue;
      } catch (err) {
        this.dialing = undefined;
        this.current = undefined;
        // The connection itself went (a socket cut, or RabbitMQ closing it with 541 when a quorum
        // queue's Raft cluster did not start in time under load): every pending declare fails
        // with amqplib's "Channel ended", which says nothing of the hook. That is a loss like any
        // other, retried within the waiters' deadline, not a setup that cannot work.
        const lost = model !== undefined && lostInSetup !== undefined && !(err instanceof ConfigError);
        if (model && !this.closed && !lost) this.emit('setup-failed', err);
        // A hook refused as misconfigured (a declare the broker refuses for other flags, set by a
        // peer while we were away) fails the same way on every try: give up instead of retrying
        // forever. Waiters fail with the ConfigError; a connection that had been up reports the
        // end as a `failed` state, since nobody is waiting on it to hear otherwise.
        // A dial that could not start (a TLS file gone since the transport was made, say during a
        // certificate rotation) is retried like a refused connect: the file may come back.
        if (model && err instanceof ConfigError) {
          this.refusal = () => err;
          this.lastError = err.message;
          this.current = undefined;
          this.model = undefined;
          this.failed = true;
          void this.closeModel(model);
          if (this.wasConnected) this.setState({ state: 'failed', host, error: err });
          this.gate.wake();
          return;
        }
        this.lastError = lost ? `the connection was lost while it was being set up: ${lostInSetup!.message}` : (err as Error).message;
        // amqplib reports a refused connection.open (missing vhost, no permission on it) only
        // as an unexpected frame; say what it means.
        if (/Expected ConnectionOpenOk; got <ConnectionClose/.test(this.lastError)) {
          this.lastError = `the broker refused to open vhost '${this.url.virtualHost ?? '/'}' (NOT_ALLOWED: no such vhost, or no permission on it)`;
        }
        // amqplib's socket timeout covers the handshake too, and says "connect ETIMEDOUT" of a
        // peer that took the TCP connection (amqplib then wrote its header) and never answered.
        if (!model && this.lastError === 'connect ETIMEDOUT' && (socket?.bytesWritten ?? 0) > 0) {
          this.lastError = `no AMQP answer within ${this.config.rabbit.connectTimeout} ms (the peer took the TCP connection and did not answer the AMQP 0-9-1 handshake: not a RabbitMQ node, or one too busy to answer; rabbit.connectTimeout)`;
        }
        this.authProblem = isAuthProblem(this.lastError, model !== undefined);
        // amqplib writes its header once the TCP connection is up: bytes written mean the peer answered the connect.
        this.refusal = await this.refusalOf(h, this.lastError, !model && (socket?.bytesWritten ?? 0) > 0);
        this.failedAttempts++;
        this.failuresEver++;
        if (model) void this.closeModel(model);
        this.model = undefined;
        this.gate.wake();
        if (this.over) {
          this.closed = true;
          this.gate.wake();
          return;
        }
      }
      const delay = this.backoff();
      this.setState({
        state: 'reconnecting',
        host,
        attempt: this.failedAttempts,
        delayMs: delay,
        ...(this.lastError ? { reason: this.lastError } : {}),
        ...(this.refusal ? { refused: true } : {}),
      });
      await new Promise<void>((resolve) => {
        this.wakeSleep = resolve;
        this.sleepUntil = Date.now() + delay;
        this.sleepTimer = setTimeout(resolve, delay);
      });
      this.wakeSleep = undefined;
      this.sleepUntil = undefined;
      this.sleepTimer = undefined;
    }
  }

  /**
   * Whether a failed attempt on `h` cannot be helped by retrying, and the error to say so: a
   * refused login or vhost (AccessRefused), or a peer that turns out to speak AMQP 1.0
   * (WrongProtocol, asked only after a handshake failure on a socket that did connect; over TLS
   * the probe runs inside TLS with the client's own TLS options).
   */
  private async refusalOf(h: TransportHost, message: string, handshakeFailed: boolean): Promise<((what: string) => Error) | undefined> {
    if (this.authProblem) {
      if (isCertificateProblem(message)) return undefined;
      return (what) =>
        new AccessRefused(
          `cannot connect to ${this.hosts.describe()}: ${message} (the broker refused the login or vhost; not retrying for ${what})`,
        );
    }
    // Closing or stopping: our own close broke the handshake, there is nobody to tell.
    if (this.over || !handshakeFailed) return undefined;
    // Probed once per host in an outage: a front end that takes TCP and closes it (a load
    // balancer whose brokers are down) fails every attempt so, and each probe opened one or two
    // connections more per attempt for the whole outage.
    const key = `${h.hostname}:${h.port}`;
    if (this.probedHosts.has(key)) return undefined;
    const found = await this.probeRefusal(h, message);
    if (!found && !this.over) this.probedHosts.add(key);
    return found;
  }

  /** What a probe of `h` says of a failed handshake: a refusal naming the URL that would work, or undefined. */
  private async probeRefusal(h: TransportHost, message: string): Promise<((what: string) => Error) | undefined> {
    const timeoutMs = Math.min(this.config.rabbit.connectTimeout, 2000);
    const scheme = this.url.scheme;
    const refuse = (error: (what: string) => Error) => {
      this.lastError = error('connecting').message;
      return error;
    };
    // rabbits:// to a plain port: what it speaks in plain text says which URL would work.
    if (this.url.tls && isPlainTextPeer(message)) {
      const plain = await probeProtocol(h, timeoutMs, this.aborter.signal);
      return plain === undefined ? undefined : refuse((what) => tlsMismatch(h, scheme, true, what, plain));
    }
    // A TLS-only listener resets a plain connection (RabbitMQ's) or closes it (Node's).
    if (!isHandshakeFailure(message) && !(!this.url.tls && /ECONNRESET/.test(message))) return undefined;
    const secure = this.url.tls ? tlsOptions(this.config.tls) : undefined;
    const speaks = await probeProtocol(h, timeoutMs, this.aborter.signal, secure);
    if (speaks === 'AMQP 1.0') return refuse((what) => wrongProtocol(h, 'AMQP 0-9-1', what, this.url.tls));
    // No header at all from a plain connect: a TLS-only port closes on one.
    if (speaks !== undefined || this.url.tls) return undefined;
    const inside = await tlsPortSpeaks(h, timeoutMs, this.aborter.signal);
    if (inside === false) return undefined;
    return refuse((what) => tlsMismatch(h, scheme, false, what, inside === 'unknown' ? undefined : inside));
  }

  /** Closes `model`, or drops its socket when the broker does not answer within the grace. */
  private closeModel(model: ChannelModel, graceMs = CLOSE_GRACE_MS): Promise<void> {
    // amqplib refuses a second close of a connection that is closing (a close() during a recycle).
    let p = this.modelClosing.get(model);
    if (!p) {
      p = this.closeModelOnce(model, graceMs);
      this.modelClosing.set(model, p);
    }
    return p;
  }

  private async closeModelOnce(model: ChannelModel, graceMs: number): Promise<void> {
    const closing = model.close().then(() => true);
    const done = graceMs > 0 ? await within(closing, graceMs) : false;
    closing.catch(() => {});
    if (!done) dropModel(model);
  }

  /**
   * Waits for the connection. Fails with TransportError when the retry budget is spent (`retry`
   * failed attempts; -1 = no limit), at once on bad credentials or vhost, or at `deadline`;
   * with ClosedError once closed.
   */
  async ready(deadline: number, retry: number, what: string): Promise<ChannelModel> {
    this.start();
    await this.gate.until(() => this.model !== undefined, deadline, retry, what);
    return this.model!;
  }

  /**
   * Closes the connection and stops reconnecting, in any state: a backoff sleep ends, a connect
   * in progress has its socket dropped, an open connection gets `graceMs` to close cleanly
   * before its socket is dropped.
   */
  async close(graceMs: number = CLOSE_GRACE_MS): Promise<void> {
    // A close already under way: wait for it, so that no caller returns before the socket is shut.
    if (this.closing) return this.closing;
    this.closing = this.doClose(graceMs);
    return this.closing;
  }

  private async doClose(graceMs: number): Promise<void> {
    this.closed = true;
    this.aborter.abort();
    clearTimeout(this.recycleTimer);
    this.recycleTimer = undefined;
    if (this.sleepTimer) clearTimeout(this.sleepTimer);
    this.sleepTimer = undefined;
    this.wakeSleep?.();
    this.gate.wake();
    this.dialing?.destroy();
    this.dialing = undefined;
    const m = this.current;
    this.model = undefined;
    this.current = undefined;
    // A blocked connection is one the broker no longer reads: its close-ok cannot come.
    if (m) await this.closeModel(m, this.blocked ? 0 : graceMs);
  }
}
