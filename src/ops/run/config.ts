/**
 * The `hermod run` file: the services of a deployment, validated strictly. Unknown keys are
 * errors that suggest a known key only when it is a likely typo (as in the rest of the
 * configuration) and list the known ones otherwise; `config` sections
 * hold hermod configuration keys (nested or dotted), checked against the schema.
 */
import os from 'node:os';
import path from 'node:path';
import { CONFIG_KEYS, closeKey, type HermodConfig } from '../../config/index.js';
import { parseTransportUrl } from '../../config/transport-url.js';
import { ConfigError } from '../../core/errors.js';
import { parseConfigJson, readUtf8File } from '../../core/json.js';
import { commonJsSyntaxHint } from '../../core/syntax-check.js';
import { Target } from '../../core/target.js';
import { importModule } from '../load-endpoints.js';
import { parseMetricsAddress } from '../metrics.js';
import type { WatchOptions } from './reloader.js';

/** One service of a run file, validated, with paths resolved. */
export interface ServiceSpec {
  /** Its key in `services`. */
  name: string;
  /** Endpoint modules, absolute paths (relative ones are taken from the run file's folder). */
  endpoints: string[];
  topic: string;
  /** Target.server. @default the host name */
  server: string;
  exchange?: string;
  /** Namespace and version given to endpoints that declare no `target`. */
  namespace?: string;
  version?: string;
  concurrency?: number;
  /** Worker processes; undefined leaves it to `--workers` or the file's `workers`. */
  workers?: number;
  /** hermod configuration of this service (dotted keys), over the file's `config`. */
  config: Record<string, unknown>;
}

/** A validated run file. */
export interface RunSpec {
  file: string;
  services: ServiceSpec[];
  /** Workers per service unless a service says otherwise. @default 1 */
  workers?: number;
  /** Hot reload settings; `watch: true` or an object turns it on. */
  watch?: RunWatch | false;
  /** hermod configuration of every service (dotted keys). */
  config: Record<string, unknown>;
  /** `[host:]port` of the Prometheus endpoint (summed over the workers); `--metrics-port` wins. */
  metricsPort?: string;
  /** Presence beacons of every server, for `hermod status`: off unless set. */
  beacons?: BeaconSettings | false;
}

/** The run file's `watch`: the reloader's options, and when to recycle the process. */
export interface RunWatch extends WatchOptions {
  /**
   * Reloads after which the worker process is replaced by a fresh one (a graceful hand-over):
   * reloaded ES modules are never unloaded, so without it memory grows with every reload.
   * 0: never. @default 100
   */
  recycleAfter?: number;
  /**
   * How long a recycle's fresh worker may take to consume before it is stopped and the old
   * worker keeps serving (it asks again after its next reload). @default 60000
   */
  handOverTimeoutMs?: number;
}

/** Reloads before a recycle when neither the file nor `--recycle-after` says. */
export const DEFAULT_RECYCLE_AFTER = 100;

/** The run file's `beacons`: `true` or these settings. */
export interface BeaconSettings {
  /** Every how long. @default 5000 */
  intervalMs?: number;
  /** The VERSION column of `hermod status` (the application's version). @default '' */
  version?: string;
}

const TOP_KEYS = ['services', 'config', 'workers', 'watch', 'metricsPort', 'beacons'] as const;
const SERVICE_KEYS = ['endpoints', 'topic', 'server', 'exchange', 'namespace', 'version', 'concurrency', 'workers', 'config'] as const;
const WATCH_KEYS = ['usePolling', 'interval', 'debounceMs', 'reloadTimeoutMs', 'recycleAfter', 'handOverTimeoutMs'] as const;
const BEACON_KEYS = ['intervalMs', 'version'] as const;
/** Configuration of the whole process: a service's own value would be silently ignored. */
const RUN_WIDE = ['log', 'rpc.stopTimeout'] as const;

function fail(where: string, message: string, key?: string): never {
  throw new ConfigError(`${where}: ${message}`, key === undefined ? {} : { key });
}

function object(value: unknown, where: string): Record<string, unknown> {
  if (!value || typeof value !== 'object' || Array.isArray(value))
    fail(where, `must be an object, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`);
  return value as Record<string, unknown>;
}

function onlyKnown(obj: Record<string, unknown>, known: readonly string[], where: string): void {
  for (const k of Object.keys(obj)) {
    if (known.includes(k)) continue;
    const guess = closeKey(k, known);
    fail(where, `unknown key '${k}'${guess ? `; did you mean '${guess}'?` : ` (known keys: ${known.join(', ')})`}`, k);
  }
}

function text(value: unknown, where: string): string {
  if (typeof value !== 'string' || value.trim() === '') fail(where, `must be a non-empty string, got ${JSON.stringify(value)}`);
  return value;
}

/**
 * `N` (≥ 1) or `"max"` (one per core), as `--workers` takes it. `asText`: the number may come as
 * digits in a string, as a flag's does; false for the run file, where `"workers": "2"` is a
 * mistake to name, as every other number of the file written as a string is (it was taken).
 */
export function parseWorkers(value: unknown, where: string, asText = true): number {
  if (value === 'max') return os.availableParallelism();
  const n = asText && typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 256)
    fail(where, `must be a whole number from 1 to 256 or "max", got ${JSON.stringify(value)}`);
  return n;
}

function positiveInt(value: unknown, where: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1)
    fail(where, `must be a whole number ≥ 1, got ${JSON.stringify(value)}`);
  return value;
}

/** The longest timer Node keeps: a longer delay is taken as 1 ms (with a TimeoutOverflowWarning). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A duration in ms for a timer: a whole number from 1 to {@link MAX_TIMER_MS}. */
function milliseconds(value: unknown, where: string): number {
  const n = positiveInt(value, where);
  if (n > MAX_TIMER_MS) fail(where, `must be at most ${MAX_TIMER_MS} ms (about 24.8 days), got ${n}`);
  return n;
}

/**
 * Refuses `watch.interval` where nothing polls: chokidar reads it only when polling, so it would
 * be dropped unsaid. Checked once the command line (`--watch-polling`) and chokidar's own
 * `CHOKIDAR_USEPOLLING` have had their say.
 */
export function checkWatchInterval(watch: RunWatch | false, file: string, env: NodeJS.ProcessEnv = process.env): void {
  if (!watch || watch.interval === undefined) return;
  const forced = env.CHOKIDAR_USEPOLLING?.toLowerCase();
  const polling = forced === undefined ? watch.usePolling === true : forced !== 'false' && forced !== '0' && forced !== '';
  if (!polling)
    fail(
      `${file}: watch.interval`,
      'applies only with polling: set "usePolling": true beside it (or --watch-polling), or remove it',
      'interval',
    );
}

/** Flattens a `config` section to dotted keys and rejects keys the schema does not know. */
function configSection(value: unknown, where: string): Record<string, unknown> {
  if (value === undefined) return {};
  const out: Record<string, unknown> = {};
  const walk = (o: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(o)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (CONFIG_KEYS.includes(key)) {
        if (key in out) fail(`${where}.${key}`, `configuration key ${key} is given twice (dotted and nested)`, key);
        out[key] = v;
      } else if (v && typeof v === 'object' && !Array.isArray(v) && CONFIG_KEYS.some((c) => c.startsWith(`${key}.`)))
        walk(v as Record<string, unknown>, key);
      // `"rpc": null`: a known section whose value is not one, named as the other JSON files name it.
      else if (CONFIG_KEYS.some((c) => c.startsWith(`${key}.`)))
        fail(`${where}.${key}`, `configuration section '${key}' must be an object of ${key}.* options`, key);
      else {
        const guess = closeKey(key);
        fail(
          `${where}.${key}`,
          `unknown configuration key '${key}'${guess ? `; did you mean '${guess}'?` : ''} (hermod run --help-config lists them)`,
          key,
        );
      }
    }
  };
  walk(object(value, where), '');
  return out;
}

/** A whole number ≥ 0 (`--recycle-after`, `watch.recycleAfter`); 0 turns recycling off. `asText`: see {@link parseWorkers}. */
export function parseRecycleAfter(value: unknown, where: string, asText = true): number {
  const n = asText && typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0)
    fail(where, `must be a whole number of reloads ≥ 0 (0: never recycle), got ${JSON.stringify(value)}`);
  return n;
}

function watchSection(value: unknown, where: string): RunWatch | false {
  if (value === undefined || value === false) return false;
  if (value === true) return {};
  const w = object(value, where);
  onlyKnown(w, WATCH_KEYS, where);
  const out: RunWatch = {};
  if (w.recycleAfter !== undefined) out.recycleAfter = parseRecycleAfter(w.recycleAfter, `${where}.recycleAfter`, false);
  if (w.usePolling !== undefined) {
    if (typeof w.usePolling !== 'boolean') fail(`${where}.usePolling`, 'must be true or false');
    out.usePolling = w.usePolling;
  }
  if (w.interval !== undefined) out.interval = milliseconds(w.interval, `${where}.interval`);
  if (w.debounceMs !== undefined) out.debounceMs = milliseconds(w.debounceMs, `${where}.debounceMs`);
  if (w.reloadTimeoutMs !== undefined) out.reloadTimeoutMs = milliseconds(w.reloadTimeoutMs, `${where}.reloadTimeoutMs`);
  if (w.handOverTimeoutMs !== undefined) out.handOverTimeoutMs = milliseconds(w.handOverTimeoutMs, `${where}.handOverTimeoutMs`);
  return out;
}

function beaconsSection(value: unknown, where: string): BeaconSettings | false {
  if (value === undefined || value === false) return false;
  if (value === true) return {};
  const b = object(value, where);
  onlyKnown(b, BEACON_KEYS, where);
  const out: BeaconSettings = {};
  if (b.intervalMs !== undefined) {
    out.intervalMs = milliseconds(b.intervalMs, `${where}.intervalMs`);
    if (out.intervalMs < 50) fail(`${where}.intervalMs`, `must be at least 50 ms, got ${out.intervalMs}`);
  }
  if (b.version !== undefined) out.version = text(b.version, `${where}.version`);
  return out;
}

function metricsSection(value: unknown, where: string): string | undefined {
  if (value === undefined) return undefined;
  const spec = typeof value === 'number' ? String(value) : text(value, where);
  try {
    parseMetricsAddress(spec, where);
  } catch {
    fail(where, `must be a port or "host:port", got ${JSON.stringify(value)}`);
  }
  return spec;
}

function service(name: string, value: unknown, dir: string, where: string): ServiceSpec {
  const s = object(value, where);
  onlyKnown(s, SERVICE_KEYS, where);
  if (s.endpoints === undefined) fail(where, "needs 'endpoints' (a module path or a list of them)", 'endpoints');
  const list = Array.isArray(s.endpoints) ? s.endpoints : [s.endpoints];
  if (list.length === 0) fail(`${where}.endpoints`, 'must name at least one module');
  const spec: ServiceSpec = {
    name,
    endpoints: list.map((e, i) => path.resolve(dir, text(e, `${where}.endpoints[${i}]`))),
    topic: text(s.topic, `${where}.topic`),
    server: s.server === undefined ? os.hostname() : text(s.server, `${where}.server`),
    config: configSection(s.config, `${where}.config`),
  };
  for (const key of Object.keys(spec.config)) {
    if (RUN_WIDE.some((k) => key === k || key.startsWith(`${k}.`)))
      fail(
        `${where}.config.${key}`,
        `applies to the whole run (one log and one stop deadline per process), not to one service: set it in the file's top-level config`,
        key,
      );
  }
  if (s.exchange !== undefined) spec.exchange = text(s.exchange, `${where}.exchange`);
  if (s.namespace !== undefined) spec.namespace = text(s.namespace, `${where}.namespace`);
  if (s.version !== undefined) {
    spec.version = text(s.version, `${where}.version`);
    if (!/^\d+\.\d+$/.test(spec.version)) fail(`${where}.version`, `must be of the form X.Y, got ${JSON.stringify(s.version)}`);
  }
  if (s.concurrency !== undefined) {
    spec.concurrency = positiveInt(s.concurrency, `${where}.concurrency`);
    // As RPCServer's option: past a prefetch count is allowed (RabbitMQ's is capped at 65,535), past
    // AMQP 1.0's 32-bit credit is not (1e300 was taken as a work pool of that size).
    if (spec.concurrency > 0xffff_ffff)
      fail(`${where}.concurrency`, `must be at most 4294967295 (AMQP 1.0's credit), got ${spec.concurrency}`);
  }
  if (s.workers !== undefined) spec.workers = parseWorkers(s.workers, `${where}.workers`, false);
  // The target as its server will make it, checked here so that the error names the service: a
  // server name with a control character was refused by Target at start with no place named.
  try {
    new Target({
      topic: spec.topic,
      server: spec.server,
      ...(spec.exchange === undefined ? {} : { exchange: spec.exchange }),
      ...(spec.namespace === undefined ? {} : { namespace: spec.namespace }),
      ...(spec.version === undefined ? {} : { version: spec.version }),
    }).assertListenable();
  } catch (err) {
    fail(where, (err as Error).message);
  }
  return spec;
}

/** Validates the parsed contents of run file `file`; throws {@link ConfigError} naming the place. */
export function parseRunSpec(data: unknown, file: string): RunSpec {
  const top = object(data, file);
  onlyKnown(top, TOP_KEYS, file);
  const services = object(top.services, `${file}: services`);
  if (Object.keys(services).length === 0) fail(`${file}: services`, 'declares no service');
  const dir = path.dirname(path.resolve(file));
  const spec: RunSpec = {
    file,
    services: Object.entries(services).map(([name, v]) => {
      // Named in every log line of the service ("serving : topic calc" for an empty one).
      if (name.trim() === '') fail(`${file}: services`, `a service needs a name, got ${JSON.stringify(name)}`);
      return service(name, v, dir, `${file}: services.${name}`);
    }),
    watch: watchSection(top.watch, `${file}: watch`),
    config: configSection(top.config, `${file}: config`),
    beacons: beaconsSection(top.beacons, `${file}: beacons`),
  };
  const metricsPort = metricsSection(top.metricsPort, `${file}: metricsPort`);
  if (metricsPort !== undefined) spec.metricsPort = metricsPort;
  if (top.workers !== undefined) spec.workers = parseWorkers(top.workers, `${file}: workers`, false);
  return spec;
}

/** What {@link checkServerQueues} needs beyond the run file: what the command line and the configuration decide. */
export interface ResolvedServices {
  /** A service's worker count (`--workers` wins over the file). */
  workersOf(service: ServiceSpec): number;
  /** A service's configuration, every layer applied (its `controlExchange` and `transportUrl`). */
  configOf(service: ServiceSpec): HermodConfig;
}

/**
 * Refuses two services that would consume one server queue: the broker would split that
 * queue's calls between them, and each would get calls meant for the other (or one none at
 * all). Compared as each worker will serve: its server name (`<server>-<n>` with more than one
 * worker) and the exchange it resolves to (the service's, else `controlExchange`). RabbitMQ
 * names the queue `<topic>.<server>` whatever the exchange, so there the exchange does not tell
 * two services apart.
 */
export function checkServerQueues(spec: RunSpec, resolved: ResolvedServices): void {
  const seen = new Map<string, { name: string; server: string }>();
  for (const s of spec.services) {
    const config = resolved.configOf(s);
    let rabbit: boolean;
    try {
      rabbit = parseTransportUrl(config.transportUrl).driver === 'rabbit';
    } catch (err) {
      // The URL may come from the file, --config or the environment: the service it is for is named.
      throw new ConfigError(`services.${s.name}: transportUrl: ${(err as Error).message}`, { key: 'transportUrl', cause: err });
    }
    const exchange = rabbit ? '' : (s.exchange ?? config.controlExchange);
    const workers = resolved.workersOf(s);
    const servers = workers > 1 ? Array.from({ length: workers }, (_, i) => `${s.server}-${i + 1}`) : [s.server];
    for (const server of servers) {
      const id = `${exchange}\0${s.topic}\0${server}`;
      const other = seen.get(id);
      if (other && other.name !== s.name)
        fail(
          `${spec.file}: services.${s.name}`,
          `serves topic '${s.topic}' as server '${server}'${server === s.server ? '' : ` (one of its ${workers} workers)`} like services.${other.name}${rabbit ? '' : ` (exchange ${exchange})`}: one of them needs another server name`,
          'server',
        );
      seen.set(id, { name: s.name, server });
    }
  }
}

/** Default run files, looked for in the working directory when none is named. */
export const DEFAULT_RUN_FILES = [
  'hermod.config.json',
  'hermod.config.js',
  'hermod.config.mjs',
  'hermod.config.cjs',
  'hermod.config.ts',
] as const;

/**
 * Reads and validates a run file: JSON, or a module (`.js`, `.mjs`, `.ts`) whose default export
 * is the object or a function (may be async) returning it.
 */
export async function readRunFile(file: string): Promise<RunSpec> {
  let data: unknown;
  try {
    if (file.endsWith('.json')) data = parseConfigJson(readUtf8File(file));
    else {
      const mod = await importModule(file);
      data = typeof mod.default === 'function' ? await (mod.default as () => unknown)() : mod.default;
    }
  } catch (err) {
    const message = (err as Error).message;
    throw new ConfigError(`cannot read run file ${file}: ${message}${commonJsSyntaxHint(message, file)}`, { cause: err, key: file });
  }
  return parseRunSpec(data, file);
}
