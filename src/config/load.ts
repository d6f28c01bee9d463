/**
 * Loading a configuration. Sources from lowest to highest: schema defaults, caller defaults
 * (a CLI's own defaults), named layers (a run file's `config` sections), `--config-file` JSON files, `HERMOD_*` environment, `--config
 * key=value` overrides; a transport URL's query options go over all of these (in getTransport). Every value is validated; unknown keys and bad values throw
 * {@link ConfigError} naming the key and where it came from.
 */

import convict from 'convict';
import { ConfigError } from '../core/errors.js';
import { parseConfigJson, readUtf8File } from '../core/json.js';
import { checkValue, normalizeNumber, registerFormats } from './formats.js';
import { CONFIG_KEYS, type ConfigValues, convictSchema, envName, type HermodConfig, OPTIONS } from './schema.js';
import { assertKnownKey, closeKey } from './suggest.js';

/** Where configuration comes from; every part is optional. */
export interface ConfigSources {
  /**
   * Lowest-priority values by dotted key, above the schema defaults and below everything else:
   * a program's own defaults (the CLIs connect to the local router, say).
   */
  defaults?: ConfigValues;
  /**
   * Values by dotted key from named places, in order, above `defaults` and below files: a run
   * file's `config` sections, say. A bad value's error names its layer's `source`.
   */
  layers?: Array<{ source: string; values: Record<string, unknown> }>;
  /** JSON files, applied in order. */
  files?: string[];
  /** Environment to read `HERMOD_*` variables from; defaults to `process.env`. */
  env?: NodeJS.ProcessEnv;
  /**
   * Highest-priority values by dotted key (`rpc.responseTimeout`), e.g. from `--config`; nested
   * objects (`{ jobs: { resultTtl: 5000 } }`) are read as in a file.
   */
  overrides?: Record<string, unknown>;
  /** Where `overrides` came from, for error messages. @default '--config' */
  overridesSource?: string;
}

function flatten(obj: Record<string, unknown>, source: string): Array<[string, unknown]> {
  const out: Array<[string, unknown]> = [];
  const seen = new Set<string>();
  const walk = (o: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(o)) {
      const path = prefix ? `${prefix}.${k}` : k;
      if (v && typeof v === 'object' && !Array.isArray(v) && !CONFIG_KEYS.includes(path)) walk(v as Record<string, unknown>, path);
      else {
        assertOnce(seen, path, source);
        out.push([path, v]);
      }
    }
  };
  walk(obj, '');
  return out;
}

/**
 * Refuses a key reached a second time in one source: written both dotted and nested
 * (`{"rpc": {"retry": 1}, "rpc.retry": 2}`), the last silently won, as JSON's duplicate keys
 * did before they were refused.
 */
function assertOnce(seen: Set<string>, key: string, source: string): void {
  if (seen.has(key))
    throw new ConfigError(`configuration key ${key} is given twice in ${source} (dotted and nested, or repeated)`, { key });
  seen.add(key);
}

const FORMAT_OF = new Map(OPTIONS.map(([k, o]) => [k, o.format]));
const RANGE_OF = new Map(OPTIONS.flatMap(([k, o]) => (o.range ? [[k, o.range] as const] : [])));

/** The unit a key's values are said in, for its range's message. */
function unitOf(key: string): string {
  const format = FORMAT_OF.get(key);
  return format === 'duration-s' ? ' s' : typeof format === 'string' && format.startsWith('duration-ms') ? ' ms' : '';
}

function checkRange(key: string, value: unknown): void {
  const range = RANGE_OF.get(key);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused
  if (range?.name && typeof value === 'string' && (value === '' || /[\s\x00-\x1f]/.test(value)))
    throw new Error(`must be a non-empty name without whitespace or control characters (${range.why}), got ${JSON.stringify(value)}`);
  if (range?.maxBytes !== undefined && typeof value === 'string') {
    const bytes = Buffer.byteLength(value, 'utf8');
    if (bytes > range.maxBytes) throw new Error(`must be at most ${range.maxBytes} bytes long in UTF-8 (${range.why}), got ${bytes}`);
  }
  if (!range || typeof value !== 'number') return;
  const unit = unitOf(key);
  // 0 means "off" or "unset" for the durations with a range: it sends nothing to bound.
  if (range.min !== undefined && value < range.min && !(unit && value === 0))
    throw new Error(`must be at least ${range.min}${unit} (${range.why}), got ${value}`);
  if (range.max !== undefined && value > range.max) throw new Error(`must be at most ${range.max}${unit} (${range.why}), got ${value}`);
}

/** Sets and checks one value at once, so that a bad value is reported with its source, and once. */
function setKey(conf: convict.Config<unknown>, key: string, value: unknown, source: string): void {
  try {
    const format = FORMAT_OF.get(key);
    conf.set(key as never, (format === undefined ? value : normalizeNumber(format, value)) as never);
    if (format !== undefined) checkValue(format, conf.get(key as never));
    checkRange(key, conf.get(key as never));
  } catch (err) {
    throw new ConfigError(`invalid value for ${key} (from ${source}): ${(err as Error).message}`, { cause: err, key });
  }
}

/** `HERMOD_RPC_`, `HERMOD_RABBIT_`, …: the prefixes of the variables of each config section. */
const SECTION_PREFIXES = [...new Set(CONFIG_KEYS.filter((k) => k.includes('.')).map((k) => `${envName(k.split('.')[0]!)}_`))];

/**
 * Refuses a `HERMOD_*` variable that looks meant for hermod's configuration but names no option:
 * one in a section's namespace (`HERMOD_RPC_RESPONSE_TIMOUT`) or a likely typo of an option.
 * Others (`HERMOD_HOME`, an application's own) are not configuration attempts and are left alone.
 */
function assertKnownEnv(env: NodeJS.ProcessEnv): void {
  for (const name of Object.keys(env)) {
    if (name.startsWith('HERMOD_') && !CONFIG_KEYS.some((k) => envName(k) === name)) {
      const guess = closeKey(
        name
          .slice(7)
          .toLowerCase()
          .replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()),
      );
      if (!guess && !SECTION_PREFIXES.some((p) => name.startsWith(p))) continue;
      const hint = guess ? `; did you mean ${envName(guess)}?` : ' (no hermod option has that name; --help-config lists them)';
      throw new ConfigError(`unknown environment variable ${name}${hint}`, { key: name });
    }
  }
}

function readFile(file: string): Record<string, unknown> {
  let data: unknown;
  try {
    data = parseConfigJson(readUtf8File(file));
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`, { cause: err, key: file });
  }
  if (!data || typeof data !== 'object' || Array.isArray(data)) throw new ConfigError(`config file ${file} must hold a JSON object`);
  return data as Record<string, unknown>;
}

/** Builds a validated configuration; unknown keys and bad values throw {@link ConfigError}. */
export function loadConfig(sources: ConfigSources = {}): HermodConfig {
  registerFormats();
  const env = sources.env ?? process.env;
  assertKnownEnv(env);
  // The environment is applied below, where a bad value's error names its variable (convict's own
  // reading would throw a bare "must be a duration" first).
  const conf = convict(convictSchema() as never, { env: {}, args: [] });
  try {
    for (const [k, v] of Object.entries(sources.defaults ?? {})) {
      assertKnownKey(k, 'defaults');
      setKey(conf, k, v, 'defaults');
    }
    for (const { source, values } of sources.layers ?? []) {
      for (const [k, v] of Object.entries(values)) {
        assertKnownKey(k, source);
        setKey(conf, k, v, source);
      }
    }
    for (const file of sources.files ?? []) {
      for (const [k, v] of flatten(readFile(file), `file ${file}`)) {
        assertKnownKey(k, `file ${file}`);
        setKey(conf, k, v, `file ${file}`);
      }
    }
    // Environment outranks defaults and files.
    for (const k of CONFIG_KEYS) {
      const value = env[envName(k)];
      if (value !== undefined) setKey(conf, k, value, `environment ${envName(k)}`);
    }
    const from = sources.overridesSource ?? '--config';
    for (const [k, v] of flatten(sources.overrides ?? {}, from)) {
      assertKnownKey(k, from);
      setKey(conf, k, v, from);
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
 * `config` with dotted-key `overrides` applied over it (`{ 'rpc.responseTimeout': 5000 }`),
 * validated like any other source; the environment is not read again.
 */
export function applyOverrides(config: HermodConfig, overrides: Record<string, unknown>, source = 'overrides'): HermodConfig {
  const flat: Record<string, unknown> = {};
  const walk = (o: Record<string, unknown>, p: string) => {
    for (const [k, v] of Object.entries(o)) {
      const path = p ? `${p}.${k}` : k;
      if (v && typeof v === 'object' && !Array.isArray(v)) walk(v as Record<string, unknown>, path);
      else flat[path] = v;
    }
  };
  walk(config as unknown as Record<string, unknown>, '');
  return loadConfig({ env: {}, layers: [{ source: 'the configuration given', values: flat }], overrides, overridesSource: source });
}
