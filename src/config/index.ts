import convict from 'convict';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../core/errors.js';

/**
 * hermod's configuration, one convict schema: each option has a default, a doc line and a
 * `HERMOD_*` environment variable. Sources from lowest to highest: defaults, `--config-file`
 * JSON files, environment, `--config key=value` overrides. Durations are milliseconds and
 * also accept `500ms`, `30s`, `2m`.
 */
export interface HermodConfig {
  /** Where to connect: `memory://`, `rabbit://…`, `amqp://…` (see README). */
  transportUrl: string;
  /** Exchange used when a Target names none (oslo's `control_exchange`). */
  controlExchange: string;
  /** Largest message accepted or sent, in bytes; bigger ones fail with MessageTooLarge. */
  maxMessageSize: number;
  rpc: {
    /** Default call timeout, ms (oslo's `rpc_response_timeout`, 60 s). */
    responseTimeout: number;
    /** Call-monitor timeout, ms; 0 = off. The server heartbeats every half of it. */
    callMonitorTimeout: number;
    /** Requests a server runs at once (also its prefetch / credit). */
    serverConcurrency: number;
    /** Calls a client may have in flight before callers wait or fail. */
    maxInFlight: number;
    /** What a call beyond `maxInFlight` does: `wait` for a slot or `fail` with TooManyInFlight. */
    inFlightOverflow: 'wait' | 'fail';
    /** Connection-failure retries of a send: -1 forever, 0 none, N attempts. */
    retry: number;
    /** Remote modules whose errors a client may rebuild as registered local classes. */
    allowedRemoteExmods: string[];
    /** Servers include the stack trace in failures they send. */
    sendTraceback: boolean;
    /** Deadline for a server's wait() to finish in-flight calls after stop(), ms. */
    stopTimeout: number;
  };
  notifications: {
    /** Notifier drivers: `messagingv2`, `messaging`, `log`, `noop`, `routing`. */
    driver: string[];
    /** Topics a notifier publishes to (`<topic>.<priority>`). */
    topics: string[];
    /** Connection-failure retries of a notification: -1 forever, 0 none, N. */
    retry: number;
    /** JSON file with the routing driver's groups (oslo's routing_config, as JSON). */
    routingConfig: string;
    /** Let listener endpoints requeue (oslo's allow_requeue); otherwise requeue = handled. */
    allowRequeue: boolean;
    /** Requeues of one notification before it is dropped (a requeue storm stops here). */
    redeliveryLimit: number;
  };
  rabbit: {
    /** AMQP heartbeat, seconds (oslo's `heartbeat_timeout_threshold`); 0 = off. */
    heartbeat: number;
    /** Largest AMQP frame, bytes. */
    frameMax: number;
    /** Declare topic and server queues durable (oslo's `amqp_durable_queues`). */
    durableQueues: boolean;
    /** Declare topic and server queues auto-delete (oslo's `amqp_auto_delete`). */
    autoDelete: boolean;
    /** Use quorum queues for topic, server and notification queues (`rabbit_quorum_queue`). */
    quorumQueues: boolean;
    /** x-expires of reply and fanout queues, ms (`rabbit_transient_queues_ttl`, 1800 s). */
    transientQueuesTtl: number;
    /** First reconnect delay, ms. */
    retryInterval: number;
    /** Factor the reconnect delay grows by after each failed attempt (capped, with jitter). */
    retryBackoff: number;
    /** Cap of the reconnect delay, ms. */
    intervalMax: number;
    /** TCP connect and AMQP handshake timeout, ms. */
    connectTimeout: number;
    /** SASL mechanism: `AMQPLAIN` (oslo's default) or `PLAIN`. */
    loginMethod: 'AMQPLAIN' | 'PLAIN';
    /** Publish calls and casts mandatory: with no queue bound they fail at once with MessageUndeliverable. */
    mandatoryRequests: boolean;
    /** Mirror queues (`x-ha-policy: all`, oslo's `rabbit_ha_queues`). */
    haQueues: boolean;
    /** `x-delivery-limit` of quorum queues; 0 = unset (`rabbit_quorum_delivery_limit`). */
    quorumDeliveryLimit: number;
  };
  amqp1: {
    /** `routable`, `legacy`, or `dynamic` (pick by the peer's product, as oslo does). */
    addressingMode: 'dynamic' | 'routable' | 'legacy';
    /** Link credit of each server receiver (oslo's `rpc_server_credit`). */
    serverCredit: number;
    /** Link credit of the reply receiver (`reply_link_credit`). */
    replyCredit: number;
    /** Send casts presettled (fire and forget, as oslo's `pre_settled`). */
    presettledCasts: boolean;
    /** Send replies presettled. */
    presettledReplies: boolean;
    /** AMQP idle timeout, ms; 0 = off. */
    idleTimeout: number;
    /** First reconnect delay, ms. */
    retryInterval: number;
    /** Cap of the reconnect delay, ms. */
    intervalMax: number;
    /** Container id announced on Open; empty = generated. */
    containerName: string;
  };
  tls: {
    /** CA bundle (PEM file path) for amqps:// and rabbits://. */
    ca: string;
    /** Client certificate (PEM file path). */
    cert: string;
    /** Client key (PEM file path). */
    key: string;
    /** Verify the server certificate. */
    verify: boolean;
  };
  log: {
    /** `debug`, `info`, `warn`, `error` or `silent`. */
    level: 'debug' | 'info' | 'warn' | 'error' | 'silent';
    /** Print log lines as JSON. */
    json: boolean;
  };
}

/** Parses `250`, `250ms`, `30s`, `2m`, `1h` into milliseconds. */
export function parseDuration(value: unknown): number {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return value;
  const m = typeof value === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value) : null;
  if (!m) throw new Error(`must be a duration such as 500ms, 30s, 2m or a number of milliseconds, got ${JSON.stringify(value)}`);
  const n = Number(m[1]);
  const unit = m[2] ?? 'ms';
  return Math.round(n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit]!);
}

convict.addFormat({
  name: 'duration-ms',
  validate(value: unknown) { parseDuration(value); },
  coerce: (value: unknown) => (typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : parseDuration(value)),
});
convict.addFormat({
  name: 'int-range',
  validate(value: unknown) {
    if (!Number.isInteger(value)) throw new Error(`must be an integer, got ${JSON.stringify(value)}`);
  },
  coerce: (value: unknown) => (typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value),
});
convict.addFormat({
  name: 'positive-int',
  validate(value: unknown) {
    if (!Number.isInteger(value) || (value as number) < 1) throw new Error(`must be an integer of 1 or more, got ${JSON.stringify(value)}`);
  },
  coerce: (value: unknown) => (typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value),
});
convict.addFormat({
  name: 'string-list',
  validate(value: unknown) {
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new Error('must be a list of strings');
  },
  coerce: (value: unknown) => (typeof value === 'string' ? value.split(',').map((s) => s.trim()).filter(Boolean) : value),
});
convict.addFormat({
  name: 'bool',
  validate(value: unknown) {
    if (typeof value !== 'boolean') throw new Error(`must be true or false, got ${JSON.stringify(value)}`);
  },
  coerce: (value: unknown) => {
    if (typeof value !== 'string') return value;
    if (/^(true|1|yes|on)$/i.test(value)) return true;
    if (/^(false|0|no|off)$/i.test(value)) return false;
    return value;
  },
});

const opt = (format: unknown, def: unknown, doc: string) => ({ format, default: def, doc });

const SCHEMA = {
  transportUrl: opt(String, 'memory://', 'Where to connect: memory://name, rabbit://user:pass@host:5672/vhost, amqp://host:5672/ (AMQP 1.0 router); several hosts comma-separated'),
  controlExchange: opt(String, 'openstack', "Exchange used when a target names none (oslo's control_exchange)"),
  maxMessageSize: opt('positive-int', 16 * 1024 * 1024, 'Largest message sent or accepted, in bytes'),
  rpc: {
    responseTimeout: opt('duration-ms', 60_000, 'Default call timeout (rpc_response_timeout)'),
    callMonitorTimeout: opt('duration-ms', 0, 'Call-monitor timeout: a call fails after this long without a heartbeat; 0 = off'),
    serverConcurrency: opt('positive-int', 64, 'Requests a server runs at once; also its prefetch / link credit'),
    maxInFlight: opt('positive-int', 1024, 'Calls one client may have in flight'),
    inFlightOverflow: opt(['wait', 'fail'], 'wait', 'Beyond maxInFlight: wait for a slot, or fail with TooManyInFlight'),
    retry: opt('int-range', -1, 'Connection-failure retries of a send: -1 forever (within the timeout), 0 none, N attempts'),
    allowedRemoteExmods: opt('string-list', [], 'Remote modules whose errors may be rebuilt as registered local classes'),
    sendTraceback: opt('bool', false, 'Servers include the stack trace in failures'),
    stopTimeout: opt('duration-ms', 30_000, "Deadline for a server's wait() after stop()"),
  },
  notifications: {
    driver: opt('string-list', ['messagingv2'], 'Notifier drivers: messagingv2, messaging (1.0, no envelope), log, noop, routing'),
    topics: opt('string-list', ['notifications'], 'Topics a notifier publishes to; listeners default to them too'),
    retry: opt('int-range', -1, 'Connection-failure retries of a notification: -1 forever, 0 none, N'),
    routingConfig: opt(String, '', "JSON file of the routing driver's groups (oslo's routing_config)"),
    allowRequeue: opt('bool', false, "Listener endpoints may requeue (oslo's allow_requeue); otherwise a requeue counts as handled"),
    redeliveryLimit: opt('int-range', 5, 'Requeues of one notification (by message_id) before it is dropped'),
  },
  rabbit: {
    heartbeat: opt('int-range', 60, 'AMQP heartbeat in seconds (heartbeat_timeout_threshold); 0 = off'),
    frameMax: opt('positive-int', 131_072, 'Largest AMQP frame in bytes'),
    durableQueues: opt('bool', false, 'Topic and server queues durable (amqp_durable_queues)'),
    autoDelete: opt('bool', false, 'Topic and server queues auto-delete (amqp_auto_delete)'),
    quorumQueues: opt('bool', false, 'Quorum topic, server and notification queues (rabbit_quorum_queue)'),
    transientQueuesTtl: opt('duration-ms', 1_800_000, 'x-expires of reply and fanout queues (rabbit_transient_queues_ttl)'),
    retryInterval: opt('duration-ms', 1_000, 'First reconnect delay'),
    retryBackoff: opt('positive-int', 2, 'Factor the reconnect delay grows by after each failure (capped at intervalMax, ±25% jitter)'),
    intervalMax: opt('duration-ms', 30_000, 'Cap of the reconnect delay'),
    connectTimeout: opt('duration-ms', 10_000, 'TCP connect and AMQP handshake timeout'),
    loginMethod: opt(['AMQPLAIN', 'PLAIN'], 'AMQPLAIN', "SASL mechanism (oslo's rabbit_login_method)"),
    mandatoryRequests: opt('bool', true, 'Calls and casts nobody is bound for fail at once with MessageUndeliverable (false: dropped by the broker as oslo does by default; a call then times out)'),
    haQueues: opt('bool', false, 'x-ha-policy: all on topic, server, reply and fanout queues (rabbit_ha_queues)'),
    quorumDeliveryLimit: opt('int-range', 0, 'x-delivery-limit of quorum queues; 0 = unset'),
  },
  amqp1: {
    addressingMode: opt(['dynamic', 'routable', 'legacy'], 'dynamic', 'Address format: routable, legacy, or dynamic (by the peer product, as oslo)'),
    serverCredit: opt('positive-int', 100, 'Link credit of each server receiver (rpc_server_credit)'),
    replyCredit: opt('positive-int', 200, 'Link credit of the reply receiver (reply_link_credit)'),
    presettledCasts: opt('bool', true, 'Send casts presettled (oslo pre_settled rpc-cast)'),
    presettledReplies: opt('bool', true, 'Send replies presettled (oslo pre_settled rpc-reply)'),
    idleTimeout: opt('duration-ms', 60_000, 'AMQP idle timeout: a peer silent this long (no frames, no heartbeats) is taken for dead and the connection re-made; 0 = off'),
    retryInterval: opt('duration-ms', 1_000, 'First reconnect delay'),
    intervalMax: opt('duration-ms', 30_000, 'Cap of the reconnect delay'),
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

type Leaf = { format: unknown; default: unknown; doc: string };

function leaves(node: Record<string, unknown>, prefix = ''): Array<[string, Leaf]> {
  const out: Array<[string, Leaf]> = [];
  for (const [k, v] of Object.entries(node)) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && 'doc' in v) out.push([path, v as Leaf]);
    else out.push(...leaves(v as Record<string, unknown>, path));
  }
  return out;
}

const LEAVES = leaves(SCHEMA);
const KEYS = LEAVES.map(([k]) => k);

/** `rpc.responseTimeout` → `HERMOD_RPC_RESPONSE_TIMEOUT`. */
export function envName(key: string): string {
  return 'HERMOD_' + key.replace(/\./g, '_').replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

function withEnv(schema: Record<string, unknown>, prefix = ''): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) {
    const path = prefix ? `${prefix}.${k}` : k;
    out[k] = v && typeof v === 'object' && 'doc' in v ? { ...(v as object), env: envName(path) } : withEnv(v as Record<string, unknown>, path);
  }
  return out;
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length]![b.length]!;
}

/** The known key closest to `key`, for "did you mean" messages. */
export function nearestKey(key: string, candidates: readonly string[] = KEYS): string {
  const lower = key.toLowerCase();
  let best = candidates[0]!;
  let bestD = Infinity;
  for (const c of candidates) {
    const last = c.split('.').pop()!.toLowerCase();
    const d = Math.min(distance(lower, c.toLowerCase()), distance(lower, last) + 1);
    if (d < bestD) { bestD = d; best = c; }
  }
  return best;
}

function assertKnown(key: string, source: string): void {
  if (!KEYS.includes(key)) {
    throw new ConfigError(`unknown configuration key '${key}' (from ${source}); did you mean '${nearestKey(key)}'? ` +
      'Run with --help-config to list the options.', { key });
  }
}

function flatten(obj: Record<string, unknown>, prefix = ''): Array<[string, unknown]> {
  const out: Array<[string, unknown]> = [];
  for (const [k, v] of Object.entries(obj)) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v) && !KEYS.includes(path)) out.push(...flatten(v as Record<string, unknown>, path));
    else out.push([path, v]);
  }
  return out;
}

function setKey(conf: convict.Config<unknown>, key: string, value: unknown, source: string): void {
  try {
    conf.set(key as never, value as never);
  } catch (err) {
    throw new ConfigError(`invalid value for ${key} (from ${source}): ${(err as Error).message}`, { cause: err, key });
  }
}

/** Where configuration comes from; every part is optional. */
export interface ConfigSources {
  /** JSON files, applied in order. */
  files?: string[];
  /** Environment to read `HERMOD_*` variables from; defaults to `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Highest-priority values by dotted key (`rpc.responseTimeout`), e.g. from `--config`. */
  overrides?: Record<string, unknown>;
}

/** Builds a validated configuration; unknown keys and bad values throw {@link ConfigError}. */
export function loadConfig(sources: ConfigSources = {}): HermodConfig {
  const env = sources.env ?? process.env;
  for (const name of Object.keys(env)) {
    if (name.startsWith('HERMOD_') && !KEYS.some((k) => envName(k) === name)) {
      const guess = nearestKey(name.slice(7).toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()));
      throw new ConfigError(`unknown environment variable ${name}; did you mean ${envName(guess)}?`, { key: name });
    }
  }
  const conf = convict(withEnv(SCHEMA) as never, { env, args: [] });
  try {
    for (const file of sources.files ?? []) {
      let data: unknown;
      try {
        data = JSON.parse(readFileSync(file, 'utf8'));
      } catch (err) {
        throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`, { cause: err, key: file });
      }
      if (!data || typeof data !== 'object' || Array.isArray(data)) throw new ConfigError(`config file ${file} must hold a JSON object`);
      for (const [k, v] of flatten(data as Record<string, unknown>)) {
        assertKnown(k, `file ${file}`);
        setKey(conf, k, v, `file ${file}`);
      }
    }
    // Environment outranks files: convict read it at construction, so re-apply it now.
    for (const k of KEYS) {
      const value = env[envName(k)];
      if (value !== undefined) setKey(conf, k, value, `environment ${envName(k)}`);
    }
    for (const [k, v] of Object.entries(sources.overrides ?? {})) {
      assertKnown(k, '--config');
      setKey(conf, k, v, '--config');
    }
    conf.validate({ allowed: 'strict' });
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`invalid configuration: ${(err as Error).message}`, { cause: err });
  }
  return conf.getProperties() as unknown as HermodConfig;
}

/** The default configuration (no files, no environment). */
export function defaultConfig(): HermodConfig {
  return loadConfig({ env: {} });
}

/**
 * Pulls `--config key=value`, `--config key value` and `--config-file path` out of argv.
 * Returns the remaining arguments untouched.
 */
export function parseConfigArgs(argv: readonly string[]): { overrides: Record<string, string>; files: string[]; rest: string[] } {
  const overrides: Record<string, string> = {};
  const files: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--config' || a.startsWith('--config=')) {
      let spec = a === '--config' ? argv[++i] : a.slice('--config='.length);
      if (spec === undefined) throw new ConfigError('--config needs key=value or key value');
      let value: string | undefined;
      const eq = spec.indexOf('=');
      if (eq > 0) {
        value = spec.slice(eq + 1);
        spec = spec.slice(0, eq);
      } else {
        value = argv[++i];
        if (value === undefined) throw new ConfigError(`--config ${spec} needs a value`, { key: spec });
      }
      assertKnown(spec, '--config');
      overrides[spec] = value;
    } else if (a === '--config-file' || a.startsWith('--config-file=')) {
      const file = a === '--config-file' ? argv[++i] : a.slice('--config-file='.length);
      if (!file) throw new ConfigError('--config-file needs a path');
      files.push(file);
    } else {
      rest.push(a);
    }
  }
  return { overrides, files, rest };
}

/** Every option with its default, environment variable and doc, for `--help-config`. */
export function describeConfig(): string {
  return LEAVES.map(([k, leaf]) => {
    const def = JSON.stringify(leaf.default);
    return `${k}  (default ${def}, env ${envName(k)})\n    ${leaf.doc}`;
  }).join('\n');
}

/** Every configuration key, dotted. */
export const CONFIG_KEYS: readonly string[] = KEYS;
