/**
 * Transport URLs: `rabbit://user:pass@h1:5672,h2/vhost?heartbeat=30`, `amqp://host/`,
 * `memory://name`. It lives beside the config schema because its query options are config keys
 * of the driver's section and are checked against the schema.
 */
import { isIPv6 } from 'node:net';
import { inspect } from 'node:util';
import { ConfigError } from '../core/errors.js';
import { CONFIG_KEYS } from './schema.js';
import { closeKey } from './suggest.js';

/**
 * One broker host of a transport URL. Its `password` is readable, but `JSON.stringify`, pino and
 * `util.inspect` show it as `****`.
 */
export interface TransportHost {
  /** Host name or IP address (IPv6 without brackets). */
  hostname: string;
  /** TCP port; the scheme's default when the URL gives none. */
  port: number;
  /** User name, percent-decoded. */
  username?: string;
  /** Password, percent-decoded. */
  password?: string;
}

/** A parsed transport URL. Its `toString()` never shows passwords. */
export interface TransportUrl {
  /** The scheme as written: `rabbit`, `rabbits`, `amqp`, `amqps` or `memory`. */
  scheme: string;
  /** Which driver serves it. */
  driver: 'rabbit' | 'amqp1' | 'memory';
  /** TLS (`rabbits://`, `amqps://`, or oslo's `?ssl=1`). */
  tls: boolean;
  /** Hosts in the order given; drivers fail over across them. Empty for memory://. */
  hosts: TransportHost[];
  /** Virtual host, percent-decoded; undefined when the URL has no path. */
  virtualHost?: string;
  /** Name of the in-process broker for memory:// (`default` when none). */
  name?: string;
  /**
   * Query options, as dotted config keys (`rabbit.heartbeat`) → string values; oslo's names
   * (`heartbeat_timeout_threshold=30`) are given as hermod's (`rabbit.heartbeat`: `30s`).
   */
  options: Record<string, string>;
  /** The URL with passwords shown as `****`. */
  toString(): string;
}

const SCHEMES: Record<string, { driver: TransportUrl['driver']; tls: boolean; port: number }> = {
  rabbit: { driver: 'rabbit', tls: false, port: 5672 },
  rabbits: { driver: 'rabbit', tls: true, port: 5671 },
  amqp: { driver: 'amqp1', tls: false, port: 5672 },
  amqps: { driver: 'amqp1', tls: true, port: 5671 },
  memory: { driver: 'memory', tls: false, port: 0 },
};

function decode(part: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new ConfigError(`transport URL: ${what} is not valid percent-encoding`, { key: 'transportUrl' });
  }
}

function parseHost(spec: string, defaultPort: number, index: number, url: string): TransportHost {
  const fail = (what: string) =>
    new ConfigError(`transport URL '${redactWhole(url)}': host #${index + 1} ${what}`, { key: 'transportUrl' });
  let creds: string | undefined;
  let hostport = spec;
  const at = spec.lastIndexOf('@');
  if (at >= 0) {
    creds = spec.slice(0, at);
    hostport = spec.slice(at + 1);
  }
  let hostname: string;
  let portText: string | undefined;
  if (hostport.startsWith('[')) {
    const close = hostport.indexOf(']');
    if (close < 0) throw fail(`'${hostport}' has an unclosed IPv6 bracket`);
    hostname = hostport.slice(1, close);
    const after = hostport.slice(close + 1);
    if (after && !after.startsWith(':')) throw fail(`'${hostport}' has text after the IPv6 address (expected [address]:port)`);
    portText = after ? after.slice(1) : undefined;
    if (!isIPv6(hostname)) throw fail(`'${hostport}': '${hostname}' in brackets is not an IPv6 address`);
  } else {
    const parts = hostport.split(':');
    // Only one ':' is a port separator; an IPv6 address must be bracketed to tell its colons apart.
    if (parts.length > 2) throw fail(`'${hostport}' is not host:port (an IPv6 address goes in brackets: [::1]:5672)`);
    hostname = parts[0]!;
    portText = parts[1];
    if (!hostname) throw fail('has no host name');
    if (!/^[A-Za-z0-9._-]+$/.test(hostname)) throw fail(`has an invalid host name '${hostname}'`);
  }
  let port = defaultPort;
  if (portText !== undefined && portText !== '') {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      throw fail(`has an invalid port '${portText}' (1-65535)`);
    }
    port = Number(portText);
  }
  const host: TransportHost = { hostname, port };
  if (creds !== undefined) {
    const colon = creds.indexOf(':');
    host.username = decode(colon >= 0 ? creds.slice(0, colon) : creds, `the user name of host #${index + 1}`);
    if (colon >= 0) {
      host.password = decode(creds.slice(colon + 1), `the password of host #${index + 1}`);
      maskSecrets(host, (h) => ({ ...h, password: '****' }));
    }
  }
  return host;
}

/**
 * Whether the credentials in `rest` (what follows `scheme://`) are not where the parser finds
 * them: an '@' after the host list (an unencoded '/' or '?' in a password, or an '@' in the
 * virtual host), or a host without credentials before one with them (an unencoded ',' in a
 * password). Such a URL is refused, and messages about it show none of its user info.
 */
function ambiguousCredentials(rest: string): boolean {
  const lastAt = rest.lastIndexOf('@');
  if (lastAt < 0) return false;
  const end = rest.search(/[/?]/);
  if (end >= 0 && end < lastAt) return true;
  const hosts = (end >= 0 ? rest.slice(0, end) : rest).split(',');
  const lastWithCreds = hosts.findLastIndex((h) => h.includes('@'));
  return hosts.slice(0, lastWithCreds).some((h) => !h.includes('@'));
}

/**
 * Replaces every password in a transport URL (parsed or raw), or in the URLs a message quotes,
 * with `****`. A raw URL whose user info cannot be told apart from its hosts loses everything up
 * to its last '@' but the first user name, so no part of a password survives however it was
 * mistyped. A string that is one URL (it starts with `scheme://`, or has no scheme and no
 * whitespace) is redacted whole, whatever its password holds: spaces and tabs too. In other
 * text a URL in quotes runs to its closing quote; an unquoted one ends at whitespace, except
 * where its user info does not: a `user:` with no '@' before the next whitespace is masked up to
 * the last '@' that follows, since a password with a space cannot be told from the words after
 * it.
 */
export function redactUrl(url: string | TransportUrl): string {
  if (typeof url !== 'string') return url.toString();
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(url) || !/\s/.test(url)) return redactWhole(url);
  return redactText(url);
}

/**
 * {@link redactUrl} of a string taken as one URL, with or without a scheme, whatever characters
 * its password holds. Every message of the parser quotes the URL through this.
 */
function redactWhole(url: string): string {
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(url);
  return m ? m[0] + redactRest(url.slice(m[0].length)) : redactRest(url);
}

/**
 * {@link redactUrl} of free text: what follows each `scheme://`, up to its closing quote when it
 * is quoted, else up to the next URL (see {@link redactSpan}); without a
 * scheme, each `user:pass@` at the start of the text or of a quoted part (where hermod's
 * messages quote a URL), its password running to the last '@' of that part.
 */
function redactText(text: string): string {
  const found = [...text.matchAll(/[A-Za-z][A-Za-z0-9+.-]*:\/\//g)];
  if (found.length === 0) {
    return text.replace(/(^|['"`])([^\s,/@:'"`]*):([^'"`]*)@/g, (_m, pre: string, user: string) => `${pre}${user}:****@`);
  }
  let out = text.slice(0, found[0]!.index);
  found.forEach((m, i) => {
    const start = m.index + m[0].length;
    const end = i + 1 < found.length ? found[i + 1]!.index : text.length;
    const span = text.slice(start, end);
    // A quoted URL (as hermod's messages quote them) runs to its closing quote, spaces and all.
    const quote = /['"`]/.exec(text[m.index - 1] ?? '')?.[0];
    const close = quote ? span.search(new RegExp(`${quote}(?=[\\s:;,.)]|$)`)) : -1;
    out += m[0] + (close >= 0 ? redactRest(span.slice(0, close)) + span.slice(close) : redactSpan(span));
  });
  return out;
}

/**
 * The text after one `scheme://`, up to the next URL or the end, redacted. The URL ends at
 * whitespace, unless the user info of its last host is cut short there (a `user:` and no '@'): a
 * password with a space cannot be told from the words after it, so it is taken to run to the
 * last '@' of the span, and everything up to that '@' is masked.
 */
function redactSpan(span: string): string {
  const ws = span.search(/\s/);
  if (ws < 0) return redactRest(span);
  const token = span.slice(0, ws);
  const netloc = token.split(/[/?]/, 1)[0]!;
  const lastAt = span.lastIndexOf('@');
  const hosts = netloc.split(',');
  const last = hosts.pop()!;
  if (!last.includes('@') && last.includes(':') && lastAt > ws) {
    const before = hosts.length ? `${redactRest(hosts.join(','))},` : '';
    return `${before}${last.slice(0, last.indexOf(':'))}:****${span.slice(lastAt)}`;
  }
  return redactRest(token) + span.slice(ws);
}

/**
 * Gives `obj` a `toJSON` and a `util.inspect` view (both non-enumerable, so copies, equality
 * checks and `Object.keys` are unchanged) in which `mask` has replaced its secrets: `obj` itself
 * keeps them for the driver that logs in with them, while logging, serializing or inspecting it
 * (a host, a transport's config) shows `****`.
 */
export function maskSecrets<T extends object>(obj: T, mask: (copy: T) => T): T {
  const masked = () => mask({ ...obj });
  Object.defineProperty(obj, 'toJSON', { value: masked, enumerable: false, configurable: true });
  Object.defineProperty(obj, inspect.custom, {
    value: (_depth: number, options: object) => inspect(masked(), options),
    enumerable: false,
    configurable: true,
  });
  return obj;
}

/** {@link redactUrl} of what follows `scheme://`. */
function redactRest(rest: string): string {
  if (ambiguousCredentials(rest)) {
    const user = /^[^:@/?,]*/.exec(rest)![0];
    return `${user}:****@${rest.slice(rest.lastIndexOf('@') + 1)}`;
  }
  const end = rest.search(/[/?]/);
  const netloc = end >= 0 ? rest.slice(0, end) : rest;
  const hosts = netloc.split(',').map((h) => {
    const at = h.lastIndexOf('@');
    const colon = h.indexOf(':');
    return at >= 0 && colon >= 0 && colon < at ? `${h.slice(0, colon)}:****${h.slice(at)}` : h;
  });
  return `${hosts.join(',')}${end >= 0 ? rest.slice(end) : ''}`;
}

function render(u: Omit<TransportUrl, 'toString'>, written: Array<[string, string]>): string {
  if (u.driver === 'memory') return `memory://${u.name === 'default' ? '' : u.name}`;
  const hosts = u.hosts.map((h) => {
    const name = h.hostname.includes(':') ? `[${h.hostname}]` : h.hostname;
    const cred = h.username !== undefined ? `${encodeURIComponent(h.username)}${h.password !== undefined ? ':****' : ''}@` : '';
    return `${cred}${name}:${h.port}`;
  });
  // The query as written (oslo's names stay oslo's), so the URL reads back the same.
  const query = written.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
  const vhost = u.virtualHost === undefined ? '' : encodeURIComponent(u.virtualHost);
  return `${u.scheme}://${hosts.join(',')}/${vhost}${query ? `?${query}` : ''}`;
}

/**
 * How an oslo.messaging option name in a `transport_url` query is read. oslo lets any option of
 * the driver's group (`[oslo_messaging_rabbit]`, `[oslo_messaging_amqp]`) be given in the query,
 * over its config file, so the URL of the Python services may carry them. `key`: hermod's
 * equivalent, the value converted from oslo's form (`seconds`: oslo's whole seconds, hermod's
 * ms; `bool`: oslo's spellings); `tls`: oslo's `ssl`, TLS as `rabbits://`/`amqps://`; `ignore`:
 * nothing hermod does depends on it (why); otherwise refused, `why` saying what hermod does
 * instead.
 */
type OsloName =
  | { key: string; kind: 'bool' | 'int' | 'seconds' | 'string' }
  | { kind: 'tls' }
  | { kind: 'ignore'; why: string }
  | { kind: 'refuse'; why: string }
  /** A flag whose value `is` is what hermod always does: taken and ignored then, refused otherwise. */
  | { kind: 'fixed'; is: boolean; why: string };

const B = (key: string): OsloName => ({ key, kind: 'bool' });
const S = (key: string): OsloName => ({ key, kind: 'seconds' });
const no = (why: string): OsloName => ({ kind: 'refuse', why });
const ignored = (why: string): OsloName => ({ kind: 'ignore', why });
const fixed = (is: boolean, why: string): OsloName => ({ kind: 'fixed', is, why });
const TLS_FILES = {
  ssl: { kind: 'tls' },
  ssl_ca_file: { key: 'tls.ca', kind: 'string' },
  ssl_cert_file: { key: 'tls.cert', kind: 'string' },
  ssl_key_file: { key: 'tls.key', kind: 'string' },
} as const satisfies Record<string, OsloName>;

/** oslo.messaging's option names (14 and 18) a transport URL's query may carry, by driver. */
export const OSLO_QUERY_NAMES: Record<'rabbit' | 'amqp1', Record<string, OsloName>> = {
  rabbit: {
    ...TLS_FILES,
    heartbeat_timeout_threshold: S('rabbit.heartbeat'),
    amqp_durable_queues: B('rabbit.durableQueues'),
    amqp_auto_delete: B('rabbit.autoDelete'),
    rabbit_quorum_queue: B('rabbit.quorumQueues'),
    rabbit_transient_quorum_queue: B('rabbit.transientQuorumQueues'),
    rabbit_stream_fanout: B('rabbit.streamFanout'),
    rabbit_transient_queues_ttl: S('rabbit.transientQueuesTtl'),
    rabbit_quorum_delivery_limit: { key: 'rabbit.quorumDeliveryLimit', kind: 'int' },
    rabbit_ha_queues: B('rabbit.haQueues'),
    use_queue_manager: B('rabbit.queueManager'),
    hostname: { key: 'rabbit.hostname', kind: 'string' },
    processname: { key: 'rabbit.processName', kind: 'string' },
    rabbit_login_method: { key: 'rabbit.loginMethod', kind: 'string' },
    rabbit_retry_interval: S('rabbit.retryInterval'),
    rabbit_interval_max: S('rabbit.intervalMax'),
    heartbeat_in_pthread: ignored("how oslo's Python process runs its heartbeat thread"),
    rpc_conn_pool_size: ignored("the size of oslo's Python connection pool"),
    conn_pool_min_size: ignored("the size of oslo's Python connection pool"),
    conn_pool_ttl: ignored("the idle time of oslo's Python pooled connections"),
    ssl_version: no('hermod negotiates the TLS version with Node (TLS 1.2 or later)'),
    ssl_enforce_hostname_verification: no('hermod verifies the host name whenever tls.verify is true (the default)'),
    ssl_enforce_fips_mode: no("FIPS mode is Node's (node --enable-fips)"),
    kombu_reconnect_delay: no('reconnects wait rabbit.retryInterval, growing by rabbit.retryBackoff up to rabbit.intervalMax'),
    kombu_reconnect_splay: no('reconnect delays carry ±25% jitter'),
    kombu_compression: no(
      "hermod sends bodies uncompressed; it reads the ones oslo peers compress (gzip, and brotli or zstd when the peer's kombu has them) without being told",
    ),
    kombu_missing_consumer_retry_timeout: no(
      'a reply whose queue is missing is sent again every 0.25 s for rpc.responseTimeout (60 s), as oslo does for this option: set that with --config',
    ),
    kombu_failover_strategy: no('hermod rotates hosts round-robin'),
    rabbit_retry_backoff: no('oslo adds it in seconds; rabbit.retryBackoff is a factor: set it with --config'),
    rabbit_quorum_max_memory_length: { key: 'rabbit.quorumMaxMemoryLength', kind: 'int' },
    rabbit_quorum_max_memory_bytes: { key: 'rabbit.quorumMaxMemoryBytes', kind: 'int' },
    // oslo.messaging 14's spelling of the two (Debian 12's), taken as 18's names.
    rabbit_quroum_max_memory_length: { key: 'rabbit.quorumMaxMemoryLength', kind: 'int' },
    rabbit_quroum_max_memory_bytes: { key: 'rabbit.quorumMaxMemoryBytes', kind: 'int' },
    rabbit_qos_prefetch_count: no("the prefetch is rpc.serverConcurrency (a server's concurrency): set it with --config"),
    heartbeat_rate: no("hermod's heartbeat is amqplib's, at rabbit.heartbeat"),
    // A URL shared with Python services may carry them at the value hermod always has.
    direct_mandatory_flag: fixed(true, 'replies are always published mandatory'),
    enable_cancel_on_failover: fixed(false, "a classic mirrored-queue feature hermod's consumers do not ask for"),
  },
  amqp1: {
    ...TLS_FILES,
    container_name: { key: 'amqp1.containerName', kind: 'string' },
    idle_timeout: S('amqp1.idleTimeout'),
    connection_retry_interval: S('amqp1.retryInterval'),
    connection_retry_interval_max: S('amqp1.intervalMax'),
    addressing_mode: { key: 'amqp1.addressingMode', kind: 'string' },
    rpc_server_credit: { key: 'amqp1.serverCredit', kind: 'int' },
    reply_link_credit: { key: 'amqp1.replyCredit', kind: 'int' },
    trace: ignored("oslo's protocol trace in its Python log"),
    ...Object.fromEntries(
      [
        'ssl_key_password',
        'ssl_verify_vhost',
        'sasl_mechanisms',
        'sasl_config_dir',
        'sasl_config_name',
        'sasl_default_realm',
        'connection_retry_backoff',
        'link_retry_delay',
        'default_reply_retry',
        'default_reply_timeout',
        'default_send_timeout',
        'default_notify_timeout',
        'default_sender_link_timeout',
        'pseudo_vhost',
        'server_request_prefix',
        'broadcast_prefix',
        'group_request_prefix',
        'rpc_address_prefix',
        'notify_address_prefix',
        'multicast_address',
        'unicast_address',
        'anycast_address',
        'default_notification_exchange',
        'default_rpc_exchange',
        'notify_server_credit',
        'pre_settled',
      ].map((n) => [n, no("hermod's AMQP 1.0 driver has no such setting (amqp1.* options and --help-config list what it has)")]),
    ),
  },
};

/** oslo_config's Boolean spellings. */
function osloBool(v: string): boolean | undefined {
  const s = v.trim().toLowerCase();
  if (['1', 'true', 'on', 'yes'].includes(s)) return true;
  if (['0', 'false', 'off', 'no'].includes(s)) return false;
  return undefined;
}

/**
 * Parses a transport URL: `rabbit://user:pass@h1:5672,user:pass@h2:5673/vhost?heartbeat=30`,
 * `amqp://host:5672/` (AMQP 1.0), `rabbits://` / `amqps://` (TLS) or `memory://name`.
 * Query options name keys of the driver's config section. Errors never echo passwords.
 */
export function parseTransportUrl(url: string): TransportUrl {
  if (typeof url !== 'string' || url.length === 0) {
    throw new ConfigError('transport URL is empty; expected e.g. rabbit://guest:guest@localhost:5672/ or memory://', {
      key: 'transportUrl',
    });
  }
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/s.exec(url);
  if (!m)
    throw new ConfigError(
      `transport URL '${redactWhole(url)}' has no scheme; expected rabbit://, rabbits://, amqp://, amqps:// or memory://`,
      { key: 'transportUrl' },
    );
  const scheme = m[1]!.toLowerCase();
  const info = SCHEMES[scheme];
  if (!info) {
    throw new ConfigError(`transport URL scheme '${scheme}' is not supported; use rabbit, rabbits, amqp (AMQP 1.0), amqps or memory`, {
      key: 'transportUrl',
    });
  }
  let rest = m[2]!;
  // Before any other message can quote a fragment of it: a mistyped password must not leak.
  if (info.driver !== 'memory' && ambiguousCredentials(rest)) {
    throw new ConfigError(
      `transport URL '${redactWhole(url)}' has ambiguous credentials: percent-encode '/', '?' and ',' in user names and passwords (%2F, %3F, %2C), give every host before one with credentials its own, and write '@' in a virtual host as %40`,
      { key: 'transportUrl' },
    );
  }
  let queryText = '';
  const q = rest.indexOf('?');
  if (q >= 0) {
    queryText = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  const slash = rest.indexOf('/');
  const netloc = slash >= 0 ? rest.slice(0, slash) : rest;
  const path = slash >= 0 ? rest.slice(slash + 1) : undefined;
  // A fragment after the hosts has no meaning here (oslo's urlparse drops it): kept, it became
  // part of the virtual host or of the last option's value. (In a password '#' needs no encoding.)
  if (path?.includes('#') || queryText.includes('#')) {
    throw new ConfigError(`transport URL '${redactWhole(url)}' has a '#' after its hosts: percent-encode it (%23) in a virtual host`, {
      key: 'transportUrl',
    });
  }

  const options: Record<string, string> = {};
  const written: Array<[string, string]> = [];
  const section = info.driver;
  let tls = info.tls;
  for (const pair of queryText.split('&').filter(Boolean)) {
    const eq = pair.indexOf('=');
    const k = decode(eq >= 0 ? pair.slice(0, eq) : pair, 'a query option name');
    let v = decode(eq >= 0 ? pair.slice(eq + 1) : '', `the value of query option ${k}`);
    // By its name first: the options that set no key of their own (`ssl`, the ones taken as
    // hermod's behaviour) were never counted below, and `ssl=1&ssl=0` meant TLS.
    if (written.some(([name]) => name === k)) throw new ConfigError(`transport URL option '${k}' is given twice`, { key: 'transportUrl' });
    written.push([k, v]);
    let full = `${section}.${k}`;
    const oslo = section === 'memory' || CONFIG_KEYS.includes(full) ? undefined : OSLO_QUERY_NAMES[section][k];
    if (oslo) {
      const bad = (expected: string) =>
        new ConfigError(`transport URL option '${k}' (oslo.messaging's) must be ${expected}, got '${v}'`, { key: 'transportUrl' });
      if (oslo.kind === 'refuse' || oslo.kind === 'ignore') {
        if (oslo.kind === 'ignore') continue;
        throw new ConfigError(
          `transport URL option '${k}' is oslo.messaging's, and hermod has no equivalent: ${oslo.why}; remove it from the URL hermod is given`,
          { key: 'transportUrl' },
        );
      }
      if (oslo.kind === 'fixed') {
        const on = osloBool(v);
        if (on === undefined) throw bad('true or false (1, yes, on / 0, no, off)');
        if (on === oslo.is) continue;
        throw new ConfigError(
          `transport URL option '${k}=${v}' is oslo.messaging's, and hermod has no equivalent: ${oslo.why}; remove it from the URL hermod is given`,
          { key: 'transportUrl' },
        );
      }
      if (oslo.kind === 'tls') {
        const on = osloBool(v);
        if (on === undefined) throw bad('true or false (1, yes, on / 0, no, off)');
        // oslo's ssl=false over a TLS scheme has no counterpart: kombu would still speak TLS.
        if (!on && info.tls)
          throw new ConfigError(`transport URL option 'ssl=${v}' contradicts ${scheme}://, which is TLS`, { key: 'transportUrl' });
        tls ||= on;
        continue;
      }
      if (oslo.kind === 'bool') {
        const on = osloBool(v);
        if (on === undefined) throw bad('true or false (1, yes, on / 0, no, off)');
        v = String(on);
      } else if (oslo.kind === 'int' || oslo.kind === 'seconds') {
        if (!/^\s*[+-]?\d+\s*$/.test(v)) throw bad(oslo.kind === 'seconds' ? 'a whole number of seconds' : 'a whole number');
        v = oslo.kind === 'seconds' ? `${Number(v)}s` : String(Number(v));
      }
      full = oslo.key;
    } else if (!CONFIG_KEYS.includes(full)) {
      const known = CONFIG_KEYS.filter((c) => c.startsWith(`${section}.`));
      const guess = closeKey(full, known);
      const hint = !known.length
        ? ` (${scheme}:// takes no options)`
        : guess
          ? `; did you mean '${guess.split('.').pop()}'?`
          : ` (options: ${known.map((c) => c.split('.').pop()).join(', ')})`;
      throw new ConfigError(`transport URL option '${k}' is not an option of the ${section} driver${hint}`, { key: full });
    }
    // oslo joins repeated values ('30,10'), which no option of one value takes: said, not the last kept.
    if (full in options) throw new ConfigError(`transport URL option '${k}' is given twice`, { key: full });
    options[full] = v;
  }

  let parsed: Omit<TransportUrl, 'toString'>;
  if (info.driver === 'memory') {
    if (path) throw new ConfigError('memory:// URLs take a name only (memory://name), not a path', { key: 'transportUrl' });
    // A password there would be part of the name, and logged with it wherever the URL is.
    if (netloc.includes('@'))
      throw new ConfigError(`memory:// URLs take a name only (memory://name), not credentials or '@'`, { key: 'transportUrl' });
    const name = decode(netloc, 'the memory transport name') || 'default';
    parsed = { scheme, driver: 'memory', tls: false, hosts: [], name, options };
  } else {
    if (!netloc) throw new ConfigError(`transport URL '${redactWhole(url)}' names no host`, { key: 'transportUrl' });
    // oslo's ssl=true over rabbit:// or amqp:// is TLS, on 5671 where no port is given, as kombu does.
    const defaultPort = tls && !info.tls ? SCHEMES[`${scheme}s`]!.port : info.port;
    const hosts = netloc.split(',').map((h, i) => {
      if (!h) throw new ConfigError(`transport URL '${redactWhole(url)}': host #${i + 1} is empty (stray comma?)`, { key: 'transportUrl' });
      return parseHost(h, defaultPort, i, url);
    });
    parsed = { scheme, driver: info.driver, tls, hosts, options };
    if (path !== undefined && path !== '') parsed.virtualHost = decode(path, 'the virtual host');
    // AMQP 0-9-1 carries it as a short string: amqplib's encoder refused a longer one at every
    // connect attempt, as "cannot connect", and a server retried that for good.
    const vhostBytes = Buffer.byteLength(parsed.virtualHost ?? '', 'utf8');
    if (info.driver === 'rabbit' && vhostBytes > 255)
      throw new ConfigError(`transport URL: the virtual host is ${vhostBytes} bytes long; AMQP 0-9-1 carries at most 255`, {
        key: 'transportUrl',
      });
  }
  const out = parsed as TransportUrl;
  Object.defineProperty(out, 'toString', { value: () => render(parsed, written), enumerable: false });
  return out;
}
