import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import os from 'node:os';
import rhea from 'rhea';
import { clearRheaTimers } from '../../rhea/index.js';
import type { Connection, Container, Delivery, EventContext, Message, Receiver, Sender } from 'rhea';
import {
  ClosedError, InvalidArgument, MalformedMessage, MessageDeliveryFailure, MessageTooLarge, MessagingTimeout, TransportError,
} from '../../core/errors.js';
import { encodeJson, type Context } from '../../core/serializer.js';
import { uuidHex } from '../../core/ids.js';
import { channels, publish } from '../../core/diagnostics.js';
import type { HermodConfig } from '../../config/index.js';
import type { TransportHost, TransportUrl } from '../../config/transport-url.js';
import type { Target } from '../../core/target.js';
import type {
  ConnectionState, Driver, Failure, IncomingMessage, Listener, ListenOptions, NotificationSendOptions, Reply, RpcRequest, SendOptions,
} from '../driver.js';
import { ReplyWaiter } from '../reply-waiter.js';
import { notifyAddress, pickMode, rpcAddress, serverAddresses, type AddressingMode } from './addressing.js';

/** Delay before resending a message the peer released (no receiver yet). */
const RESEND_DELAY_MS = 50;
/**
 * Slots of rhea's per-session delivery buffer (2048, FIFO, freed only from its head) kept for
 * replies and heartbeats, so a burst of calls cannot starve the replies a server owes. An
 * overflow of that buffer corrupts the session for good, so nothing may ever push past it.
 */
const REPLY_RESERVE = 128;

/** Free slots in the outgoing delivery buffer of a link's session. */
function sessionRoom(link: Sender | undefined): number {
  const out = (link as unknown as { session?: { outgoing?: { deliveries?: { available(): number } } } } | undefined)?.session?.outgoing?.deliveries;
  return out ? out.available() : 0;
}

interface Deferred<T> { promise: Promise<T>; resolve(v: T): void; reject(e: Error): void }
function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((a, b) => { resolve = a; reject = b; });
  promise.catch(() => {});
  return { promise, resolve, reject };
}

const hostLabel = (h: TransportHost) => `${h.hostname.includes(':') ? `[${h.hostname}]` : h.hostname}:${h.port}`;

/**
 * The AMQP 1.0 driver (rhea), speaking oslo.messaging's amqp1 wire format: JSON bodies as
 * AMQP strings, routable (or legacy) addresses, one dynamic reply link per connection,
 * presettled casts and replies, call-monitor heartbeats as body-less replies. One connection
 * per transport; rhea reconnects and re-attaches links, failing over across the URL's hosts.
 */
export class Amqp1Driver extends EventEmitter implements Driver {
  readonly kind = 'amqp1';
  private readonly container: Container;
  private conn: Connection | undefined;
  private opened = deferred<void>();
  private replyReady = deferred<string>();
  private replyAddress: string | undefined;
  private replyReceiver: Receiver | undefined;
  private settledSender: Sender | undefined;
  private unsettledSender: Sender | undefined;
  private mode: AddressingMode = 'routable';
  private readonly waiter = new ReplyWaiter();
  /** Calls sent on the current connection: failed promptly when it drops. */
  private readonly inflight = new Map<string, (err: Error) => void>();
  private readonly sendWaiters = new Set<() => void>();
  private readonly subscriptions = new Set<Amqp1Listener>();
  /** Calls and casts waiting for a slot in the session buffer, oldest first. */
  private readonly roomWaiters: Array<() => void> = [];
  /** Slots promised to woken waiters that have not sent yet. */
  private reserved = 0;
  private readonly replyBacklog: Message[] = [];
  private pumpScheduled = false;
  private hostIndex = -1;
  private currentHost: TransportHost | undefined;
  private lastError: string | undefined;
  private failedAttempts = 0;
  private isOpen = false;
  private closed = false;

  constructor(readonly url: TransportUrl, private readonly config: HermodConfig) {
    super();
    const id = config.amqp1.containerName || `hermod-${os.hostname()}-${process.pid}-${uuidHex().slice(0, 8)}`;
    this.container = rhea.create_container({ id });
    this.container.on('error', () => {});
    for (const kind of ['accepted', 'released', 'rejected', 'modified']) {
      this.container.on(kind, (ctx: EventContext) => this.onOutcome(ctx, kind));
    }
  }

  private get vhost(): string | undefined {
    return this.url.virtualHost || undefined;
  }

  private setState(s: ConnectionState): void {
    this.emit('state', s);
    publish(channels.connection, () => ({ ...s, driver: 'amqp1' }));
  }

  /** Opens the connection on first use; later callers share it. */
  private start(): void {
    if (this.conn || this.closed) return;
    const a = this.config.amqp1;
    const tlsOptions = this.url.tls ? this.tlsOptions() : {};
    const conn: Connection = this.container.create_connection({
      connection_details: () => {
        this.hostIndex = (this.hostIndex + 1) % this.url.hosts.length;
        const h = this.url.hosts[this.hostIndex]!;
        this.currentHost = h;
        // SASL: PLAIN with the host's credentials, ANONYMOUS without.
        const o = (conn as unknown as { options: Record<string, unknown> }).options;
        if (h.username !== undefined) { o.username = h.username; o.password = h.password ?? ''; } else { delete o.username; delete o.password; }
        const connect = this.url.tls
          ? (port: number, host: string, options: tls.ConnectionOptions, cb: () => void) => tls.connect({ ...options, port, host, servername: host }, cb)
          : (port: number, host: string, _o: unknown, cb: () => void) => { const s = net.connect({ port, host, noDelay: true }, cb); return s; };
        return { host: h.hostname, port: h.port, connect, options: tlsOptions } as never;
      },
      reconnect: true,
      initial_reconnect_delay: a.retryInterval,
      max_reconnect_delay: a.intervalMax,
      // rhea treats most close conditions as fatal by default; a router restart or a forced
      // close must lead to a reconnect, while auth failures must not cause a storm.
      non_fatal_errors: ['amqp:connection:forced', 'amqp:connection:framing-error', 'amqp:internal-error', 'amqp:resource-limit-exceeded'],
      idle_time_out: a.idleTimeout || undefined,
      properties: { process: process.argv[1] ? process.argv[1].split('/').pop() : 'node', pid: process.pid, node: os.hostname() },
    } as never);
    this.conn = conn;
    (conn as unknown as { connect(): void }).connect();
    conn.on('connection_open', (ctx: EventContext) => this.onOpen(ctx));
    conn.on('disconnected', (ctx: EventContext) => this.onDisconnected(ctx));
    conn.on('connection_close', (ctx: EventContext) => {
      const err = (ctx.connection as unknown as { error?: { condition?: string; description?: string } }).error;
      if (err) this.lastError = `${err.condition}: ${err.description ?? ''}`;
      // The peer closed on us: calls in flight lost their reply address, fail them now.
      if (!this.closed) this.onDisconnected(ctx);
    });
    conn.on('connection_error', (ctx: EventContext) => {
      const err = (ctx.connection as unknown as { error?: { condition?: string; description?: string } }).error;
      if (err) this.lastError = `${err.condition}: ${err.description ?? ''}`;
    });
    conn.on('error', () => {});
    conn.on('protocol_error', (err: Error) => { this.lastError = `protocol error: ${err.message}`; });
  }

  private tlsOptions(): Record<string, unknown> {
    const t = this.config.tls;
    const read = (p: string) => (p ? readFileSync(p) : undefined);
    return { ca: read(t.ca), cert: read(t.cert), key: read(t.key), rejectUnauthorized: t.verify };
  }

  private onOpen(ctx: EventContext): void {
    const conn = ctx.connection;
    const props = conn.properties as Record<string, unknown> | undefined;
    this.mode = pickMode(this.config.amqp1.addressingMode, props?.product);
    this.isOpen = true;
    this.failedAttempts = 0;
    this.lastError = undefined;
    this.setState({ state: 'connected', host: this.currentHost ? hostLabel(this.currentHost) : '?' });
    if (!this.settledSender) {
      this.settledSender = conn.open_sender({ target: {}, snd_settle_mode: 1, name: `hermod/sender/settled/${uuidHex()}` } as never);
      this.unsettledSender = conn.open_sender({ target: {}, name: `hermod/sender/unsettled/${uuidHex()}` } as never);
      for (const s of [this.settledSender, this.unsettledSender]) {
        s.on('sendable', () => { this.wakeSenders(); this.schedulePump(); });
        s.on('sender_error', () => {});
      }
      this.replyReceiver = conn.open_receiver({
        source: { dynamic: true },
        target: { address: 'rpc-response' },
        name: `openstack.org/om/receiver/[rpc-response]/${uuidHex()}`,
        credit_window: this.config.amqp1.replyCredit,
        autoaccept: true,
      } as never);
      this.replyReceiver.on('receiver_open', (c: EventContext) => {
        this.replyAddress = (c.receiver!.source as { address?: string }).address;
        if (this.replyAddress) this.replyReady.resolve(this.replyAddress);
      });
      this.replyReceiver.on('message', (c: EventContext) => this.onReply(c.message!));
      this.replyReceiver.on('receiver_error', () => {});
    } else {
      for (const l of this.subscriptions) l.reattached();
    }
    this.opened.resolve();
    this.wakeSenders();
  }

  private onDisconnected(ctx: EventContext): void {
    const wasOpen = this.isOpen;
    this.isOpen = false;
    const host = this.currentHost ? hostLabel(this.currentHost) : '?';
    const error = (ctx as unknown as { error?: Error }).error;
    if (error) this.lastError = error.message;
    this.failedAttempts++;
    if (this.closed) return;
    if (wasOpen) {
      this.opened = deferred<void>();
      this.replyReady = deferred<string>();
      this.replyAddress = undefined;
      this.setState({ state: 'disconnected', host, ...(error ? { error } : {}) });
      // Replies to calls sent on the old connection would go to its dynamic address, which
      // is gone: fail those calls now instead of letting them run into their timeout.
      const err = new TransportError(`connection to ${host} lost while waiting for a reply${this.lastError ? ` (${this.lastError})` : ''}`);
      for (const fail of [...this.inflight.values()]) fail(err);
      this.inflight.clear();
    }
    this.setState({ state: 'reconnecting', host, attempt: this.failedAttempts, delayMs: 0 });
    this.wakeSenders();
  }

  /** Slots a call or cast may take now. */
  private requestRoom(): number {
    return sessionRoom(this.unsettledSender) - this.reserved - REPLY_RESERVE;
  }

  /**
   * Waits for a slot in the session's delivery buffer (FIFO among waiters), then reserves it;
   * the caller must call `releaseRoom()` right after its synchronous send.
   */
  private async acquireRoom(deadline: number, what: string): Promise<void> {
    if (this.roomWaiters.length === 0 && this.requestRoom() > 0) {
      this.reserved++;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const wake = () => { clearTimeout(timer); resolve(); };
      const timer = setTimeout(() => {
        const i = this.roomWaiters.indexOf(wake);
        if (i >= 0) this.roomWaiters.splice(i, 1);
        reject(new MessagingTimeout(`${what}: timed out waiting for room to send (${this.roomWaiters.length} sends queued on the connection)`));
      }, Math.max(1, deadline - Date.now()));
      this.roomWaiters.push(wake);
      this.schedulePump();
    });
  }

  private releaseRoom(): void {
    this.reserved--;
  }

  /**
   * Runs after rhea has processed I/O (it frees buffer slots only after dispatching outcome
   * events): flushes held replies first, then wakes as many waiting sends as there is room for.
   */
  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      const replies = this.config.amqp1.presettledReplies ? this.settledSender : this.unsettledSender;
      while (this.replyBacklog.length > 0 && this.isOpen && replies && sessionRoom(replies) > 0) replies.send(this.replyBacklog.shift()!);
      while (this.roomWaiters.length > 0 && this.requestRoom() > 0) {
        this.reserved++;
        this.roomWaiters.shift()!();
      }
    });
  }

  private wakeSenders(): void {
    for (const w of [...this.sendWaiters]) w();
  }

  /** What the last connection failure was, for error messages. */
  private connectProblem(): string {
    const hosts = this.url.hosts.map(hostLabel).join(', ');
    return `cannot connect to ${this.url.scheme}://${hosts}${this.lastError ? `: ${this.lastError}` : ''}`;
  }

  /** Waits until `ready()` holds, failing at `deadline` or when the retry budget is spent. */
  private async waitFor(ready: () => boolean, deadline: number, retry: number, what: string): Promise<void> {
    this.start();
    while (!ready()) {
      if (this.closed) throw new ClosedError('transport is closed');
      if (retry >= 0 && this.failedAttempts > retry && !this.isOpen) {
        throw new TransportError(`${this.connectProblem()} (gave up after ${this.failedAttempts} attempt${this.failedAttempts === 1 ? '' : 's'}, retry=${retry})`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        if (!this.isOpen) throw new TransportError(`${this.connectProblem()} (still trying when ${what} timed out)`);
        throw new MessagingTimeout(`timed out waiting to send ${what}`);
      }
      await new Promise<void>((resolve) => {
        const wake = () => { this.sendWaiters.delete(wake); clearTimeout(timer); resolve(); };
        const timer = setTimeout(wake, Math.min(left, 250));
        this.sendWaiters.add(wake);
      });
    }
  }

  private encode(value: unknown, what: string): string {
    const body = encodeJson(value, what);
    const size = Buffer.byteLength(body);
    if (size > this.config.maxMessageSize) throw new MessageTooLarge(size, this.config.maxMessageSize);
    return body;
  }

  private exchange(target: Target): string {
    return target.exchange ?? this.config.controlExchange;
  }

  async send(target: Target, ctx: Context, request: RpcRequest, opts: SendOptions): Promise<Reply | undefined> {
    if (this.closed) throw new ClosedError('transport is closed');
    const deadline = Date.now() + opts.timeout;
    const retry = opts.retry ?? -1;
    const data: Record<string, unknown> = { request, context: ctx };
    if (opts.waitForReply && opts.callMonitorTimeout) data.call_monitor_timeout = opts.callMonitorTimeout / 1000;
    const body = this.encode(data, `${opts.waitForReply ? 'call' : 'cast'} ${request.method}`);
    await this.waitFor(() => this.isOpen, deadline, retry, request.method);
    const address = () => rpcAddress(this.mode, { exchange: this.exchange(target), topic: target.topic!, ...(target.server ? { server: target.server } : {}), ...(target.fanout ? { fanout: true } : {}) }, this.vhost);
    if (!opts.waitForReply) {
      const presettled = this.config.amqp1.presettledCasts;
      await this.deliver(() => ({ to: address(), body }), presettled, deadline, retry, `cast ${request.method}`);
      return undefined;
    }
    await this.waitFor(() => this.isOpen && this.replyAddress !== undefined, deadline, retry, request.method);
    const msgId = uuidHex();
    const reply = this.waiter.wait(msgId, {
      timeout: Math.max(1, deadline - Date.now()),
      callMonitorTimeout: opts.callMonitorTimeout ?? 0,
      describe: `${request.method} on topic ${target.topic}${target.server ? ` server ${target.server}` : ''}`,
    });
    // The reply may fail (timeout) while the request is still being delivered below.
    reply.catch(() => {});
    this.inflight.set(msgId, (err) => this.waiter.fail(msgId, err));
    try {
      await this.deliver(() => ({
        to: address(), body, message_id: msgId, reply_to: this.replyAddress!, ttl: Math.max(1, Math.round(deadline - Date.now())),
      }), false, deadline, retry, `call ${request.method}`, true);
    } catch (err) {
      this.waiter.fail(msgId, err as Error);
    }
    return reply.finally(() => this.inflight.delete(msgId));
  }

  /**
   * Sends one message; unsettled ones resolve on `accepted`. `released`/`modified` (no
   * receiver, or one that vanished) resend after a short pause until the deadline, as oslo
   * does; `rejected` fails with MessageDeliveryFailure.
   */
  private async deliver(build: () => Message, presettled: boolean, deadline: number, retry: number, what: string,
    isCall = false): Promise<void> {
    for (;;) {
      const sender = () => (presettled ? this.settledSender : this.unsettledSender);
      await this.waitFor(() => this.isOpen && sender()?.sendable() === true, deadline, retry, what);
      await this.acquireRoom(deadline, what);
      if (!this.isOpen || sender()?.sendable() !== true) {
        // Lost the connection or the credit while queued for room: go round again.
        this.releaseRoom();
        continue;
      }
      const message = build();
      if (presettled) {
        try { sender()!.send(message); } finally { this.releaseRoom(); }
        return;
      }
      const outcome = await new Promise<{ kind: string; detail?: string }>((resolve) => {
        let d: Delivery;
        try { d = sender()!.send(message) as Delivery; } finally { this.releaseRoom(); }
        const timer = setTimeout(() => resolve({ kind: 'timeout' }), Math.max(1, deadline - Date.now()));
        const done = (kind: string, detail?: string) => { clearTimeout(timer); this.sendWaiters.delete(lost); resolve({ kind, ...(detail ? { detail } : {}) }); };
        const lost = () => { if (!this.isOpen) done('lost'); };
        this.sendWaiters.add(lost);
        this.outcomes.set(d, done);
      });
      if (outcome.kind === 'accepted') return;
      if (outcome.kind === 'rejected') throw new MessageDeliveryFailure(`${what} was rejected by the peer${outcome.detail ? `: ${outcome.detail}` : ''}`);
      if (outcome.kind === 'timeout') {
        throw new MessagingTimeout(`${what}: no receiver accepted the message before the deadline (address has no consumer?)`);
      }
      // released, modified or connection lost: try again while time allows.
      if (Date.now() + RESEND_DELAY_MS >= deadline) {
        if (isCall) throw new MessagingTimeout(`${what}: nobody is serving it (the router released it until the deadline)`);
        throw new MessageDeliveryFailure(`${what}: the router released it and the deadline passed (no receiver for the address)`);
      }
      await new Promise((r) => setTimeout(r, RESEND_DELAY_MS));
    }
  }

  private readonly outcomes = new WeakMap<Delivery, (kind: string, detail?: string) => void>();

  private onOutcome(ctx: EventContext, kind: string): void {
    const d = ctx.delivery!;
    const done = this.outcomes.get(d);
    if (!done) return;
    this.outcomes.delete(d);
    if (this.roomWaiters.length > 0) this.schedulePump();
    const state = (d as unknown as { remote_state?: { error?: { condition?: string; description?: string } } }).remote_state;
    done(kind, state?.error ? `${state.error.condition ?? ''} ${state.error.description ?? ''}`.trim() : undefined);
  }


  private onReply(message: Message): void {
    const id = message.correlation_id;
    if (typeof id !== 'string') return;
    const body = message.body as unknown;
    if (body === undefined || body === null) {
      this.waiter.heartbeat(id);
      return;
    }
    let data: { response?: unknown; failure?: unknown };
    try {
      data = JSON.parse(typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString('utf8') : String((body as { content?: unknown }).content ?? body));
    } catch (err) {
      this.waiter.fail(id, new MalformedMessage(`reply to ${id} is not valid JSON`, { cause: err }));
      return;
    }
    if (data && data.failure !== undefined && data.failure !== null) {
      let failure: Failure;
      try {
        failure = (typeof data.failure === 'string' ? JSON.parse(data.failure) : data.failure) as Failure;
      } catch (err) {
        this.waiter.fail(id, new MalformedMessage(`failure in reply to ${id} is not valid JSON`, { cause: err }));
        return;
      }
      this.waiter.resolve(id, { failure });
    } else {
      this.waiter.resolve(id, { result: data?.response ?? null });
    }
  }

  async sendNotification(target: Target, ctx: Context, message: Record<string, unknown>, opts: NotificationSendOptions): Promise<void> {
    if (this.closed) throw new ClosedError('transport is closed');
    const deadline = Date.now() + this.config.rpc.responseTimeout;
    const body = this.encode({ request: opts.envelope === '1.0' ? message : { 'oslo.version': '2.0', 'oslo.message': encodeJson(message, 'notification') }, context: ctx }, 'notification');
    await this.waitFor(() => this.isOpen, deadline, opts.retry ?? -1, 'notification');
    await this.deliver(() => ({ to: notifyAddress(this.mode, this.exchange(target), target.topic!, this.vhost), body }), false, deadline, opts.retry ?? -1, 'notification');
  }

  async listen(target: Target, opts: ListenOptions): Promise<Listener> {
    const addresses = () => serverAddresses(this.mode, { exchange: this.exchange(target), topic: target.topic!, server: target.server! }, this.vhost);
    return this.subscribe(addresses, opts);
  }

  async listenForNotifications(targets: Array<{ target: Target; priority: string }>, pool: string | undefined,
    opts: ListenOptions): Promise<Listener> {
    // A router stores nothing, so it cannot give each pool its own copy; oslo's amqp1 driver
    // refuses pools the same way.
    if (pool) throw new InvalidArgument(`listener pools are not supported on AMQP 1.0 (pool '${pool}'); use RabbitMQ or the memory driver for pools`);
    const addresses = () => targets.map(({ target, priority }) => notifyAddress(this.mode, this.exchange(target), `${target.topic}.${priority}`, this.vhost));
    return this.subscribe(addresses, opts);
  }

  private async subscribe(addresses: () => string[], opts: ListenOptions): Promise<Listener> {
    if (this.closed) throw new ClosedError('transport is closed');
    await this.waitFor(() => this.isOpen, Date.now() + this.config.rpc.responseTimeout, this.config.rpc.retry, 'subscribe');
    const listener = new Amqp1Listener(this, this.conn!, addresses(), opts, Math.min(opts.prefetch, this.config.amqp1.serverCredit));
    this.subscriptions.add(listener);
    listener.onStop = () => this.subscriptions.delete(listener);
    await listener.attached;
    return listener;
  }

  /** @internal Sends a presettled reply or heartbeat; best effort, like oslo's. */
  sendReply(to: string, correlationId: unknown, body: string | undefined, ttl?: number): void {
    const s = this.config.amqp1.presettledReplies ? this.settledSender : this.unsettledSender;
    if (!this.isOpen || !s) throw new TransportError('connection lost before the reply could be sent');
    const m = { to, correlation_id: correlationId as string } as Message;
    if (body !== undefined) m.body = body;
    if (ttl) m.ttl = ttl;
    // A full session buffer must not throw (that would corrupt the session): hold the reply
    // until the pump finds room.
    if (this.replyBacklog.length > 0 || sessionRoom(s) === 0) {
      this.replyBacklog.push(m);
      this.schedulePump();
      return;
    }
    s.send(m);
  }

  /** @internal */
  encodeReply(value: unknown): string {
    return this.encode(value, 'reply');
  }

  /** @internal */
  get maxMessageSize(): number {
    return this.config.maxMessageSize;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const l of [...this.subscriptions]) await l.stop();
    this.waiter.failAll(new ClosedError('transport closed while waiting for a reply'));
    this.wakeSenders();
    const conn = this.conn;
    if (!conn) return;
    (conn as unknown as { set_reconnect(v: boolean): void }).set_reconnect(false);
    const sched = (conn as unknown as { scheduled_reconnect?: NodeJS.Timeout }).scheduled_reconnect;
    if (sched) clearTimeout(sched);
    if (this.isOpen) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 500);
        conn.once('connection_close', () => { clearTimeout(timer); resolve(); });
        conn.once('disconnected', () => { clearTimeout(timer); resolve(); });
        conn.close();
      });
    }
    (conn as unknown as { socket?: net.Socket }).socket?.destroy();
    clearRheaTimers(conn);
    this.isOpen = false;
  }
}

class Amqp1Listener implements Listener {
  readonly receivers: Receiver[] = [];
  readonly attached: Promise<void>;
  onStop: (() => void) | undefined;
  private stopped = false;
  /** Messages taken per receiver and not yet done: credit + processing = capacity, always. */
  private readonly processing = new Map<Receiver, number>();

  constructor(private readonly driver: Amqp1Driver, conn: Connection, addresses: string[], private readonly opts: ListenOptions,
    private readonly credit: number) {
    const opens: Promise<void>[] = [];
    for (const address of addresses) {
      const r = conn.open_receiver({
        source: { address }, target: { address }, credit_window: 0, autoaccept: false, snd_settle_mode: 2,
        name: `openstack.org/om/receiver/[${address}]/${uuidHex()}`,
      } as never);
      opens.push(new Promise<void>((resolve) => r.once('receiver_open', () => resolve())));
      r.on('message', (ctx: EventContext) => this.onMessage(r, ctx));
      r.on('receiver_error', () => {});
      r.add_credit(credit);
      this.processing.set(r, 0);
      this.receivers.push(r);
    }
    this.attached = Promise.all(opens).then(() => undefined);
  }

  private onMessage(receiver: Receiver, ctx: EventContext): void {
    const message = ctx.message!;
    const delivery = ctx.delivery!;
    let freed = false;
    this.processing.set(receiver, (this.processing.get(receiver) ?? 0) + 1);
    const free = () => {
      if (freed) return;
      freed = true;
      this.processing.set(receiver, (this.processing.get(receiver) ?? 1) - 1);
      if (!this.stopped && receiver.is_open()) receiver.add_credit(1);
    };
    const body = message.body as unknown;
    const text = typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString('utf8') : undefined;
    let data: { request?: unknown; context?: unknown; call_monitor_timeout?: unknown };
    let request: Record<string, unknown>;
    try {
      if (text === undefined) throw new MalformedMessage('message body is not a JSON string');
      const size = Buffer.byteLength(text);
      if (size > this.driver.maxMessageSize) throw new MessageTooLarge(size, this.driver.maxMessageSize);
      data = JSON.parse(text);
      if (!data || typeof data !== 'object') throw new MalformedMessage('message body is not a JSON object');
      let req = data.request as Record<string, unknown> | undefined;
      // Notifications (messagingv2) and some senders wrap the request in oslo's 2.0 envelope.
      if (req && typeof req === 'object' && 'oslo.version' in req && typeof req['oslo.message'] === 'string') {
        req = JSON.parse(req['oslo.message'] as string) as Record<string, unknown>;
      }
      if (!req || typeof req !== 'object' || Array.isArray(req)) throw new MalformedMessage('message has no request object');
      request = req;
    } catch (err) {
      const e = err instanceof MalformedMessage || err instanceof MessageTooLarge
        ? err : new MalformedMessage(`message body is not valid JSON: ${(err as Error).message}`, { cause: err });
      delivery.reject({ condition: 'amqp:decode-error', description: e.message } as never);
      free();
      // A call deserves an answer even when its body is garbage: the caller stops waiting now.
      if (typeof message.reply_to === 'string' && message.message_id !== undefined) {
        try {
          this.driver.sendReply(message.reply_to, message.message_id, this.driver.encodeReply({
            failure: JSON.stringify({ class: e.name, module: 'hermod', message: e.message, tb: [], args: [e.message], kwargs: {} }),
          }));
        } catch { /* connection gone */ }
      }
      this.opts.onInvalid?.(e, { address: (receiver.source as { address?: string }).address ?? '?', size: text?.length ?? 0 });
      return;
    }
    const replyTo = typeof message.reply_to === 'string' ? message.reply_to : undefined;
    const correlationId = message.message_id;
    const expectsReply = Boolean(replyTo && correlationId !== undefined);
    const cmt = typeof data.call_monitor_timeout === 'number' ? data.call_monitor_timeout * 1000 : 0;
    const driver = this.driver;
    let settled = false;
    const settle = (fn: () => void) => { if (!settled) { settled = true; try { fn(); } catch { /* link gone */ } } };
    const incoming: IncomingMessage = {
      ctx: (data.context && typeof data.context === 'object' ? data.context : {}) as Context,
      message: request,
      expectsReply,
      callMonitorTimeout: cmt,
      async reply(reply) {
        if (!expectsReply) return;
        const payload = reply.failure ? { failure: JSON.stringify(reply.failure) } : { response: reply.result ?? null };
        driver.sendReply(replyTo!, correlationId, driver.encodeReply(payload));
      },
      async heartbeat() {
        if (!expectsReply) return;
        driver.sendReply(replyTo!, correlationId, undefined, cmt || undefined);
      },
      acknowledge: () => settle(() => delivery.accept()),
      requeue: () => { settle(() => delivery.release()); free(); },
      done: () => free(),
    };
    this.opts.onMessage(incoming);
  }

  /**
   * After a reconnect rhea re-attaches the receivers with zero credit; grant what the
   * messages still being processed from the old connection leave free.
   */
  reattached(): void {
    if (this.stopped) return;
    for (const r of this.receivers) {
      const free = this.credit - (this.processing.get(r) ?? 0);
      if (free > 0) r.add_credit(free);
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const r of this.receivers) {
      try { r.close(); } catch { /* already closed */ }
    }
    this.onStop?.();
  }
}
