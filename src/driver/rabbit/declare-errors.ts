import { ConfigError } from '../../core/errors.js';

/**
 * A declare the broker refused with 406 PRECONDITION_FAILED ("inequivalent arg"): the exchange
 * or queue exists with other flags, declared by a peer configured differently. Retrying cannot
 * help, so it becomes a {@link ConfigError} naming the option that probably differs.
 */

const INEQUIVALENT = /inequivalent arg '([^']+)' for (exchange|queue) '([^']*)' in vhost '[^']*': received (.*?) but current is (.*?)$/;

/** What each refusal probably means: the hermod option (and oslo's) behind the flag. */
function suspect(kind: string, name: string, arg: string, values: string): { key: string; hint: string } {
  const fanoutExchange = kind === 'exchange' && name.endsWith('_fanout');
  // A queue named <topic>_fanout is the shared fanout stream only when one side declared a
  // stream: a topic of that name (`jobs_fanout`) has a queue of it too, and an x-max-age
  // difference on the stream is its TTL's (a review saw both named rabbit.streamFanout).
  const fanoutNamed = kind === 'queue' && name.endsWith('_fanout');
  const streamQueue = fanoutNamed && arg === 'x-queue-type' && /\bstream\b/.test(values);
  // A server's own fanout queue: <topic>_fanout_<uuid hex>, or <topic>_fanout_<host>:<pid>:<n>
  // with the queue manager (a topic such as `a_fanout_b` is not one).
  const transientQueue = kind === 'queue' && (name.startsWith('reply_') || /_fanout_(?:[0-9a-f]{32}|.+:\d+:\d+)$/.test(name));
  if (fanoutExchange && arg === 'durable') {
    return {
      key: 'rabbit.transientQuorumQueues',
      hint: 'the other side probably runs with rabbit_transient_quorum_queue (and rabbit_stream_fanout) set differently; set rabbit.transientQuorumQueues (and rabbit.streamFanout) to match',
    };
  }
  if (fanoutExchange && arg === 'auto_delete') {
    return {
      key: 'rabbit.transientQuorumQueues',
      hint: 'oslo.messaging re-declared it non-durable and not auto-delete after a durable mismatch (its fallback), so it now suits neither side: align rabbit.transientQuorumQueues with rabbit_transient_quorum_queue, then delete the exchange (rabbitmqctl delete_exchange or the management UI)',
    };
  }
  if (kind === 'exchange') {
    return arg === 'auto_delete'
      ? { key: 'rabbit.autoDelete', hint: 'set rabbit.autoDelete to match amqp_auto_delete' }
      : {
          key: 'rabbit.durableQueues',
          hint: 'set rabbit.durableQueues / rabbit.quorumQueues to match amqp_durable_queues / rabbit_quorum_queue',
        };
  }
  if (streamQueue) {
    return {
      key: 'rabbit.streamFanout',
      hint: "the shared fanout stream is the other side's rabbit_stream_fanout: set rabbit.streamFanout (and rabbit.transientQueuesTtl, its x-max-age) to match",
    };
  }
  if (arg === 'x-expires' || arg === 'x-max-age') {
    const key = transientQueue || (fanoutNamed && arg === 'x-max-age') ? 'rabbit.transientQueuesTtl' : 'rabbit.serverQueueTtl';
    return { key, hint: `set ${key} to match (oslo: rabbit_transient_queues_ttl, in seconds)` };
  }
  if (arg === 'x-ha-policy') return { key: 'rabbit.haQueues', hint: 'set rabbit.haQueues to match rabbit_ha_queues' };
  if (arg === 'x-delivery-limit')
    return { key: 'rabbit.quorumDeliveryLimit', hint: 'set rabbit.quorumDeliveryLimit to match rabbit_quorum_delivery_limit' };
  if (arg === 'x-max-in-memory-length')
    return { key: 'rabbit.quorumMaxMemoryLength', hint: 'set rabbit.quorumMaxMemoryLength to match rabbit_quorum_max_memory_length' };
  if (arg === 'x-max-in-memory-bytes')
    return { key: 'rabbit.quorumMaxMemoryBytes', hint: 'set rabbit.quorumMaxMemoryBytes to match rabbit_quorum_max_memory_bytes' };
  if (transientQueue) {
    return {
      key: 'rabbit.transientQuorumQueues',
      hint: 'the other side probably runs with rabbit_transient_quorum_queue set differently; set rabbit.transientQuorumQueues to match',
    };
  }
  return {
    key: 'rabbit.quorumQueues',
    hint: 'the other side probably runs with rabbit_quorum_queue / amqp_durable_queues set differently; set rabbit.quorumQueues / rabbit.durableQueues to match',
  };
}

/**
 * A value as RabbitMQ writes it in the refusal: `'true'` for a flag, `the value 'quorum' of type
 * 'longstr'` for an argument, `none` for an argument not given.
 */
function brokerValue(text: string): string {
  const arg = /^the value '(.*)' of type '[^']*'$/.exec(text);
  if (arg) return arg[1]!;
  const quoted = /^'(.*)'$/.exec(text);
  return quoted ? quoted[1]! : text;
}

/** `err` as a ConfigError when it is an inequivalent-arg refusal; otherwise unchanged. */
export function explainDeclareError(err: unknown): unknown {
  const e = err as { code?: unknown; message?: unknown };
  if (e?.code !== 406 || typeof e.message !== 'string') return err;
  const m = INEQUIVALENT.exec(e.message.replace(/"$/, ''));
  if (!m) return err;
  const [, arg, kind, name, received, current] = m as unknown as [string, string, string, string, string, string];
  const { key, hint } = suspect(kind, name, arg, `${received} ${current}`);
  return new ConfigError(
    `${kind} '${name}' exists with ${arg}=${brokerValue(current)} (hermod declared ${brokerValue(received)}): ${hint}`,
    { cause: err, key },
  );
}

/** Runs a declare, turning an inequivalent-arg refusal into a ConfigError. */
export async function declaring<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw explainDeclareError(err);
  }
}
