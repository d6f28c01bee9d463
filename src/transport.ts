import { EventEmitter } from 'node:events';
import { applyOverrides, defaultConfig, type HermodConfig, loadConfig } from './config/index.js';
import { maskSecrets, parseTransportUrl, redactUrl, type TransportUrl } from './config/transport-url.js';
import type { ConnectionState } from './core/diagnostics.js';
import { ConfigError } from './core/errors.js';
import { assertOptions } from './core/suggest.js';
import type { Driver } from './driver/driver.js';
import { checkTlsFiles } from './driver/tls.js';

export type { TransportHost, TransportUrl } from './config/transport-url.js';
export { parseTransportUrl, redactUrl } from './config/transport-url.js';

/** Options of {@link getTransport}. */
export interface TransportOptions {
  /** A complete configuration (from {@link loadConfig}); by default one is loaded from the environment. */
  config?: HermodConfig;
  /** Overrides applied over `config`: dotted keys (`{ 'rpc.responseTimeout': 5000 }`) or nested (`{ rpc: { responseTimeout: 5000 } }`). */
  overrides?: Record<string, unknown>;
}

const TRANSPORT_OPTIONS: Record<keyof TransportOptions, true> = { config: true, overrides: true };

/** Where a transport's connection stands: the latest state its driver reported, or `idle`/`closed`. */
export type TransportState = ConnectionState | { state: 'idle' } | { state: 'closed' };

/**
 * A connection to a messaging backend, shared by RPC clients, servers, notifiers and
 * listeners. It emits every connection change as a `state` event ({@link ConnectionState}:
 * connected, disconnected, reconnecting, blocked, unblocked) and keeps the latest in
 * {@link Transport.state}. Close it when done.
 */
export class Transport extends EventEmitter {
  private state_: TransportState = { state: 'idle' };

  /** @internal */
  constructor(
    /** The parsed transport URL (its `toString()` hides passwords). */
    readonly url: TransportUrl,
    /** The resolved configuration (defaults, file, environment, overrides). */
    readonly config: HermodConfig,
    /** The driver that serves the URL's scheme. */
    readonly driver: Driver,
  ) {
    super();
    driver.on('state', (s: ConnectionState) => {
      this.state_ = s;
      this.emit('state', s);
    });
  }

  /** The latest connection state (`idle` until the driver first connects; memory:// stays idle). */
  get state(): TransportState {
    return this.state_;
  }

  /**
   * Opens the driver's connection now rather than at first use, waiting at most `timeoutMs`
   * (default `rpc.responseTimeout`); rejects as a call would (TransportError, AccessRefused,
   * WrongProtocol, ClosedError). memory:// has nothing to open.
   */
  async connect(timeoutMs: number = this.config.rpc.responseTimeout): Promise<void> {
    await this.driver.connect?.(Date.now() + timeoutMs);
  }

  /** Closes the driver's connections; pending calls fail with ClosedError. Emits `close` once closed. */
  async close(): Promise<void> {
    await this.driver.close();
    const first = this.state_.state !== 'closed';
    this.state_ = { state: 'closed' };
    if (first) this.emit('close');
  }

  /** The transport URL with passwords shown as `****`. */
  override toString(): string {
    return `<Transport ${this.url}>`;
  }
}

type DriverFactory = (url: TransportUrl, config: HermodConfig) => Promise<Driver>;

/**
 * The driver registry: URL scheme family → driver, each loaded on first use so that a memory://
 * user never loads amqplib or rhea.
 */
const DRIVERS: Record<TransportUrl['driver'], DriverFactory> = {
  memory: async (url, config) => new (await import('./driver/memory/index.js')).MemoryDriver(url, config),
  amqp1: async (url, config) => new (await import('./driver/amqp1/index.js')).Amqp1Driver(url, config),
  rabbit: async (url, config) => new (await import('./driver/rabbit/index.js')).RabbitDriver(url, config),
};

/**
 * A CA, certificate or key set for a URL that is not TLS would be ignored, and the connection go
 * in plain text: a configuration ported from oslo (whose `ssl = True` turns TLS on for a
 * `rabbit://` URL) believed itself encrypted. Refused instead.
 */
function assertTlsUsed(url: TransportUrl, config: HermodConfig): void {
  if (url.tls || url.driver === 'memory') return;
  const set = (['ca', 'cert', 'key'] as const).filter((k) => config.tls[k] !== '');
  if (set.length === 0) return;
  const names = set.map((k) => `tls.${k}`).join(', ');
  throw new ConfigError(
    `${names} ${set.length > 1 ? 'are' : 'is'} set, but the transport URL (${url.scheme}://) is not TLS: nothing would be encrypted; use ${url.driver === 'rabbit' ? 'rabbits' : 'amqps'}:// (or unset ${names})`,
    { key: `tls.${set[0]}` },
  );
}

/** What a wrong value is, for an error: `null`, `an array`, `a string`, `a URL object`. */
function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return `a ${(v as object).constructor?.name ?? 'plain'} object`;
  return `a ${typeof v}`;
}

const warnedOverrides = new Set<string>();

/**
 * URL query options outrank every other source, as oslo's do over its config file; a value the
 * configuration set (one that is not the default) and the URL replaces is said once per process
 * as a `HermodWarning`, so that a `--config` value seemingly ignored has its reason on stderr.
 */
function warnUrlOverrides(parsed: TransportUrl, before: HermodConfig, after: HermodConfig): void {
  const defaults = defaultConfig();
  const at = (c: HermodConfig, key: string) =>
    JSON.stringify(key.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], c));
  for (const key of Object.keys(parsed.options)) {
    const was = at(before, key);
    if (was === at(defaults, key) || was === at(after, key)) continue;
    const message = `the transport URL sets ${key}=${at(after, key)}, over ${was} from the configuration (--config, HERMOD_*, a config file): URL options outrank them`;
    if (warnedOverrides.has(message)) continue;
    warnedOverrides.add(message);
    process.emitWarning(message, { type: 'HermodWarning', code: 'HERMOD_URL_OPTION_OVERRIDES_CONFIG' });
  }
}

/**
 * Builds a transport for `url` (default: the config's `transportUrl`). URL query options
 * override the config's values for that driver, whatever their source (a `HermodWarning` says so
 * when they replace a value the config set).
 */
export async function getTransport(url?: string, options: TransportOptions = {}): Promise<Transport> {
  assertOptions(options, TRANSPORT_OPTIONS, 'getTransport options');
  // Said as what they are: a URL object was "transport URL is empty", an overrides string
  // "unknown configuration key '0'", and a null or array config silently the defaults.
  if (url !== undefined && typeof url !== 'string')
    throw new ConfigError(
      `getTransport: the transport URL must be a string, got ${describeValue(url)}${(url as unknown) instanceof URL ? ' (pass url.href)' : ''}`,
      {
        key: 'transportUrl',
      },
    );
  for (const name of ['config', 'overrides'] as const) {
    const v = options[name] as unknown;
    if (v !== undefined && (v === null || typeof v !== 'object' || Array.isArray(v)))
      throw new ConfigError(
        `getTransport options: ${name} must be an object${name === 'overrides' ? " of 'key': value" : ''}, got ${describeValue(v)}`,
      );
  }
  // A given config is checked as a file would be (a partial one gets the defaults): used as it
  // was, a missing section failed later as an unrelated TypeError, a bad value not at all.
  let config = options.config
    ? applyOverrides(options.config, options.overrides ?? {}, 'getTransport overrides')
    : loadConfig({ overrides: options.overrides ?? {}, overridesSource: 'getTransport overrides' });
  const parsed = parseTransportUrl(url ?? config.transportUrl);
  if (Object.keys(parsed.options).length > 0) {
    const before = config;
    config = applyOverrides(config, parsed.options, 'the transport URL');
    warnUrlOverrides(parsed, before, config);
  }
  // The URL as given, password and all: the config is reusable (another getTransport logs in
  // with it); it shows `****` when logged, serialized or inspected.
  config = maskSecrets({ ...config, transportUrl: url ?? config.transportUrl }, (c) => ({ ...c, transportUrl: redactUrl(c.transportUrl) }));
  assertTlsUsed(parsed, config);
  if (parsed.tls) checkTlsFiles(config.tls);
  const load = DRIVERS[parsed.driver];
  if (!load) throw new ConfigError(`the ${parsed.driver} driver is not available in this build`, { key: 'transportUrl' });
  const driver = await load(parsed, config);
  return new Transport(parsed, config, driver);
}
