import type { ChannelModel, Message } from 'amqplib';
import type { HermodConfig } from '../../config/index.js';
import type { TransportUrl } from '../../config/transport-url.js';
import { ClosedError, ConfigError, MessageDeliveryFailure, MessageUndeliverable, TransportError } from '../../core/errors.js';
import { uuidHex } from '../../core/ids.js';
import type { Context } from '../../core/serializer.js';
import type { Target } from '../../core/target.js';
import type {
  ConnectionState,
  Driver,
  Listener,
  ListenOptions,
  NotificationSendOptions,
  Reply,
  RpcRequest,
  SendOptions,
} from '../driver.js';
import { CLOSE_GRACE_MS, DriverBase } from '../driver-base.js';
import { bounded, envelope, unenvelope } from '../envelope.js';
import { compressionOf, decompressBody } from './compression.js';
import { RabbitConnection } from './connection.js';
import { DIRECT_REPLY_TO, DirectReplyTo } from './direct-reply.js';
import { RabbitListener, type ReplySender } from './listener.js';
import { type Publication, Publisher, refusedAlike, refusedRoute, returnedFrom } from './publisher.js';
import { ReplyQueue } from './reply-queue.js';
import { type QueueBinding, requestRoute, Topology } from './topology.js';
import { addCallFields, notificationDict, replyDict, requestDict } from './wire.js';

/** How often a reply whose queue is missing is sent again (oslo's: 0.25 s). */
const REPLY_RETRY_MS = 250;

const DIRECT_REPLY_PREFIX = `${DIRECT_REPLY_TO}.`;

/** Where a client's replies come: its `reply_<uuid>` queue, or a direct reply-to channel. */
interface Replies {
  readonly name: string;
  setup(model: ChannelModel): Promise<void>;
  /** Undefined when the reply address is ready: a call then takes no await for it. */
  ensure(deadline: number, retry: number, what: string): Promise<void> | undefined;
  /** The request went out, numbered `seq` by the publisher, to exchange `sentTo` (`''` the default one) with routing key `sentKey`. */
  sent(msgId: string, replyTo: string, seq: number, sentTo: string, sentKey: string): void;
  /** Acknowledges the replies received so far, so that the acks leave with the next request. */
  flushAcks(): void;
  /** At close: acknowledges the replies received and sees the acknowledgement written. */
  settle(graceMs: number): Promise<void>;
  forget(msgId: string): void;
}

/**
 * The RabbitMQ driver (AMQP 0-9-1, amqplib), on oslo.messaging's rabbit wire format: the
 * `openstack` topic exchange, `<topic>` / `<topic>.<server>` queues, `<topic>_fanout` exchanges
 * with one queue per server, `reply_<uuid>` queues, the 2.0 envelope, publisher confirms and
 * mandatory replies. One connection per transport publishes and consumes replies; every
 * listener (RPC server, notification listener) gets its own connection, as oslo's do.
 */
export class RabbitDriver extends DriverBase implements Driver {
  readonly kind = 'rabbit';
  readonly quotesResults = true;
  readonly argsDepth = 1;
  private readonly conn: RabbitConnection;
  private readonly topology: Topology;
  private readonly publisher: Publisher;
  private readonly replies: Replies;

  constructor(url: TransportUrl, config: HermodConfig) {
    super(url, config);
    this.topology = new Topology(config.rabbit);
    this.conn = this.connection('publisher');
    this.publisher = new Publisher(
      this.conn,
      this.topology,
      (msg) => this.onCallReturned(msg),
      (from, to, refusal) => this.onCallsRefused(from, to, refusal),
    );
    // Replies to calls in flight still reach the reply queue after a connection loss (it
    // outlives the connection by rabbit.transientQueuesTtl), so those calls complete after the
    // reconnect; a queue lost with the broker is declared again under its name, and servers send
    // the replies it missed again until it is back (reply-queue.ts).
    // With rabbit.directReplyTo, replies come to the publisher connection's direct reply-to
    // channel instead; calls in flight when it goes fail at once (direct-reply.ts).
    this.replies = config.rabbit.directReplyTo
      ? new DirectReplyTo(this.conn, this.waiter, config)
      : new ReplyQueue(
          this.topology.replyQueueName(),
          this.conn,
          this.waiter,
          this.topology.transientQueue(),
          config,
          config.rabbit.replyAcks,
        );
    void this.conn.addHook(async (m) => {
      await this.publisher.setup(m);
      await this.replies.setup(m);
    });
  }

  /** A connection whose state changes are the driver's, tagged with its role. */
  private connection(role: string): RabbitConnection {
    const conn = new RabbitConnection(this.url, this.config, role);
    conn.on('state', (s: ConnectionState) => this.setState(s, { role }));
    return conn;
  }

  private onCallReturned(msg: Message): void {
    try {
      const compression = compressionOf(msg.properties.headers);
      const data = unenvelope(
        compression === undefined ? msg.content : decompressBody(msg.content, compression, this.config.maxMessageSize),
      );
      if (typeof data._msg_id === 'string') {
        this.waiter.fail(
          data._msg_id,
          new MessageUndeliverable(
            `call ${String(data.method)}: no queue is bound for ${returnedFrom(msg.fields.exchange)} routing key '${msg.fields.routingKey}' (returned by the broker)`,
          ),
        );
      }
    } catch {
      /* not ours */
    }
  }

  /**
   * The broker closed the calls channel for refusing a call's exchange, or one routing key of it
   * under a topic permission (403): the calls of that kind sent there fail now, and so do the calls sent after the refused one, which the broker
   * discarded unread. Before, each waited out its timeout (60 s by default) for a reply that
   * could not come. Not on a 404 (an exchange deleted under us): calls to it sent before the
   * deletion reached their queues and will be answered, and which one was refused is unknown.
   */
  private onCallsRefused(from: number, to: number, refusal: Error): void {
    const route = refusedRoute(refusal);
    if (route === undefined || (refusal as { code?: unknown }).code !== 403) return;
    const exchange = route.exchange;
    this.waiter.failDropped(
      from,
      to,
      (sentTo, sentKey) => refusedAlike(route, sentTo, sentKey),
      (call) => new MessageDeliveryFailure(`call ${call}: the broker refused it: ${refusal.message}`, { cause: refusal }),
      (call) =>
        new TransportError(
          `call ${call}: the broker dropped it unread, having closed the channel it went out on for a call to exchange '${exchange || 'amq.default'}' (${refusal.message}); it reached no server and may be sent again`,
          { cause: refusal },
        ),
    );
  }

  /** The 2.0 envelope of an oslo dict, within maxMessageSize. */
  private enveloped(msg: Record<string, unknown>, what: string): string {
    return bounded(envelope(msg, what), this.config.maxMessageSize);
  }

  /** Opens the publishing connection now (see Driver.connect); no retry limit before `deadline`. */
  async connect(deadline: number): Promise<void> {
    await this.conn.ready(deadline, -1, 'connect');
  }

  async send(target: Target, ctx: Context, request: RpcRequest, opts: SendOptions): Promise<Reply | undefined> {
    this.assertOpen();
    const deadline = Date.now() + opts.timeout;
    const retry = opts.retry ?? -1;
    const uniqueId = uuidHex();
    const msg = requestDict(ctx, request, uniqueId);
    const { exchange, key } = requestRoute(target, this.exchange(target), this.config.rabbit.requestRouting);
    const mandatory = this.config.rabbit.mandatoryRequests;
    const what = `${opts.waitForReply ? 'call' : 'cast'} ${request.method}`;
    // Publications are written out in one key order (sendReply's too): an object spread here
    // made V8 a new hidden class per call (the clone's map was a prototype map, which has no
    // transition cache), two descriptor arrays and a load handler each, all garbage.
    if (!opts.waitForReply) {
      const body = this.enveloped(msg, what);
      await this.publisher.publish({ exchange, key, body, uniqueId, mandatory, confirm: true, expires: false, deadline, retry, what });
      return undefined;
    }
    const msgId = uuidHex();
    // The reply address first: a direct reply-to address is known once its channel is open.
    const replies = this.replies.ensure(deadline, retry, what);
    if (replies) await replies;
    const replyTo = this.replies.name;
    addCallFields(msg, msgId, replyTo, opts.callMonitorTimeout);
    const body = this.enveloped(msg, what);
    const reply = this.waiter.wait(msgId, {
      timeout: Math.max(1, deadline - Date.now()),
      callMonitorTimeout: opts.callMonitorTimeout ?? 0,
      named: opts.callTimeout ?? opts.timeout,
      describe: `${request.method} on topic ${target.topic}${target.server ? ` server ${target.server}` : ''}`,
    });
    // Not awaited: the reply decides when the call ends, and a failed publish fails it. One
    // promise chain fewer per call than awaiting the publish and then the reply, and none at
    // all when the request can be handed to amqplib at once.
    const expires = this.config.rabbit.requestExpiration;
    const req: Publication = { exchange, key, body, uniqueId, mandatory, confirm: false, expires, deadline, retry, what };
    this.replies.flushAcks();
    const sentTo = exchange?.name ?? '';
    if (this.publisher.publishNow(req)) this.replies.sent(msgId, replyTo, this.publisher.lastCall, sentTo, key);
    else
      this.publisher.publishCall(req).then(
        (seq) => this.replies.sent(msgId, replyTo, seq, sentTo, key),
        (err: Error) => this.waiter.fail(msgId, err),
      );
    try {
      return await reply;
    } finally {
      this.replies.forget(msgId);
    }
  }

  async sendNotification(target: Target, ctx: Context, message: Record<string, unknown>, opts: NotificationSendOptions): Promise<void> {
    this.assertOpen();
    const exchange = this.exchange(target);
    const key = target.topic!;
    const uniqueId = uuidHex();
    const msg = notificationDict(ctx, message, uniqueId);
    const what = `notification ${String(message.event_type ?? key)}`;
    const body = opts.envelope === '1.0' ? this.encode(msg, what) : this.enveloped(msg, what);
    await this.publisher.publish({
      exchange: { name: exchange, type: 'topic' },
      key,
      body,
      uniqueId,
      mandatory: false,
      confirm: true,
      expires: false,
      // Like oslo's notifier: make sure the queue exists so notifications wait for a listener.
      declare: this.topology.notificationBinding(exchange, key),
      deadline: Date.now() + this.config.rpc.responseTimeout,
      retry: opts.retry ?? -1,
      what,
    });
  }

  /**
   * Publishes a reply (or heartbeat) to a caller's reply queue: mandatory, on the default
   * exchange. A caller's direct reply-to address is the exception: RabbitMQ (3.10) returns a
   * mandatory message sent there as unroutable even when it delivered it, so that one goes
   * without the flag (a caller that is gone cannot be told about anyway).
   */
  private readonly sendReply: ReplySender = (to, reply) => {
    const uniqueId = uuidHex();
    let body: string;
    try {
      body = this.enveloped(replyDict(to.msgId, reply, uniqueId), 'reply');
    } catch (err) {
      // Heartbeats call this from a timer: an unencodable reply must reject, never throw.
      return Promise.reject(err);
    }
    const mandatory = !to.replyQueue.startsWith(DIRECT_REPLY_PREFIX);
    const send = () =>
      this.publisher.publish({
        exchange: undefined,
        key: to.replyQueue,
        body,
        uniqueId,
        mandatory,
        confirm: true,
        expires: false,
        deadline: Date.now() + this.config.rpc.responseTimeout,
        retry: -1,
        what: `reply to ${to.msgId}`,
      });
    // A heartbeat that finds no queue is not worth another: the final reply follows it. Only a
    // returned reply enters the retry's async frame: a reply that found its queue costs one
    // `catch` more, not an async function around every reply.
    const sent = send();
    return mandatory && reply.ending ? sent.catch((err: unknown) => this.replyUntilQueued(send, err)) : sent;
  };

  /**
   * Sends a reply again, every {@link REPLY_RETRY_MS}, while the broker returns it for want of
   * its queue, for at most `rpc.responseTimeout` (60 s), as oslo's servers do for
   * `kombu_missing_consumer_retry_timeout` (60 s). After a broker restart the server often
   * reconnects before its callers have declared their (transient) reply queues again: a reply
   * dropped at once left an oslo caller timing out on a call that had run, which a retry would
   * run twice. The request holds its slot meanwhile, as oslo's holds an executor thread.
   */
  private async replyUntilQueued(send: () => Promise<void>, first: unknown): Promise<void> {
    // Counted from the first return, a round trip after the first send.
    const giveUpAt = performance.now() + this.config.rpc.responseTimeout;
    let err = first;
    for (;;) {
      if (!(err instanceof MessageUndeliverable) || this.closed || performance.now() + REPLY_RETRY_MS > giveUpAt) throw err;
      // Unref'd: a stopping process does not wait out a caller that is gone.
      await new Promise((resolve) => setTimeout(resolve, REPLY_RETRY_MS).unref());
      if (this.closed) throw new ClosedError('transport is closed');
      try {
        return await send();
      } catch (e) {
        err = e;
      }
    }
  }

  async listen(target: Target, opts: ListenOptions): Promise<Listener> {
    this.assertOpen();
    const topic = target.topic!;
    const bindings = this.topology.serverBindings(this.exchange(target), topic, target.server!, opts.alias);
    return this.subscribe(`server ${topic}.${target.server}`, bindings, opts, 'rpc');
  }

  async listenForNotifications(
    targets: Array<{ target: Target; priority: string }>,
    pool: string | undefined,
    opts: ListenOptions,
  ): Promise<Listener> {
    this.assertOpen();
    const routes = targets.map(({ target, priority }) => ({ exchange: this.exchange(target), key: `${target.topic}.${priority}` }));
    return this.subscribe(
      `notification ${opts.tap ? 'tap' : 'listener'}${pool ? ` pool ${pool}` : ''}`,
      opts.tap ? this.topology.tapBindings(routes) : this.topology.listenerBindings(routes, pool),
      opts,
      'notify',
    );
  }

  /**
   * Starts a listener on a connection of its own; fails when its queues cannot be declared, and
   * with ClosedError when `listen.signal` aborts or the transport closes meanwhile. It is tracked
   * from the start, so closing the transport ends a subscription that is still connecting.
   */
  private async subscribe(role: string, bindings: QueueBinding[], listen: ListenOptions, kind: 'rpc' | 'notify'): Promise<Listener> {
    const conn = this.connection(role);
    const listener = this.track(
      new RabbitListener({
        conn,
        topology: this.topology,
        bindings,
        kind,
        maxMessageSize: this.maxMessageSize,
        maxJsonDepth: this.config.maxJsonDepth,
        reply: this.sendReply,
        listen,
        retryDelay: this.config.rabbit.retryInterval,
      }),
    );
    const failed = new Promise<never>((_, reject) => conn.once('setup-failed', (err: Error) => reject(err)));
    failed.catch(() => {});
    // Once it has a channel, deliveries may be running above: stopped (no more come; their
    // acknowledgements still go) and closed by the server's or listener's wait(). Closed at once,
    // a notification handled during start() was delivered again, every time.
    const abort = () => void (listener.delivering ? listener.stop() : listener.close());
    listen.signal?.addEventListener('abort', abort, { once: true });
    try {
      if (listen.signal?.aborted) throw new ClosedError(`${role}: stopped before it was subscribed`);
      await conn.addHook((m) => listener.setup(m));
      // The bound the README gives for a subscription at start, as on AMQP 1.0 (it was 3 × connectTimeout, whatever rpc.responseTimeout said).
      await Promise.race([conn.ready(Date.now() + this.config.rpc.responseTimeout, this.config.rpc.retry, role), failed]);
    } catch (err) {
      await listener.close();
      this.untrack(listener);
      if (listen.signal?.aborted) throw new ClosedError(`${role}: stopped before it was subscribed`, { cause: err });
      // A ConfigError stays one: a declare refused for other flags (it names the option that
      // differs) or a URL pointing at the other AMQP version.
      if (err instanceof TransportError || err instanceof ClosedError || err instanceof ConfigError) throw err;
      throw new TransportError(`${role}: could not declare its queues: ${(err as Error).message}`, { cause: err });
    } finally {
      listen.signal?.removeEventListener('abort', abort);
    }
    return listener;
  }

  protected async shutdown(): Promise<void> {
    // The replies received are acknowledged before the connection goes (see ReplyQueue.settle).
    await this.replies.settle(CLOSE_GRACE_MS);
    await this.conn.close();
  }
}
