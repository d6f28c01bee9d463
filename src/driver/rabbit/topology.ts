import type { Channel, Options } from 'amqplib';
import type { HermodConfig } from '../../config/index.js';
import { uuidHex } from '../../core/ids.js';
import type { Target } from '../../core/target.js';

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

/** Where a request goes: exchange and routing key. */
export interface Route {
  exchange: ExchangeRef;
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
}

/** A `<topic>_fanout` exchange: auto-deleted, never durable. */
const FANOUT_EXCHANGE_OPTIONS: Options.AssertExchange = { durable: false, autoDelete: true };

/** The fanout exchange of a topic. */
export function fanoutExchange(topic: string): ExchangeRef {
  return { name: `${topic}_fanout`, type: 'fanout' };
}

/** Routing of a call or cast: `<topic>`, `<topic>.<server>`, or the topic's fanout exchange with key `""`. */
export function requestRoute(target: Target, exchange: string): Route {
  const topic = target.topic!;
  if (target.fanout) return { exchange: fanoutExchange(topic), key: '' };
  return { exchange: { name: exchange, type: 'topic' }, key: target.server ? `${topic}.${target.server}` : topic };
}

/** Queue and exchange flags from the `rabbit.*` options, as oslo derives them. */
export class Topology {
  constructor(private readonly r: HermodConfig['rabbit']) {}

  private queueArgs(kind: 'shared' | 'transient'): Record<string, unknown> {
    const args: Record<string, unknown> = {};
    if (kind === 'transient') args['x-expires'] = this.r.transientQueuesTtl;
    if (this.r.haQueues) args['x-ha-policy'] = 'all';
    if (kind === 'shared' && this.r.quorumQueues) {
      args['x-queue-type'] = 'quorum';
      if (this.r.quorumDeliveryLimit > 0) args['x-delivery-limit'] = this.r.quorumDeliveryLimit;
    }
    return args;
  }

  /** Flags of topic, server and notification queues. */
  sharedQueue(): Options.AssertQueue {
    const durable = this.r.durableQueues || this.r.quorumQueues;
    return { durable, autoDelete: this.r.quorumQueues ? false : this.r.autoDelete, arguments: this.queueArgs('shared') };
  }

  /** Flags of reply and fanout queues: they expire `transientQueuesTtl` after their last consumer. */
  transientQueue(): Options.AssertQueue {
    return { durable: false, autoDelete: false, arguments: this.queueArgs('transient') };
  }

  /** Flags of the control exchange and other topic exchanges. */
  exchangeOptions(): Options.AssertExchange {
    return { durable: this.r.durableQueues || this.r.quorumQueues, autoDelete: this.r.autoDelete };
  }

  /** Declares an exchange with its flags (the default exchange `""` needs none). */
  async declareExchange(ch: Channel, ex: ExchangeRef): Promise<void> {
    if (ex.name === '') return;
    await ch.assertExchange(ex.name, ex.type, ex.type === 'fanout' ? FANOUT_EXCHANGE_OPTIONS : this.exchangeOptions());
  }

  /** Declares a binding's exchange and queue and binds them. */
  async declareBinding(ch: Channel, b: QueueBinding): Promise<void> {
    await this.declareExchange(ch, b.exchange);
    await ch.assertQueue(b.queue, b.options);
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
   * An RPC server's queues: the shared `<topic>`, its own `<topic>.<server>`, and a fanout
   * queue `<topic>_fanout_<uuid>` of its own, deleted when it stops.
   */
  serverBindings(exchange: string, topic: string, server: string): QueueBinding[] {
    const shared = this.sharedQueue();
    const ex: ExchangeRef = { name: exchange, type: 'topic' };
    return [
      { queue: topic, options: shared, exchange: ex, key: topic },
      { queue: `${topic}.${server}`, options: this.serverQueue(), exchange: ex, key: `${topic}.${server}` },
      {
        queue: `${topic}_fanout_${uuidHex()}`,
        options: this.transientQueue(),
        exchange: fanoutExchange(topic),
        key: topic,
        deleteOnStop: true,
      },
    ];
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
}
