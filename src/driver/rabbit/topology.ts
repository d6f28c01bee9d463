import type { Channel, Options } from 'amqplib';
import type { HermodConfig } from '../../config/index.js';
import { ConfigError, InvalidTarget } from '../../core/errors.js';
import { uuidHex } from '../../core/ids.js';
import { MAX_NAME_BYTES, type Target } from '../../core/target.js';
import { declaring } from './declare-errors.js';
import { type QueueManager, queueManagerFor } from './queue-manager.js';

/**
 * What oslo's rabbit driver declares, as data: exchanges, queues with their flags, routing
 * keys and the bindings of RPC servers and notification listeners (WIRE.md 1.2–1.6). The
 * connection replays these on every reconnect through its owners' setup hooks.
 */

/** An exchange messages are published to. */
export interface ExchangeRef {
  name: string;
  type: 'topic' | 'fanout';
}

/** Where a request goes: exchange (none: the default exchange) and routing key. */
export interface Route {
  exchange: ExchangeRef | undefined;
  key: string;
}

/** One queue a listener consumes, with the exchange it is bound to. */
export interface QueueBinding {
  queue: string;
  options: Options.AssertQueue;
  exchange: ExchangeRef;
  key: string;
  /** The server's own fanout queue: deleted when it stops, as oslo does. */
  deleteOnStop?: boolean;
  /** A stream queue (rabbit_stream_fanout): consumed from an offset kept across reconnects. */
  stream?: boolean;
}

type RabbitOptions = HermodConfig['rabbit'];

/** Refuses the combinations oslo.messaging 18 refuses, with the same reasons. */
export function checkRabbitOptions(r: RabbitOptions): void {
  if (r.streamFanout && !r.transientQuorumQueues) {
    throw new ConfigError(
      'rabbit.streamFanout needs rabbit.transientQuorumQueues=true (as oslo: rabbit_stream_fanout needs rabbit_transient_quorum_queue)',
      { key: 'rabbit.streamFanout' },
    );
  }
  if (r.haQueues && (r.quorumQueues || r.transientQuorumQueues)) {
    const key = r.quorumQueues ? 'rabbit.quorumQueues' : 'rabbit.transientQuorumQueues';
    throw new ConfigError(`rabbit.haQueues and ${key} both set: a queue is quorum or HA (mirrored), not both (as oslo refuses)`, { key });
  }
}

/** The fanout exchange of a topic. */
export function fanoutExchange(topic: string): ExchangeRef {
  return { name: `${topic}_fanout`, type: 'fanout' };
}

/**
 * Routing of a call or cast: `<topic>` or `<topic>.<server>` on the topic exchange, or the
 * topic's fanout exchange with key `""`. With `rabbit.requestRouting` = queue the first two go
 * through the default exchange instead: every queue is bound there by its own name, and oslo's
 * and hermod's servers name their queues after the very keys they bind, so the message lands in
 * the same queue without the broker matching the topic exchange's bindings.
 */
export function requestRoute(target: Target, exchange: string, routing: RabbitOptions['requestRouting']): Route {
  const topic = target.topic!;
  if (target.fanout) return { exchange: fanoutExchange(topic), key: '' };
  const key = target.server ? `${topic}.${target.server}` : topic;
  return { exchange: routing === 'queue' ? undefined : { name: exchange, type: 'topic' }, key };
}

/**
 * Queue and exchange flags from the `rabbit.*` options, as oslo.messaging 18 derives them
 * (impl_rabbit's `_get_queue_arguments` and the `declare_*_consumer` / `*_send` methods).
 */
export class Topology {
  private readonly qm: QueueManager | undefined;

  /** Throws ConfigError on a combination oslo refuses. */
  constructor(private readonly r: RabbitOptions) {
    checkRabbitOptions(r);
    this.qm = r.queueManager ? queueManagerFor(r.hostname, r.processName) : undefined;
  }

  /** A unique suffix: the queue manager's stable `<host>:<process>:<n>`, or a uuid. */
  uniqueName(): string {
    return this.qm ? this.qm.get() : uuidHex();
  }

  /** The caller's reply queue name: `reply_<host>:<process>:<n>` with the queue manager. */
  replyQueueName(): string {
    return `reply_${this.uniqueName()}`;
  }

  private queueArgs(kind: 'shared' | 'transient'): Record<string, unknown> {
    const args: Record<string, unknown> = {};
    const quorum = kind === 'shared' ? this.r.quorumQueues : this.r.transientQuorumQueues;
    if (this.r.haQueues) args['x-ha-policy'] = 'all';
    if (quorum) {
      args['x-queue-type'] = 'quorum';
      if (this.r.quorumDeliveryLimit > 0) args['x-delivery-limit'] = this.r.quorumDeliveryLimit;
      if (this.r.quorumMaxMemoryLength > 0) args['x-max-in-memory-length'] = this.r.quorumMaxMemoryLength;
      if (this.r.quorumMaxMemoryBytes > 0) args['x-max-in-memory-bytes'] = this.r.quorumMaxMemoryBytes;
    }
    if (kind === 'transient' && this.r.transientQueuesTtl > 0) args['x-expires'] = this.r.transientQueuesTtl;
    return args;
  }

  /** Flags of topic, server and notification queues. */
  sharedQueue(): Options.AssertQueue {
    const durable = this.r.durableQueues || this.r.quorumQueues;
    return { durable, autoDelete: this.r.quorumQueues ? false : this.r.autoDelete, arguments: this.queueArgs('shared') };
  }

  /**
   * Flags of reply and fanout queues: they expire `transientQueuesTtl` after their last
   * consumer; durable quorum queues with `transientQuorumQueues`.
   */
  transientQueue(): Options.AssertQueue {
    return { durable: this.r.transientQuorumQueues, autoDelete: false, arguments: this.queueArgs('transient') };
  }

  /**
   * The shared `<topic>_fanout` stream of `streamFanout`: durable, its messages kept
   * `transientQueuesTtl` (x-max-age, whole seconds as oslo writes it), no other argument.
   */
  streamQueue(): Options.AssertQueue {
    const args: Record<string, unknown> = { 'x-queue-type': 'stream' };
    const ttl = this.r.transientQueuesTtl;
    if (ttl > 0) args['x-max-age'] = `${Math.max(1, Math.round(ttl / 1000))}s`;
    return { durable: true, autoDelete: false, arguments: args };
  }

  /** Flags of a `<topic>_fanout` exchange: auto-deleted; durable with transient quorum queues. */
  fanoutExchangeOptions(): Options.AssertExchange {
    return { durable: this.r.transientQuorumQueues || this.r.streamFanout, autoDelete: true };
  }

  /** Flags of the control exchange and other topic exchanges. */
  exchangeOptions(): Options.AssertExchange {
    return { durable: this.r.durableQueues || this.r.quorumQueues, autoDelete: this.r.autoDelete };
  }

  /**
   * Whether the broker deletes `ex` by itself (a `<topic>_fanout` exchange once its last queue
   * is unbound, any exchange with `amqp_auto_delete`): a publisher cannot keep it as declared.
   */
  autoDeleted(ex: ExchangeRef): boolean {
    return ex.name !== '' && (ex.type === 'fanout' ? this.fanoutExchangeOptions() : this.exchangeOptions()).autoDelete === true;
  }

  /** Declares an exchange with its flags (the default exchange `""` needs none). */
  async declareExchange(ch: Channel, ex: ExchangeRef): Promise<void> {
    if (ex.name === '') return;
    const opts = ex.type === 'fanout' ? this.fanoutExchangeOptions() : this.exchangeOptions();
    await declaring(() => ch.assertExchange(ex.name, ex.type, opts));
  }

  /** Declares a queue; a refusal for inequivalent flags is a ConfigError naming the option. */
  async declareQueue(ch: Channel, queue: string, options: Options.AssertQueue): Promise<void> {
    await declaring(() => ch.assertQueue(queue, options));
  }

  /** Declares a binding's exchange and queue and binds them. */
  async declareBinding(ch: Channel, b: QueueBinding): Promise<void> {
    await this.declareExchange(ch, b.exchange);
    await this.declareQueue(ch, b.queue, b.options);
    await ch.bindQueue(b.queue, b.exchange.name, b.key);
  }

  /**
   * Flags of a server's own `<topic>.<server>` queue: a shared queue, plus x-expires when
   * `serverQueueTtl` is set. oslo leaves this queue behind when its server goes away, and a
   * host that is renamed or scaled away leaves it forever; the TTL is opt-in because
   * RabbitMQ refuses to redeclare an existing queue with different arguments.
   */
  serverQueue(): Options.AssertQueue {
    const q = this.sharedQueue();
    if (this.r.serverQueueTtl <= 0) return q;
    return { ...q, arguments: { ...q.arguments, 'x-expires': this.r.serverQueueTtl } };
  }

  /**
   * An RPC server's queues: the shared `<topic>`, its own `<topic>.<server>`, and its fanout
   * queue: one `<topic>_fanout_<uuid>` of its own, deleted when it stops; with the queue
   * manager `<topic>_fanout_<host>:<process>:<n>`, kept (it expires); with `streamFanout` the
   * stream `<topic>_fanout` every server of the topic shares, kept.
   */
  serverBindings(exchange: string, topic: string, server: string, alias?: string): QueueBinding[] {
    const shared = this.sharedQueue();
    const ex: ExchangeRef = { name: exchange, type: 'topic' };
    const unique = this.r.streamFanout ? '' : this.uniqueName();
    // Target keeps room for a uuid after '<topic>_fanout_'; the queue manager's
    // '<host>:<process>:<n>' is as long as the host and process names make it.
    if (this.qm && Buffer.byteLength(`${topic}_fanout_${unique}`, 'utf8') > MAX_NAME_BYTES) {
      throw new InvalidTarget(
        `the fanout queue '${topic}_fanout_${unique}' would be longer than the ${MAX_NAME_BYTES} bytes RabbitMQ carries: shorten the topic, or rabbit.hostname / rabbit.processName`,
      );
    }
    const fanout: QueueBinding = this.r.streamFanout
      ? { queue: `${topic}_fanout`, options: this.streamQueue(), exchange: fanoutExchange(topic), key: topic, stream: true }
      : {
          queue: `${topic}_fanout_${unique}`,
          options: this.transientQueue(),
          exchange: fanoutExchange(topic),
          key: topic,
          deleteOnStop: !this.qm,
        };
    const bindings: QueueBinding[] = [
      { queue: topic, options: shared, exchange: ex, key: topic },
      { queue: `${topic}.${server}`, options: this.serverQueue(), exchange: ex, key: `${topic}.${server}` },
      fanout,
    ];
    if (alias !== undefined) {
      const key = `${topic}.${alias}`;
      if (Buffer.byteLength(key, 'utf8') > MAX_NAME_BYTES)
        throw new InvalidTarget(
          `the queue '${key}' of this server's jobs would be longer than the ${MAX_NAME_BYTES} bytes RabbitMQ carries: shorten the topic`,
        );
      // hermod's own, never shared with oslo: exclusive, so the broker deletes it with the
      // connection of a process that died, and a poll for one of its jobs is returned at once
      // (a queue left to expire would take the polls and answer none).
      bindings.push({ queue: key, options: { exclusive: true, durable: false, autoDelete: true }, exchange: ex, key, deleteOnStop: true });
    }
    return bindings;
  }

  /**
   * The queue a notifier declares before it publishes, so notifications wait for a listener:
   * `<topic>.<priority>` bound by the same key (oslo's notifier does the same).
   */
  notificationBinding(exchange: string, key: string): QueueBinding {
    return { queue: key, options: this.sharedQueue(), exchange: { name: exchange, type: 'topic' }, key };
  }

  /** A notification listener's queues: `<topic>.<priority>` each, or one queue named after the pool for all. */
  listenerBindings(routes: Array<{ exchange: string; key: string }>, pool: string | undefined): QueueBinding[] {
    return routes.map(({ exchange, key }) => ({ ...this.notificationBinding(exchange, key), queue: pool ?? key }));
  }

  /**
   * A tap's queue: one of its own for all its routes, as a fanout queue is (transient, expiring
   * with `transientQueuesTtl` if its owner dies), deleted when it stops.
   */
  tapBindings(routes: Array<{ exchange: string; key: string }>): QueueBinding[] {
    const queue = `notifications-tap_${uuidHex()}`;
    return routes.map(({ exchange, key }) => ({
      queue,
      options: this.transientQueue(),
      exchange: { name: exchange, type: 'topic' },
      key,
      deleteOnStop: true,
    }));
  }
}
