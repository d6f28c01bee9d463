import type { HermodConfig } from '../../config/index.js';
import type { TransportUrl } from '../../config/transport-url.js';
import { MessageUndeliverable } from '../../core/errors.js';
import { uuidHex } from '../../core/ids.js';
import { parsePeerJson } from '../../core/json.js';
import type { Context } from '../../core/serializer.js';
import type { Target } from '../../core/target.js';
import type { Driver, Listener, ListenOptions, NotificationSendOptions, Reply, RpcRequest, SendOptions } from '../driver.js';
import { DriverBase } from '../driver-base.js';
import { type MemoryBroker, memoryBroker } from './broker.js';
import { MemoryListener } from './listener.js';
import type { ReplyBody, RequestBody } from './wire.js';

/**
 * A queue or fanout exchange name in the memory broker: its parts joined by NUL, which no
 * target field may contain, so that exchange `a.b` with topic `c` and exchange `a` with topic
 * `b.c` never share a queue (dotted names did). Within one exchange a queue is named after its
 * routing key, as oslo names it on RabbitMQ.
 */
function memoryName(...parts: string[]): string {
  return parts.join('\0');
}

/** What the RabbitMQ driver says of a request the broker returned, its exchange named as there. */
function unroutable(what: string, target: Target, exchange: string, key: string): MessageUndeliverable {
  const named = target.fanout ? `${target.topic}_fanout` : exchange;
  return new MessageUndeliverable(`${what}: no queue is bound for exchange '${named}' routing key '${key}' (returned by the broker)`);
}

/**
 * The in-memory driver: oslo semantics (competing servers, server-directed calls, fanout,
 * exchanges, timeouts, call-monitor heartbeats, notifications) inside one process. Every
 * `memory://<name>` transport of the process shares the broker called `<name>`.
 */
export class MemoryDriver extends DriverBase implements Driver {
  readonly kind = 'memory';
  readonly quotesResults = false;
  readonly argsDepth = 2;
  /** The shared in-process broker (exposed for tests and diagnostics). */
  readonly broker: MemoryBroker;
  private readonly replyQueue = `reply_${uuidHex()}`;
  private replyConsumerCancel: (() => void) | undefined;

  constructor(url: TransportUrl, config: HermodConfig) {
    super(url, config);
    this.broker = memoryBroker(url.name ?? 'default');
  }

  private ensureReplyConsumer(): void {
    if (this.replyConsumerCancel) return;
    this.broker.declareQueue(this.replyQueue);
    this.replyConsumerCancel = this.broker.consume(this.replyQueue, {
      prefetch: Infinity,
      inFlight: 0,
      deliver: (d) => {
        d.done();
        let body: ReplyBody;
        try {
          body = parsePeerJson(d.body, 'reply', this.config.maxJsonDepth) as ReplyBody;
        } catch (err) {
          // The call gets the reason (NestingTooDeep, MalformedMessage) instead of its timeout:
          // the reply's id is its first field.
          const id = /^\{"msgId":"([\w.:@-]{1,255})"/.exec(d.body)?.[1];
          if (id) this.waiter.fail(id, err as Error);
          return;
        }
        if (!body.ending) this.waiter.heartbeat(body.msgId);
        else if (body.failure) this.waiter.resolve(body.msgId, { failure: body.failure });
        else
          this.waiter.resolve(body.msgId, body.job === true ? { result: body.result ?? null, job: true } : { result: body.result ?? null });
      },
    });
  }

  async send(target: Target, ctx: Context, request: RpcRequest, opts: SendOptions): Promise<Reply | undefined> {
    this.assertOpen();
    const exchange = this.exchange(target);
    const topic = target.topic!;
    const body: RequestBody = { ctx, message: request as unknown as Record<string, unknown> };
    let routeExchange = exchange;
    let key = target.server ? `${topic}.${target.server}` : topic;
    if (target.fanout) {
      routeExchange = memoryName(exchange, topic, 'fanout');
      key = '';
    }
    // As the RabbitMQ driver's mandatory requests (rabbit.mandatoryRequests, default on): a
    // request no queue is bound for fails at once with the same error, where memory:// dropped
    // a cast silently and let a call wait its whole timeout. Off, it is dropped, as oslo does.
    const mandatory = this.config.rabbit.mandatoryRequests;
    if (!opts.waitForReply) {
      const what = `cast ${request.method}`;
      if (this.broker.publish(routeExchange, key, this.encode(body, what)) === 0 && mandatory)
        throw unroutable(what, target, exchange, key);
      return undefined;
    }
    this.ensureReplyConsumer();
    const msgId = uuidHex();
    body.msgId = msgId;
    body.replyTo = this.replyQueue;
    if (opts.callMonitorTimeout) body.monitor = opts.callMonitorTimeout;
    // As on RabbitMQ and AMQP 1.0: the server learns when its caller stops waiting (a call that
    // would become a job then is cancelled, a request still waiting for a slot is not started).
    // Without it the same program behaved otherwise on memory://.
    if (opts.timeout > 0 && Number.isFinite(opts.timeout)) {
      body.ttl = opts.timeout;
      body.expires = performance.now() + opts.timeout;
    }
    const encoded = this.encode(body, `call ${request.method}`);
    const reply = this.waiter.wait(msgId, {
      timeout: opts.timeout,
      callMonitorTimeout: opts.callMonitorTimeout ?? 0,
      named: opts.callTimeout ?? opts.timeout,
      describe: `${request.method} on topic ${topic}${target.server ? ` server ${target.server}` : ''}`,
    });
    if (this.broker.publish(routeExchange, key, encoded) === 0 && mandatory) {
      this.waiter.fail(msgId, unroutable(`call ${request.method}`, target, exchange, key));
    }
    return reply;
  }

  async sendNotification(target: Target, ctx: Context, message: Record<string, unknown>, _opts: NotificationSendOptions): Promise<void> {
    this.assertOpen();
    const exchange = this.exchange(target);
    // Like oslo's notifier, make sure the queue exists so notifications wait for a listener.
    const queue = memoryName(exchange, target.topic!);
    this.broker.declareQueue(queue);
    this.broker.bind(queue, exchange, target.topic!);
    this.broker.publish(exchange, target.topic!, this.encode({ ctx, message }, 'notification'));
  }

  async listen(target: Target, opts: ListenOptions): Promise<Listener> {
    this.assertOpen();
    const exchange = this.exchange(target);
    const topic = target.topic!;
    const fanoutQueue = memoryName(exchange, topic, 'fanout', uuidHex());
    const queues: Array<[string, string, string]> = [
      [memoryName(exchange, topic), exchange, topic],
      // Named after its key as on RabbitMQ, where topic `b` server `c` and topic `b.c` share a queue.
      [memoryName(exchange, `${topic}.${target.server}`), exchange, `${topic}.${target.server}`],
      [fanoutQueue, memoryName(exchange, topic, 'fanout'), ''],
    ];
    const transient = [fanoutQueue];
    if (opts.alias !== undefined) {
      const alias = memoryName(exchange, `${topic}.${opts.alias}`);
      queues.push([alias, exchange, `${topic}.${opts.alias}`]);
      transient.push(alias);
    }
    return this.subscribe(queues, opts, transient);
  }

  async listenForNotifications(
    targets: Array<{ target: Target; priority: string }>,
    pool: string | undefined,
    opts: ListenOptions,
  ): Promise<Listener> {
    this.assertOpen();
    const tap = opts.tap ? `tap.${uuidHex()}` : undefined;
    const queues: Array<[string, string, string]> = targets.map(({ target, priority }) => {
      const exchange = this.exchange(target);
      const key = `${target.topic}.${priority}`;
      return [tap ?? memoryName(exchange, pool ?? key), exchange, key];
    });
    return this.subscribe(queues, opts, tap ? [tap] : []);
  }

  private subscribe(queues: Array<[string, string, string]>, opts: ListenOptions, transient: string[]): Listener {
    for (const [queue, exchange, key] of queues) {
      this.broker.declareQueue(queue);
      this.broker.bind(queue, exchange, key);
    }
    const reply = (replyTo: string, body: ReplyBody) => {
      // As a broker's: a reply sent after its transport closed is lost (the caller times out); it
      // went out through the shared broker as if the connection were still there.
      this.assertOpen();
      this.broker.publish('', replyTo, this.encode(body, 'reply'));
    };
    return this.track(
      new MemoryListener(
        this.broker,
        queues.map(([q]) => q),
        transient,
        opts,
        reply,
        this.config.maxJsonDepth,
      ),
    );
  }

  /**
   * There is nothing to open, but a closed transport refuses here too, as the broker drivers'
   * do: code that checks readiness with connect() on memory:// must see what it will see there.
   */
  async connect(_deadline: number): Promise<void> {
    this.assertOpen();
  }

  protected async shutdown(): Promise<void> {
    this.replyConsumerCancel?.();
    this.broker.deleteQueue(this.replyQueue);
  }
}
