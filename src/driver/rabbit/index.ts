import { EventEmitter } from 'node:events';
import type { ChannelModel, ConfirmChannel, Channel, ConsumeMessage, Message, Options } from 'amqplib';
import {
  ClosedError, MalformedMessage, MessageDeliveryFailure, MessageTooLarge, MessageUndeliverable, MessagingTimeout,
  TransportError, UnsupportedEnvelopeVersion,
} from '../../core/errors.js';
import { encodeJson, type Context } from '../../core/serializer.js';
import { uuidHex } from '../../core/ids.js';
import type { HermodConfig } from '../../config/index.js';
import type { TransportUrl } from '../../config/transport-url.js';
import type { Target } from '../../core/target.js';
import type {
  ConnectionState, Driver, Failure, IncomingMessage, Listener, ListenOptions, NotificationSendOptions, Reply, RpcRequest, SendOptions,
} from '../driver.js';
import { ReplyWaiter } from '../reply-waiter.js';
import { RabbitConnection } from './connection.js';
import { DedupRing } from './dedup.js';

/** oslo's message properties: JSON, persistent (even on transient queues), priority 0, no headers. */
const BASE_PROPS = { contentType: 'application/json', contentEncoding: 'utf-8', deliveryMode: 2, priority: 0, headers: {} } as const;
/** Frames a publishing channel buffers before publish() waits for `drain`. */
const PUBLISH_HWM = 256;

/** Wraps an oslo message dict in the 2.0 envelope (the inner dict JSON-encoded into a string). */
export function envelope(msg: Record<string, unknown>, what: string): string {
  return encodeJson({ 'oslo.version': '2.0', 'oslo.message': encodeJson(msg, what) }, what);
}

/**
 * Decodes a message body: the 2.0 envelope (version checked as oslo does: major 2, minor 0),
 * or a bare JSON object (1.0). Throws MalformedMessage / UnsupportedEnvelopeVersion.
 */
export function unenvelope(content: Buffer): Record<string, unknown> {
  let outer: unknown;
  try {
    outer = JSON.parse(content.toString('utf8'));
  } catch (err) {
    throw new MalformedMessage(`message body is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!outer || typeof outer !== 'object' || Array.isArray(outer)) throw new MalformedMessage('message body is not a JSON object');
  const o = outer as Record<string, unknown>;
  if (!('oslo.version' in o) || !('oslo.message' in o)) return o;
  const version = String(o['oslo.version']);
  const [major, minor] = version.split('.').map(Number);
  if (major !== 2 || !(minor !== undefined && minor <= 0)) {
    throw new UnsupportedEnvelopeVersion(`message envelope version ${version} is not supported (expected 2.0)`);
  }
  if (typeof o['oslo.message'] !== 'string') throw new MalformedMessage('oslo.message is not a string');
  let inner: unknown;
  try {
    inner = JSON.parse(o['oslo.message']);
  } catch (err) {
    throw new MalformedMessage(`oslo.message is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!inner || typeof inner !== 'object' || Array.isArray(inner)) throw new MalformedMessage('oslo.message is not a JSON object');
  return inner as Record<string, unknown>;
}

interface PendingPublish { returned: boolean }

/**
 * The RabbitMQ driver (AMQP 0-9-1, amqplib), on oslo.messaging's rabbit wire format: the
 * `openstack` topic exchange, `<topic>` / `<topic>.<server>` queues, `<topic>_fanout` exchanges
 * with one queue per server, `reply_<uuid>` queues, the 2.0 envelope, publisher confirms and
 * mandatory replies. One connection per transport publishes and consumes replies; every
 * listener (RPC server, notification listener) gets its own connection, as oslo's do.
 */
export class RabbitDriver extends EventEmitter implements Driver {
  readonly kind = 'rabbit';
  private readonly conn: RabbitConnection;
  private pub: ConfirmChannel | undefined;
  /** Exchanges declared on the current publishing channel. */
  private declared = new Set<string>();
  private readonly pendingPublishes = new Map<string, PendingPublish>();
  private drained: Promise<void> | undefined;
  private readonly waiter = new ReplyWaiter();
  private readonly replyQueue = `reply_${uuidHex()}`;
  private replyWanted = false;
  private replyReady: Promise<void> | undefined;
  private readonly replyDedup = new DedupRing();
  /** Partial results of old-style replies (result first, `ending` later). */
  private readonly partial = new Map<string, unknown>();
  private readonly subscriptions = new Set<RabbitListener>();
  private closed = false;

  constructor(readonly url: TransportUrl, private readonly config: HermodConfig) {
    super();
    this.conn = new RabbitConnection(url, config, 'publisher');
    this.conn.on('state', (s: ConnectionState) => this.emit('state', s));
    this.conn.on('lost', () => {
      this.pub = undefined;
      // Replies to calls in flight still reach the reply queue (it outlives the connection by
      // rabbit.transientQueuesTtl), so those calls complete after the reconnect.
    });
    void this.conn.addHook((m) => this.setupPublisher(m));
  }

  private async setupPublisher(model: ChannelModel): Promise<void> {
    // Call requests go on a plain channel: their reply is the confirmation, and skipping the
    // broker's basic.ack per request saves a frame each way. Unroutable calls still come back
    // (mandatory) as basic.return and fail with MessageUndeliverable.
    // amqplib buffers up to 1024 frames per channel (128 MiB at frameMax) before it says "full";
    // a smaller mark makes publish() wait for `drain` while the broker is not reading.
    const calls = await model.createChannel({ highWaterMark: PUBLISH_HWM } as never);
    calls.on('error', () => {});
    calls.on('close', () => { if (this.callCh === calls) this.callCh = undefined; });
    calls.on('return', (msg: Message) => this.onCallReturn(msg));
    calls.on('drain', () => { const d = this.drainResolve; this.drainResolve = undefined; this.drained = undefined; d?.(); });
    this.callCh = calls;
    const ch = await model.createConfirmChannel({ highWaterMark: PUBLISH_HWM } as never);
    ch.on('error', () => {});
    ch.on('close', () => { if (this.pub === ch) this.pub = undefined; });
    ch.on('return', (msg: Message) => this.onReturn(msg));
    ch.on('drain', () => { const d = this.drainResolve; this.drainResolve = undefined; this.drained = undefined; d?.(); });
    this.pub = ch;
    this.declared = new Set();
    if (this.replyWanted) await this.setupReplyConsumer(model);
  }
  private drainResolve: (() => void) | undefined;
  private callCh: Channel | undefined;

  private onCallReturn(msg: Message): void {
    try {
      const data = unenvelope(msg.content);
      if (typeof data._msg_id === 'string') {
        this.waiter.fail(data._msg_id, new MessageUndeliverable(`call ${String(data.method)}: no queue is bound for exchange '${msg.fields.exchange}' routing key '${msg.fields.routingKey}' (returned by the broker)`));
      }
    } catch { /* not ours */ }
  }

  /** Publishes a call request (no confirm: the reply confirms it); resends while the connection is being re-made. */
  private async publishCall(exchange: { name: string; type: 'topic' | 'fanout' }, key: string, body: string,
    opts: { mandatory: boolean; deadline: number; retry: number; what: string }): Promise<void> {
    const content = Buffer.from(body, 'utf8');
    for (;;) {
      const pub = await this.channel(opts.deadline, opts.retry, opts.what);
      const ch = this.callCh;
      try {
        if (!ch) throw new Error('call channel not open');
        await this.declareExchange(pub, exchange.name, exchange.type);
        while (this.drained) await this.drained;
        const ok = ch.publish(exchange.name, key, content, {
          ...BASE_PROPS, headers: {}, mandatory: opts.mandatory, expiration: String(Math.max(1, Math.round(opts.deadline - Date.now()))),
        });
        if (!ok && !this.drained) this.drained = new Promise((r) => { this.drainResolve = r; });
        return;
      } catch (err) {
        const msg = (err as Error).message ?? String(err);
        if (/NOT_FOUND|PRECONDITION_FAILED|ACCESS_REFUSED/.test(msg)) {
          throw new MessageDeliveryFailure(`${opts.what}: the broker refused it: ${msg}`, { cause: err });
        }
        if (Date.now() >= opts.deadline) throw new MessagingTimeout(`${opts.what}: could not be sent before the deadline (${msg})`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  private queueArgs(kind: 'shared' | 'transient'): Record<string, unknown> {
    const r = this.config.rabbit;
    const args: Record<string, unknown> = {};
    if (kind === 'transient') args['x-expires'] = r.transientQueuesTtl;
    if (r.haQueues) args['x-ha-policy'] = 'all';
    if (kind === 'shared' && r.quorumQueues) {
      args['x-queue-type'] = 'quorum';
      if (r.quorumDeliveryLimit > 0) args['x-delivery-limit'] = r.quorumDeliveryLimit;
    }
    return args;
  }

  /** @internal Flags of topic, server and notification queues, as oslo declares them. */
  sharedQueueOptions(): Options.AssertQueue {
    const r = this.config.rabbit;
    const durable = r.durableQueues || r.quorumQueues;
    return { durable, autoDelete: r.quorumQueues ? false : r.autoDelete, arguments: this.queueArgs('shared') };
  }

  /** @internal Flags of reply and fanout queues. */
  transientQueueOptions(): Options.AssertQueue {
    return { durable: false, autoDelete: false, arguments: this.queueArgs('transient') };
  }

  /** @internal The control exchange's flags. */
  exchangeOptions(): Options.AssertExchange {
    const r = this.config.rabbit;
    return { durable: r.durableQueues || r.quorumQueues, autoDelete: r.autoDelete };
  }

  exchange(target: Target): string {
    return target.exchange ?? this.config.controlExchange;
  }

  private replyModel: ChannelModel | undefined;

  private async setupReplyConsumer(model: ChannelModel): Promise<void> {
    // The reconnect hook and the first call may both get here for one connection.
    if (this.replyModel === model) return;
    const reconnect = this.replyModel !== undefined;
    this.replyModel = model;
    if (reconnect && this.waiter.size > 0) {
      // After a mere connection loss the reply queue is still there (x-expires) and pending
      // calls complete. After a broker restart it is gone, and so are the replies sent to it:
      // fail those calls now instead of at their timeouts.
      const probe = await model.createChannel();
      probe.on('error', () => {});
      const exists = await probe.checkQueue(this.replyQueue).then(() => true, () => false);
      if (exists) await probe.close().catch(() => {});
      else this.waiter.failAll(new TransportError(`the reply queue ${this.replyQueue} was lost with the broker (restarted?); the call's reply cannot arrive`));
    }
    const ch = await model.createChannel();
    ch.on('error', () => {});
    await ch.assertQueue(this.replyQueue, this.transientQueueOptions());
    // Acks are batched per tick: one frame acknowledges every reply that arrived in it.
    let last: ConsumeMessage | undefined;
    let scheduled = false;
    await ch.consume(this.replyQueue, (msg) => {
      if (!msg) return;
      last = msg;
      if (!scheduled) {
        scheduled = true;
        setImmediate(() => { scheduled = false; if (last) { try { ch.ack(last, true); } catch { /* channel gone */ } last = undefined; } });
      }
      this.onReply(msg);
    }, { noAck: false });
  }

  private ensureReplyQueue(deadline: number, retry: number, what: string): Promise<void> {
    if (this.replyReady) return this.replyReady;
    this.replyWanted = true;
    this.replyReady = (async () => {
      const model = await this.conn.ready(deadline, retry, what);
      await this.setupReplyConsumer(model);
    })();
    this.replyReady.catch(() => { this.replyReady = undefined; this.replyWanted = false; });
    return this.replyReady;
  }

  private onReply(msg: ConsumeMessage): void {
    let data: Record<string, unknown>;
    try {
      data = unenvelope(msg.content);
    } catch {
      return;
    }
    if (this.replyDedup.seen(data._unique_id)) return;
    this.replyDedup.add(data._unique_id);
    const id = data._msg_id;
    if (typeof id !== 'string') return;
    const failure = data.failure;
    const result = data.result;
    if (data.ending !== true) {
      // oslo < 2 sent the result first and `ending` separately; keep it for the final message.
      if ((result !== null && result !== undefined) || failure) this.partial.set(id, { result, failure });
      this.waiter.heartbeat(id);
      return;
    }
    const early = this.partial.get(id) as { result: unknown; failure: unknown } | undefined;
    this.partial.delete(id);
    const f = failure ?? early?.failure;
    if (f) {
      let parsed: Failure;
      try {
        parsed = (typeof f === 'string' ? JSON.parse(f) : f) as Failure;
      } catch {
        parsed = { class: 'MalformedMessage', module: 'hermod', message: `unreadable failure: ${String(f).slice(0, 200)}`, tb: [], args: [], kwargs: {} };
      }
      this.waiter.resolve(id, { failure: parsed });
      return;
    }
    this.waiter.resolve(id, { result: result ?? early?.result ?? null });
  }

  private onReturn(msg: Message): void {
    try {
      const data = unenvelope(msg.content);
      const p = this.pendingPublishes.get(String(data._unique_id));
      if (p) p.returned = true;
    } catch { /* not ours */ }
  }

  private async channel(deadline: number, retry: number, what: string): Promise<ConfirmChannel> {
    for (;;) {
      await this.conn.ready(deadline, retry, what);
      if (this.pub) return this.pub;
      // Connected but the channel is being (re)made: wait a moment.
      if (Date.now() >= deadline) throw new MessagingTimeout(`timed out waiting for a channel to send ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  private async declareExchange(ch: ConfirmChannel, name: string, type: 'topic' | 'fanout'): Promise<void> {
    if (name === '' || this.declared.has(name)) return;
    if (type === 'fanout') await ch.assertExchange(name, 'fanout', { durable: false, autoDelete: true });
    else await ch.assertExchange(name, 'topic', this.exchangeOptions());
    this.declared.add(name);
  }

  /**
   * Publishes with a publisher confirm. Resends after a connection loss while the deadline and
   * `retry` allow (receivers drop the duplicate by `_unique_id`). A mandatory message the
   * broker returns fails with MessageUndeliverable; a nack with MessageDeliveryFailure.
   */
  async publish(exchange: { name: string; type: 'topic' | 'fanout' } | '', key: string, body: string, uniqueId: string,
    opts: { mandatory: boolean; expiration?: number; deadline: number; retry: number; what: string }): Promise<void> {
    const content = Buffer.from(body, 'utf8');
    let attempts = 0;
    for (;;) {
      const ch = await this.channel(opts.deadline, opts.retry, opts.what);
      try {
        if (exchange) await this.declareExchange(ch, exchange.name, exchange.type);
        while (this.drained) await this.drained;
        const pending: PendingPublish = { returned: false };
        if (opts.mandatory) this.pendingPublishes.set(uniqueId, pending);
        try {
          await new Promise<void>((resolve, reject) => {
            const props: Options.Publish = { ...BASE_PROPS, headers: {}, mandatory: opts.mandatory };
            if (opts.expiration !== undefined) props.expiration = String(Math.max(1, Math.round(opts.expiration)));
            let ok: boolean;
            try {
              ok = ch.publish(exchange ? exchange.name : '', key, content, props, (err) => (err ? reject(err) : resolve()));
            } catch (err) {
              // amqplib refused to encode it (e.g. a routing key over 255 bytes): resending cannot help.
              reject(new MessageDeliveryFailure(`${opts.what}: cannot be published: ${(err as Error).message}`, { cause: err }));
              return;
            }
            if (!ok && !this.drained) this.drained = new Promise((r) => { this.drainResolve = r; });
          });
        } finally {
          this.pendingPublishes.delete(uniqueId);
        }
        if (pending.returned) {
          throw new MessageUndeliverable(`${opts.what}: no queue is bound for ${exchange ? `exchange '${exchange.name}'` : 'the default exchange'} routing key '${key}' (returned by the broker)`);
        }
        return;
      } catch (err) {
        if (err instanceof MessageDeliveryFailure) throw err;
        const msg = (err as Error).message ?? String(err);
        if (/NOT_FOUND|PRECONDITION_FAILED|ACCESS_REFUSED/.test(msg)) {
          throw new MessageDeliveryFailure(`${opts.what}: the broker refused it: ${msg}`, { cause: err });
        }
        if (/nack/i.test(msg) && this.conn.isOpen && this.pub === ch) {
          throw new MessageDeliveryFailure(`${opts.what}: the broker nacked it`, { cause: err });
        }
        // The channel or connection went away before the confirm: resend if allowed.
        attempts++;
        if (opts.retry >= 0 && attempts > opts.retry) {
          throw new TransportError(`${opts.what}: connection lost before the broker confirmed it (${msg}; retry=${opts.retry})`, { cause: err });
        }
        if (Date.now() >= opts.deadline) throw new MessagingTimeout(`${opts.what}: not confirmed by the broker before the deadline (${msg})`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  private encode(msg: Record<string, unknown>, what: string): string {
    const body = envelope(msg, what);
    const size = Buffer.byteLength(body);
    if (size > this.config.maxMessageSize) throw new MessageTooLarge(size, this.config.maxMessageSize);
    return body;
  }

  async send(target: Target, ctx: Context, request: RpcRequest, opts: SendOptions): Promise<Reply | undefined> {
    if (this.closed) throw new ClosedError('transport is closed');
    const deadline = Date.now() + opts.timeout;
    const retry = opts.retry ?? -1;
    const topic = target.topic!;
    const msg: Record<string, unknown> = { method: request.method, args: request.args ?? {} };
    if (request.namespace !== undefined) msg.namespace = request.namespace;
    if (request.version !== undefined) msg.version = request.version;
    for (const [k, v] of Object.entries(ctx ?? {})) msg[`_context_${k}`] = v;
    const uniqueId = uuidHex();
    msg._unique_id = uniqueId;
    const exchange = target.fanout
      ? { name: `${topic}_fanout`, type: 'fanout' as const }
      : { name: this.exchange(target), type: 'topic' as const };
    const key = target.fanout ? '' : target.server ? `${topic}.${target.server}` : topic;
    const mandatory = this.config.rabbit.mandatoryRequests;
    const what = `${opts.waitForReply ? 'call' : 'cast'} ${request.method}`;
    if (!opts.waitForReply) {
      await this.publish(exchange, key, this.encode(msg, what), uniqueId, { mandatory, deadline, retry, what });
      return undefined;
    }
    const msgId = uuidHex();
    msg._msg_id = msgId;
    msg._reply_q = this.replyQueue;
    msg._timeout = opts.callMonitorTimeout ? opts.callMonitorTimeout / 1000 : null;
    const body = this.encode(msg, what);
    await this.ensureReplyQueue(deadline, retry, what);
    const reply = this.waiter.wait(msgId, {
      timeout: Math.max(1, deadline - Date.now()),
      callMonitorTimeout: opts.callMonitorTimeout ?? 0,
      describe: `${request.method} on topic ${topic}${target.server ? ` server ${target.server}` : ''}`,
    });
    reply.catch(() => {});
    try {
      await this.publishCall(exchange, key, body, { mandatory, deadline, retry, what });
    } catch (err) {
      this.waiter.fail(msgId, err as Error);
    }
    return reply.finally(() => this.partial.delete(msgId));
  }

  async sendNotification(target: Target, ctx: Context, message: Record<string, unknown>, opts: NotificationSendOptions): Promise<void> {
    if (this.closed) throw new ClosedError('transport is closed');
    const deadline = Date.now() + this.config.rpc.responseTimeout;
    const retry = opts.retry ?? -1;
    const exchange = this.exchange(target);
    const key = target.topic!;
    const msg: Record<string, unknown> = { ...message };
    for (const [k, v] of Object.entries(ctx ?? {})) msg[`_context_${k}`] = v;
    const uniqueId = uuidHex();
    msg._unique_id = uniqueId;
    const what = `notification ${String(message.event_type ?? key)}`;
    const body = opts.envelope === '1.0' ? encodeJson(msg, what) : this.encode(msg, what);
    // Like oslo's notifier: make sure the queue exists so notifications wait for a listener.
    const ch = await this.channel(deadline, retry, what);
    const declKey = `queue:${exchange}:${key}`;
    if (!this.declared.has(declKey)) {
      await this.declareExchange(ch, exchange, 'topic');
      await ch.assertQueue(key, this.sharedQueueOptions());
      await ch.bindQueue(key, exchange, key);
      this.declared.add(declKey);
    }
    await this.publish({ name: exchange, type: 'topic' }, key, body, uniqueId, { mandatory: false, deadline, retry, what });
  }

  /** @internal Publishes a reply (or heartbeat) to a caller's reply queue, mandatory. */
  async sendReply(replyQ: string, msgId: string, reply: { result?: unknown; failure?: Failure | null; ending: boolean }): Promise<void> {
    const uniqueId = uuidHex();
    const msg = {
      result: reply.result ?? null,
      failure: reply.failure ? JSON.stringify(reply.failure) : null,
      ending: reply.ending,
      _msg_id: msgId,
      _unique_id: uniqueId,
    };
    const body = this.encode(msg, 'reply');
    await this.publish('', replyQ, body, uniqueId, {
      mandatory: true, deadline: Date.now() + this.config.rpc.responseTimeout, retry: -1, what: `reply to ${msgId}`,
    });
  }

  async listen(target: Target, opts: ListenOptions): Promise<Listener> {
    if (this.closed) throw new ClosedError('transport is closed');
    const exchange = this.exchange(target);
    const topic = target.topic!;
    const fanoutQueue = `${topic}_fanout_${uuidHex()}`;
    const shared = this.sharedQueueOptions();
    const bindings: QueueBinding[] = [
      { queue: topic, options: shared, exchange, exchangeType: 'topic', key: topic },
      { queue: `${topic}.${target.server}`, options: shared, exchange, exchangeType: 'topic', key: `${topic}.${target.server}` },
      { queue: fanoutQueue, options: this.transientQueueOptions(), exchange: `${topic}_fanout`, exchangeType: 'fanout', key: topic, deleteOnStop: true },
    ];
    return this.subscribe(`server ${topic}.${target.server}`, bindings, opts, 'rpc');
  }

  async listenForNotifications(targets: Array<{ target: Target; priority: string }>, pool: string | undefined,
    opts: ListenOptions): Promise<Listener> {
    if (this.closed) throw new ClosedError('transport is closed');
    const shared = this.sharedQueueOptions();
    const bindings: QueueBinding[] = targets.map(({ target, priority }) => {
      const key = `${target.topic}.${priority}`;
      return { queue: pool ?? key, options: shared, exchange: this.exchange(target), exchangeType: 'topic', key };
    });
    return this.subscribe(`notification listener${pool ? ` pool ${pool}` : ''}`, bindings, opts, 'notify');
  }

  private async subscribe(role: string, bindings: QueueBinding[], opts: ListenOptions, kind: 'rpc' | 'notify'): Promise<Listener> {
    const conn = new RabbitConnection(this.url, this.config, role);
    conn.on('state', (s: ConnectionState) => this.emit('state', s));
    const listener = new RabbitListener(this, conn, bindings, opts, kind);
    const failed = new Promise<never>((_, reject) => conn.once('setup-failed', (err: Error) => reject(err)));
    failed.catch(() => {});
    try {
      await conn.addHook((m) => listener.setup(m));
      await Promise.race([conn.ready(Date.now() + this.config.rabbit.connectTimeout * 3, this.config.rpc.retry, role), failed]);
    } catch (err) {
      await conn.close();
      if (err instanceof TransportError || err instanceof ClosedError) throw err;
      throw new TransportError(`${role}: could not declare its queues: ${(err as Error).message}`, { cause: err });
    }
    this.subscriptions.add(listener);
    listener.onStop = () => this.subscriptions.delete(listener);
    return listener;
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
    await this.conn.close();
  }
}

/** One queue a listener consumes, with the exchange it is bound to. */
interface QueueBinding {
  queue: string;
  options: Options.AssertQueue;
  exchange: string;
  exchangeType: 'topic' | 'fanout';
  key: string;
  /** The server's own fanout queue: deleted when it stops, as oslo does. */
  deleteOnStop?: boolean;
}

class RabbitListener implements Listener {
  onStop: (() => void) | undefined;
  private channel: Channel | undefined;
  private tags: string[] = [];
  private stopped = false;
  private readonly dedup = new DedupRing();

  constructor(private readonly driver: RabbitDriver, private readonly conn: RabbitConnection,
    private readonly bindings: QueueBinding[], private readonly opts: ListenOptions, private readonly kind: 'rpc' | 'notify') {}

  /** Declares the topology and consumes; runs on every (re)connect. */
  async setup(model: ChannelModel): Promise<void> {
    if (this.stopped) return;
    const ch = await model.createChannel();
    ch.on('error', () => {});
    // Per-consumer prefetch (never global QoS): each queue may have `prefetch` unacked.
    await ch.prefetch(this.opts.prefetch, false);
    for (const b of this.bindings) {
      if (b.exchangeType === 'fanout') await ch.assertExchange(b.exchange, 'fanout', { durable: false, autoDelete: true });
      else await ch.assertExchange(b.exchange, 'topic', this.driver.exchangeOptions());
      await ch.assertQueue(b.queue, b.options);
      await ch.bindQueue(b.queue, b.exchange, b.key);
    }
    const tags: string[] = [];
    for (const b of this.bindings) {
      const { consumerTag } = await ch.consume(b.queue, (msg) => { if (msg) this.onMessage(ch, b.queue, msg); }, { noAck: false });
      tags.push(consumerTag);
    }
    this.channel = ch;
    this.tags = tags;
  }

  private onMessage(ch: Channel, queue: string, msg: ConsumeMessage): void {
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      try { fn(); } catch { /* channel gone: the broker requeues it */ }
    };
    let data: Record<string, unknown>;
    try {
      if (msg.content.length > this.driver.maxMessageSize) throw new MessageTooLarge(msg.content.length, this.driver.maxMessageSize);
      data = unenvelope(msg.content);
    } catch (err) {
      // Acknowledge bad input so it cannot stall the queue, and answer a call if we can tell.
      settle(() => ch.ack(msg));
      const e = err as Error;
      this.answerBadCall(msg.content, e);
      this.opts.onInvalid?.(e, { address: queue, size: msg.content.length });
      return;
    }
    if (this.dedup.seen(data._unique_id)) {
      settle(() => ch.ack(msg));
      return;
    }
    const ctx: Context = {};
    const message: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(data)) {
      if (k.startsWith('_context_')) ctx[k.slice(9)] = v;
      else if (!k.startsWith('_')) message[k] = v;
    }
    const msgId = typeof data._msg_id === 'string' ? data._msg_id : undefined;
    const replyQ = typeof data._reply_q === 'string' ? data._reply_q : undefined;
    const expectsReply = this.kind === 'rpc' && Boolean(msgId && replyQ);
    const cmt = typeof data._timeout === 'number' && data._timeout > 0 ? data._timeout * 1000 : 0;
    const driver = this.driver;
    const incoming: IncomingMessage = {
      ctx,
      message,
      expectsReply,
      callMonitorTimeout: expectsReply ? cmt : 0,
      async reply(reply) {
        if (!expectsReply) return;
        await driver.sendReply(replyQ!, msgId!, { ending: true, result: reply.result ?? null, failure: reply.failure ?? null });
      },
      async heartbeat() {
        if (!expectsReply) return;
        await driver.sendReply(replyQ!, msgId!, { ending: false, result: null, failure: null });
      },
      acknowledge: () => { this.dedup.add(data._unique_id); settle(() => ch.ack(msg)); },
      requeue: () => settle(() => ch.nack(msg, false, true)),
      done: () => {},
    };
    this.opts.onMessage(incoming);
  }

  private answerBadCall(content: Buffer, e: Error): void {
    // Best effort: an unsupported envelope or a bad field may still name its reply queue.
    let inner: Record<string, unknown> | undefined;
    try {
      const o = JSON.parse(content.toString('utf8')) as Record<string, unknown>;
      inner = typeof o['oslo.message'] === 'string' ? JSON.parse(o['oslo.message']) as Record<string, unknown> : o;
    } catch {
      return;
    }
    if (this.kind !== 'rpc' || !inner || typeof inner._msg_id !== 'string' || typeof inner._reply_q !== 'string') return;
    const failure: Failure = { class: e.name, module: 'hermod', message: e.message, tb: [], args: [e.message], kwargs: {} };
    this.driver.sendReply(inner._reply_q, inner._msg_id, { ending: true, result: null, failure }).catch(() => {});
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const ch = this.channel;
    if (ch && this.conn.isOpen) {
      for (const tag of this.tags) await ch.cancel(tag).catch(() => {});
      for (const b of this.bindings) if (b.deleteOnStop) await ch.deleteQueue(b.queue).catch(() => {});
    }
    // Messages delivered but not yet acknowledged go back to the queue when the channel closes.
    await this.conn.close();
    this.onStop?.();
  }
}
