/**
 * The value formats of the config schema: each named format's TypeScript type ({@link FormatTypes})
 * beside its convict validation and coercion, so the two cannot drift apart. Every duration
 * accepts a bare number in its key's unit or a number with a unit: `500ms`, `30s`, `2m`, `1h`.
 */
import convict from 'convict';
import { MAX_TIMER_MS } from '../core/errors.js';

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/**
 * Parses `250`, `250ms`, `30s`, `2m`, `1h` into milliseconds; a bare number counts in `unit`
 * (milliseconds unless said otherwise).
 */
export function parseDuration(value: unknown, unit: 'ms' | 's' = 'ms', max = MAX_TIMER_MS): number {
  const m = typeof value === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value) : null;
  const ms =
    typeof value === 'number' && Number.isFinite(value) && value >= 0
      ? Math.round(value * UNIT_MS[unit])
      : m
        ? Math.round(Number(m[1]) * UNIT_MS[(m[2] as keyof typeof UNIT_MS | undefined) ?? unit])
        : undefined;
  if (ms === undefined) {
    const bare = unit === 'ms' ? 'a number of milliseconds' : 'a number of seconds';
    throw new Error(`must be a duration such as 500ms, 30s, 2m or ${bare}, got ${JSON.stringify(value)}`);
  }
  // Durations end up in timers (but broker-side ones: `max` Infinity), and Node fires a longer
  // timer after 1 ms.
  if (ms > max)
    throw new Error(`must be at most ${MAX_TIMER_MS} ms (about 24.8 days, the longest timer Node sets), got ${JSON.stringify(value)}`);
  return ms;
}

/** {@link parseDuration} for keys counted in whole seconds (an AMQP heartbeat): `30`, `30s`, `1m`. */
export function parseSeconds(value: unknown): number {
  const ms = parseDuration(value, 's');
  if (ms % 1000 !== 0) throw new Error(`must be whole seconds, such as 30, 30s or 1m, got ${JSON.stringify(value)}`);
  return ms / 1000;
}

/** The TypeScript type of a value of each named format. */
export interface FormatTypes {
  'duration-ms': number;
  /** A duration the broker applies (a queue's x-expires), not a Node timer: no 24.8-day bound. */
  'duration-ms-broker': number;
  /** A duration in ms above 0: a delay or timeout where 0 would mean a busy loop or no wait at all. */
  'duration-ms-positive': number;
  'duration-s': number;
  /** An integer from -1 (a retry count: -1 forever, 0 none, N). */
  'int-range': number;
  'non-negative-int': number;
  'positive-int': number;
  'string-list': string[];
  bool: boolean;
}

/**
 * What a schema option's `format` may be: a named format, `String`, or the list of allowed
 * values of an enum option.
 */
export type Format = keyof FormatTypes | StringConstructor | readonly string[];

/** The type of the values an option of format `F` holds (an enum's literal union for a list). */
export type ValueOf<F> = F extends keyof FormatTypes
  ? FormatTypes[F]
  : F extends StringConstructor
    ? string
    : F extends readonly (infer E)[]
      ? E
      : never;

const FORMATS: { [K in keyof FormatTypes]: convict.Format } = {
  'duration-ms': {
    validate(value: unknown) {
      parseDuration(value);
    },
    coerce: (value: unknown) => (typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : parseDuration(value)),
  },
  'duration-ms-broker': {
    validate(value: unknown) {
      parseDuration(value, 'ms', Number.POSITIVE_INFINITY);
    },
    coerce: (value: unknown) =>
      typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : parseDuration(value, 'ms', Number.POSITIVE_INFINITY),
  },
  'duration-ms-positive': {
    validate(value: unknown) {
      if (parseDuration(value) <= 0) throw new Error(`must be a duration above 0, such as 500ms, 30s or 2m, got ${JSON.stringify(value)}`);
    },
    coerce: (value: unknown) => (typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : parseDuration(value)),
  },
  'duration-s': {
    validate(value: unknown) {
      parseSeconds(value);
    },
    coerce: (value: unknown) => parseSeconds(value),
  },
  'int-range': {
    validate(value: unknown) {
      if (!Number.isSafeInteger(value) || (value as number) < -1)
        throw new Error(`must be -1 (forever), 0 (none) or a number of attempts, got ${JSON.stringify(value)}`);
    },
    coerce: (value: unknown) => (typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value),
  },
  'non-negative-int': {
    validate(value: unknown) {
      if (!Number.isSafeInteger(value) || (value as number) < 0)
        throw new Error(`must be an integer of 0 or more, got ${JSON.stringify(value)}`);
    },
    coerce: (value: unknown) => (typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value),
  },
  'positive-int': {
    validate(value: unknown) {
      if (!Number.isSafeInteger(value) || (value as number) < 1)
        throw new Error(`must be an integer of 1 or more, got ${JSON.stringify(value)}`);
    },
    coerce: (value: unknown) => (typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value),
  },
  'string-list': {
    validate(value: unknown) {
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new Error('must be a list of strings');
    },
    coerce: (value: unknown) => {
      if (typeof value !== 'string') return value;
      // A JSON array (`["a","b"]` in an environment variable) is read as one: split on commas,
      // it became the items '["a"' and '"b"]' without a word.
      if (value.trim().startsWith('[')) {
        try {
          return JSON.parse(value) as unknown;
        } catch {
          return value;
        }
      }
      return value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
    },
  },
  bool: {
    validate(value: unknown) {
      if (typeof value !== 'boolean') throw new Error(`must be true or false, got ${JSON.stringify(value)}`);
    },
    coerce: (value: unknown) => {
      if (typeof value !== 'string') return value;
      if (/^(true|1|yes|on)$/i.test(value)) return true;
      if (/^(false|0|no|off)$/i.test(value)) return false;
      return value;
    },
  },
};

let registered = false;

/** Teaches convict the named formats (once per process; convict's format table is global). */
export function registerFormats(): void {
  if (registered) return;
  convict.addFormats(FORMATS);
  registered = true;
}

/**
 * A number given for a duration (from a JSON file or a library caller), in whole milliseconds
 * (whole seconds for `duration-s`) as the string forms are: convict coerces strings only, and
 * 1500.5 reached a broker's integer argument as is (x-expires, refused at declaration).
 */
export function normalizeNumber(format: Format, value: unknown): unknown {
  if (typeof value !== 'number' || typeof format !== 'string' || !format.startsWith('duration-')) return value;
  return FORMATS[format as keyof FormatTypes].coerce!(value);
}

/**
 * Checks an already coerced `value` against `format`, throwing an Error whose message says what
 * is expected and quotes the value once (convict's own messages quote it twice).
 */
export function checkValue(format: Format, value: unknown): void {
  if (format === String) {
    if (typeof value !== 'string') throw new Error(`must be a string, got ${JSON.stringify(value)}`);
  } else if (Array.isArray(format)) {
    if (!format.includes(value as string)) throw new Error(`must be one of ${format.join(', ')}, got ${JSON.stringify(value)}`);
  } else {
    FORMATS[format as keyof FormatTypes].validate!(value, undefined as never);
  }
}
