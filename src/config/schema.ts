/**
 * hermod's configuration schema: the single source of every option, its default, its doc line,
 * its `HERMOD_*` environment variable (derived from the key by {@link envName}) and of the
 * {@link HermodConfig} type (derived from the schema at type level, so adding an option here is
 * the whole change). Loading and sources are in `load.ts`.
 */
import type { Format, ValueOf } from './formats.js';

/**
 * The bounds of a numeric option beyond its format's, where the value goes into a protocol field
 * or a broker argument that takes no more (or no less): out of them, the broker would refuse the
 * connection or the declaration, which is reported as "cannot connect" and retried.
 */
export interface Range {
  readonly min?: number;
  readonly max?: number;
  /** The longest string value in UTF-8 bytes, for a name that goes into an AMQP shortstr. */
  readonly maxBytes?: number;
  /** A name as a target's: not empty, no whitespace or control characters. */
  readonly name?: true;
  /** Why the bound, said after it in the error: `AMQP's frame-max`. */
  readonly why: string;
}

/** One option of the schema: its value format, its default, a one-line doc, and its bounds. */
export interface Option<F extends Format = Format> {
  readonly format: F;
  readonly default: ValueOf<F>;
  readonly doc: string;
  readonly range?: Range;
}

/**
 * Declares an option. `format` decides the option's type: `String` → string, `'bool'` →
 * boolean, `'duration-ms'`/`'duration-ms-broker'`/`'duration-ms-positive'`/`'duration-s'`/`'int-range'`/`'non-negative-int'`/`'positive-int'` → number, `'string-list'` → string[],
 * and a list of values → their literal union (`['wait', 'fail']` → `'wait' | 'fail'`); the
 * default must be of that type.
 */
export function opt<const F extends Format>(format: F, def: NoInfer<ValueOf<F>>, doc: string, range?: Range): Option<F> {
  return range ? { format, default: def, doc, range } : { format, default: def, doc };
}

/** 2³²−1: the largest AMQP unsigned 32-bit field, and RabbitMQ's largest `x-expires`. */
const UINT32_MAX = 4_294_967_295;
/** 2¹⁶−1: the largest AMQP unsigned 16-bit field (a heartbeat, a prefetch count). */
const UINT16_MAX = 65_535;
/**
 * The queue manager's name parts: `reply_<host>:<process>:<n>` is a queue name (RabbitMQ takes
 * 255 bytes) and `hermod_<host>_<process>_qmanager.lock` a file name (255 too). A longer one
 * failed as ENAMETOOLONG at the first connect, naming no option.
 */
const QM_NAME_PART: Range = {
  maxBytes: 100,
  why: "with the other part, within the 255 bytes of a queue name and of the queue manager's file name",
};
const X_EXPIRES: Range = { max: UINT32_MAX, why: "RabbitMQ's largest x-expires, 2^32-1 ms, about 49.7 days" };

export const SCHEMA = {
  transportUrl: opt(
    String,
    'memory://',
    'Where to connect: memory://name, rabbit://user:pass@host:5672/vhost, amqp://host:5672/ (AMQP 1.0 router); several hosts comma-separated',
  ),
  controlExchange: opt(String, 'openstack', "Exchange used when a target names none (oslo's control_exchange)", {
    maxBytes: 255,
    name: true,
    why: "an AMQP exchange name, as a target's exchange",
  }),
  maxMessageSize: opt('positive-int', 16 * 1024 * 1024, 'Largest message sent or accepted, in bytes'),
  maxJsonDepth: opt('positive-int', 128, 'Deepest nesting of arrays and objects a received message may have (checked before parsing)'),
  rpc: {
    responseTimeout: opt('duration-ms-positive', 60_000, 'Default call timeout (rpc_response_timeout)'),
    callMonitorTimeout: opt('duration-ms', 0, 'Call-monitor timeout: a call fails after this long without a heartbeat; 0 = off'),
    serverConcurrency: opt('positive-int', 64, 'Requests a server runs at once; also its prefetch / link credit', {
      max: UINT16_MAX,
      why: "RabbitMQ's prefetch count, a 16-bit field",
    }),
    maxInFlight: opt('positive-int', 1024, 'Calls one client may have in flight'),
    inFlightOverflow: opt(['wait', 'fail'], 'wait', 'Beyond maxInFlight: wait for a slot, or fail with TooManyInFlight'),
    retry: opt('int-range', -1, 'Connection-failure retries of a send: -1 forever (within the timeout), 0 none, N attempts'),
    allowedRemoteExmods: opt('string-list', [], 'Remote modules whose errors may be rebuilt as registered local classes'),
    sendTraceback: opt('bool', false, 'Servers include the stack trace in failures'),
    introspection: opt('bool', true, "Servers answer the reserved 'hermod' namespace (ping, describe)"),
    validateResults: opt('bool', false, "Servers check results against their methods' contracts (development and tests)"),
    stopTimeout: opt(
      'duration-ms',
      25_000,
      "Deadline for a server's or listener's wait() after stop(), and the CLIs' --shutdown-timeout default (under Kubernetes' 30 s grace period)",
    ),
  },
  jobs: {
    max: opt(
      'positive-int',
      10_000,
      'Jobs one server holds (running, and finished ones kept for resultTtl); a long call beyond it fails with TooManyJobs',
    ),
    resultTtl: opt('duration-ms', 3_600_000, 'How long a finished job (its result, failure or cancellation) stays readable by pollers'),
    maxResultBytes: opt(
      'positive-int',
      256 * 1024 * 1024,
      "Bytes of finished jobs' results (as JSON) one server holds for pollers, all together; past it the oldest finished jobs are dropped early (JobNotFound)",
    ),
    maxPendingBytes: opt(
      'positive-int',
      64 * 1024 * 1024,
      "Bytes of pending jobs' requests (arguments and context as JSON) one server holds until a slot is free, all together; a long call that would wait past it fails with TooManyJobs (one is always taken when none is pending)",
    ),
    deferAfter: opt(
      'duration-ms',
      1_000,
      "Methods marked long answer with a job token when they have not finished within this; 0 = a token at once (a server's deferAfter option applies to every method)",
    ),
    stopStrategy: opt(
      ['wait', 'abort'],
      'wait',
      'What a stopping server does with running jobs: wait (until the deadline) or abort (cancel them)',
    ),
    stopLinger: opt(
      'duration-ms',
      5_000,
      'How long a stopping server keeps answering polls for jobs that ended during the stop and were not collected yet',
    ),
    pollInterval: opt('duration-ms-positive', 100, "First delay between a client's polls of a job; grows by 1.5 up to pollMax"),
    pollMax: opt('duration-ms-positive', 2_000, 'Cap of the delay between polls of a job'),
    pollTimeout: opt(
      'duration-ms-positive',
      10_000,
      'Timeout of one poll; a server that does not answer one fails the job wait with ServerUnavailable',
    ),
    jobTimeout: opt(
      'duration-ms',
      0,
      "How long call() and Job.result() wait for a job's result; 0 = no bound (a gone server still ends the wait, see pollTimeout)",
    ),
  },
  notifications: {
    driver: opt('string-list', ['messagingv2'], 'Notifier drivers: messagingv2, messaging (1.0, no envelope), log, noop, routing'),
    topics: opt('string-list', ['notifications'], 'Topics a notifier publishes to; listeners default to them too'),
    retry: opt('int-range', -1, 'Connection-failure retries of a notification: -1 until rpc.responseTimeout, 0 none, N (within it)'),
    routingConfig: opt(String, '', "JSON file of the routing driver's groups (oslo's routing_config)"),
    allowRequeue: opt('bool', false, "Listener endpoints may requeue (oslo's allow_requeue); otherwise a requeue counts as handled"),
    redeliveryLimit: opt('non-negative-int', 5, 'Requeues of one notification (by message_id) before it is dropped'),
  },
  rabbit: {
    heartbeat: opt('duration-s', 60, 'AMQP heartbeat in seconds, or 30s, 2m (heartbeat_timeout_threshold); 0 = off', {
      max: UINT16_MAX,
      why: "AMQP's heartbeat, a 16-bit count of seconds",
    }),
    frameMax: opt('positive-int', 131_072, 'Largest AMQP frame in bytes', {
      min: 4096,
      max: UINT32_MAX,
      why: "AMQP 0-9-1's frame-max: 4096 at least, a 32-bit field",
    }),
    durableQueues: opt('bool', false, 'Topic and server queues durable (amqp_durable_queues)'),
    autoDelete: opt('bool', false, 'Topic and server queues auto-delete (amqp_auto_delete)'),
    quorumQueues: opt('bool', false, 'Quorum topic, server and notification queues (rabbit_quorum_queue)'),
    transientQuorumQueues: opt(
      'bool',
      false,
      'Reply and fanout queues as durable quorum queues, the <topic>_fanout exchanges durable (rabbit_transient_quorum_queue)',
    ),
    streamFanout: opt(
      'bool',
      false,
      'Fanout through one shared <topic>_fanout stream queue per topic, consumed from offset last (rabbit_stream_fanout); needs transientQuorumQueues',
    ),
    queueManager: opt(
      'bool',
      false,
      'Stable reply and fanout queue names <host>:<processName>:<n>, reused after a restart (use_queue_manager)',
    ),
    hostname: opt(String, '', "Host part of the queue manager's names; empty = os.hostname() (oslo's hostname)", QM_NAME_PART),
    processName: opt(
      String,
      '',
      "Process part of the queue manager's names; empty = the script's file name (oslo's processname)",
      QM_NAME_PART,
    ),
    transientQueuesTtl: opt(
      'duration-ms-broker',
      1_800_000,
      'x-expires of reply and fanout queues; with streamFanout the x-max-age of the stream, in whole seconds (rabbit_transient_queues_ttl); 0 = unset',
      X_EXPIRES,
    ),
    serverQueueTtl: opt(
      'duration-ms-broker',
      0,
      "x-expires of each server's own <topic>.<server> queue: removed this long after its last consumer left; 0 = off (kept, as oslo's)",
      X_EXPIRES,
    ),
    retryInterval: opt('duration-ms-positive', 1_000, 'First reconnect delay'),
    retryBackoff: opt('positive-int', 2, 'Factor the reconnect delay grows by after each failure (capped at intervalMax, ±25% jitter)'),
    intervalMax: opt('duration-ms-positive', 30_000, 'Cap of the reconnect delay'),
    connectTimeout: opt('duration-ms-positive', 10_000, 'TCP connect and AMQP handshake timeout'),
    loginMethod: opt(['AMQPLAIN', 'PLAIN'], 'AMQPLAIN', "SASL mechanism (oslo's rabbit_login_method)"),
    mandatoryRequests: opt(
      'bool',
      true,
      'Calls and casts nobody is bound for fail at once with MessageUndeliverable (false: dropped by the broker as oslo does by default; a call then times out)',
    ),
    directReplyTo: opt(
      'bool',
      false,
      'Replies to calls come by RabbitMQ direct reply-to (amq.rabbitmq.reply-to) instead of a reply_<uuid> queue; calls in flight fail at once when the connection drops',
    ),
    replyAcks: opt(
      'bool',
      true,
      "Acknowledge each reply taken from the reply_<uuid> queue, as oslo does (false: consumed without acknowledgements, as RabbitMQ's RPC tutorial does: less broker work per call, but a reply the broker had already sent on a connection that drops is lost and its call times out)",
    ),
    requestRouting: opt(
      ['exchange', 'queue'],
      'exchange',
      "How calls and casts reach a server's queue: exchange = published to the target's topic exchange with the routing key <topic>[.<server>], as oslo does; queue = straight to the queue of that name through the default exchange, the queue oslo and hermod servers consume (less broker work per call; the target's exchange and any other binding of the key are bypassed)",
    ),
    requestExpiration: opt(
      'bool',
      true,
      "Each call request carries its time left as a per-message expiration, as oslo's do (false: a request waits in its queue until a server takes it, even after its caller gave up; less broker work per call)",
    ),
    haQueues: opt('bool', false, 'x-ha-policy: all on topic, server, reply and fanout queues (rabbit_ha_queues)'),
    quorumDeliveryLimit: opt('non-negative-int', 0, 'x-delivery-limit of quorum queues; 0 = unset'),
    quorumMaxMemoryLength: opt(
      'non-negative-int',
      0,
      'x-max-in-memory-length of quorum queues (rabbit_quorum_max_memory_length); 0 = unset',
    ),
    quorumMaxMemoryBytes: opt('non-negative-int', 0, 'x-max-in-memory-bytes of quorum queues (rabbit_quorum_max_memory_bytes); 0 = unset'),
  },
  amqp1: {
    addressingMode: opt(
      ['dynamic', 'routable', 'legacy'],
      'dynamic',
      'Address format: routable, legacy, or dynamic (by the peer product, as oslo)',
    ),
    serverCredit: opt('positive-int', 100, 'Link credit of each server receiver (rpc_server_credit)', {
      max: UINT32_MAX,
      why: "AMQP 1.0's link credit, a 32-bit field",
    }),
    replyCredit: opt('positive-int', 200, 'Link credit of the reply receiver (reply_link_credit)', {
      max: UINT32_MAX,
      why: "AMQP 1.0's link credit, a 32-bit field",
    }),
    presettledCasts: opt(
      'bool',
      false,
      'Send casts presettled (oslo pre_settled rpc-cast): cast() resolves once written, with no confirmation; a router may drop them (Qpid Dispatch does when 250 wait for one receiver)',
    ),
    presettledReplies: opt('bool', true, 'Send replies presettled (oslo pre_settled rpc-reply)'),
    idleTimeout: opt(
      'duration-ms',
      60_000,
      'AMQP idle timeout: a peer silent this long (no frames, no heartbeats) is taken for dead and the connection re-made; 0 = off',
    ),
    retryInterval: opt('duration-ms-positive', 1_000, 'First reconnect delay'),
    intervalMax: opt('duration-ms-positive', 30_000, 'Cap of the reconnect delay'),
    connectTimeout: opt('duration-ms-positive', 10_000, 'TCP connect, TLS, SASL and AMQP open timeout of each connect attempt'),
    saslAnonymous: opt(
      'bool',
      true,
      'Without credentials in the URL, log in with SASL ANONYMOUS (EXTERNAL with tls.cert over amqps); false: no SASL layer, for a peer with SASL disabled',
    ),
    containerName: opt(String, '', 'Container id on Open; empty = generated'),
  },
  tls: {
    ca: opt(String, '', 'CA bundle (PEM path) for amqps:// and rabbits://'),
    cert: opt(String, '', 'Client certificate (PEM path)'),
    key: opt(String, '', 'Client private key (PEM path)'),
    verify: opt('bool', true, 'Verify the server certificate'),
  },
  log: {
    level: opt(['debug', 'info', 'warn', 'error', 'silent'], 'info', 'Log level'),
    json: opt('bool', false, 'Log lines as JSON'),
  },
};

/** The configuration a schema describes: each option replaced by the type of its values. */
export type ConfigOf<S> = { -readonly [K in keyof S]: S[K] extends Option<infer F> ? ValueOf<F> : ConfigOf<S[K]> };

/**
 * hermod's configuration, as {@link loadConfig} returns it: one property per schema section and
 * option (`config.rpc.responseTimeout`); `--help-config` lists them with defaults and docs.
 */
export interface HermodConfig extends ConfigOf<typeof SCHEMA> {}

type KeysOf<S, P extends string = ''> = {
  [K in keyof S & string]: S[K] extends Option ? `${P}${K}` : KeysOf<S[K], `${P}${K}.`>;
}[keyof S & string];

type ValueAt<S, K extends string> = K extends `${infer H}.${infer R}`
  ? H extends keyof S
    ? ValueAt<S[H], R>
    : never
  : K extends keyof S
    ? S[K] extends Option<infer F>
      ? ValueOf<F>
      : never
    : never;

/** A dotted configuration key: `transportUrl`, `rpc.responseTimeout`, … */
export type ConfigKey = KeysOf<typeof SCHEMA>;

/** Typed values by dotted key, e.g. `{ 'rpc.retry': 2 }` (the CLI defaults are written so). */
export type ConfigValues = { [K in ConfigKey]?: ValueAt<typeof SCHEMA, K> };

function leaves(node: object, prefix = ''): Array<[string, Option]> {
  const out: Array<[string, Option]> = [];
  for (const [k, v] of Object.entries(node)) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && 'doc' in v) out.push([path, v as Option]);
    else out.push(...leaves(v as object, path));
  }
  return out;
}

/** Every option by dotted key, in schema order. */
export const OPTIONS: ReadonlyArray<readonly [string, Option]> = leaves(SCHEMA);

/** Every configuration key, dotted. */
export const CONFIG_KEYS: readonly string[] = OPTIONS.map(([k]) => k);

/** `rpc.responseTimeout` → `HERMOD_RPC_RESPONSE_TIMEOUT`. */
export function envName(key: string): string {
  return `HERMOD_${key
    .replace(/\./g, '_')
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toUpperCase()}`;
}

/** The schema in convict's form: every option with its environment variable. */
export function convictSchema(node: object = SCHEMA, prefix = ''): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && 'doc' in v) {
      // The range is checked by loadConfig, where its error names the value's source.
      const { range: _range, ...option } = v as Option;
      out[k] = { ...option, env: envName(path) };
    } else out[k] = convictSchema(v as object, path);
  }
  return out;
}
