/**
 * What every bin's command line shares: `--version` (hermod's), the logging flags
 * (`--log-level`, `--quiet`, `--log-json`), strict number options, and the help epilog with the
 * exit-status table, so that the bins' `--help` texts agree with each other and the README.
 */
import { readFileSync } from 'node:fs';
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { HermodConfig } from '../config/index.js';
import { MAX_TIMER_MS } from '../core/errors.js';
import { EXIT_TABLE, usageErrorOutput } from './exit-codes.js';

/** hermod's version, from its package.json (`dist/src/cli/` → the package root). */
export const HERMOD_VERSION: string = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
})();

/** Log levels the logging flags take (those of `log.level`). */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;

/** The logging flags' values, as commander parses them. */
export interface LogFlags {
  logLevel?: (typeof LOG_LEVELS)[number];
  quiet?: boolean;
  logJson?: boolean;
}

/**
 * Adds `-V, --version`, the logging flags and the epilog (what `extra` says, then the exit
 * statuses) to `cmd`; a command line error exits 2 (see `exitOnUsage`).
 */
export function commonOptions(cmd: Command, extra: string[] = []): Command {
  return (
    cmd
      .version(HERMOD_VERSION, '-V, --version', "print hermod's version")
      .addOption(new Option('--log-level <level>', 'log level (default log.level, info)').choices(LOG_LEVELS))
      .option('--quiet', 'log warnings and errors only (as --log-level warn)')
      .option('--log-json', 'log one JSON object per line (pino format) instead of text')
      // A bad command line of a bin whose log is JSON is a JSON line too (see fatalAsJsonLogIfAsked).
      .configureOutput({ outputError: usageErrorOutput })
      .addHelpText('after', `\n${[...extra, EXIT_TABLE].join('\n\n')}`)
  );
}

/** Applies the logging flags over `config.log` (flags win over files, environment and `--config`). */
export function applyLogFlags<C extends Pick<HermodConfig, 'log'>>(config: C, o: LogFlags): C {
  return {
    ...config,
    log: { ...config.log, level: o.logLevel ?? (o.quiet ? 'warn' : config.log.level), json: o.logJson ?? config.log.json },
  };
}

/**
 * A commander parser for an option that takes one value a time, repeated and comma-separated
 * (`--topic a --topic b,c` is a, b, c), as most CLIs take a list. A variadic option
 * (`--topic <topic...>`) took every word after it: `notify-send --topic t ev` read `ev` as a
 * second topic and then missed its event type. Each value is trimmed; an empty one is kept, for
 * the command to refuse by its flag's name.
 */
export function listOf(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), ...value.split(',').map((v) => v.trim())];
}

/**
 * A commander parser for an option given once per value (`--context user=a --context project=b`),
 * as `curl -H` or `docker -e` take theirs. A variadic option (`<key=value...>`) took every word
 * after it, so a call's own `key=value` arguments given after `--context` went into the context.
 */
export function eachOf(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * `v` as a plain decimal number (`30`, `1.5`, `-1`), NaN for anything else: `Number()` also
 * takes `0x10`, `0b11`, `1e3` and `Infinity`, and `--shutdown-timeout 0x10` was a 16 s deadline.
 */
export function plainNumber(v: string): number {
  return /^\s*[+-]?(?:\d+\.?\d*|\.\d+)\s*$/.test(v) ? Number(v) : Number.NaN;
}

/** A commander parser: a whole number ≥ `min` ("abc", "1.5", "-1" and "" rejected, exit 2). */
export function intAtLeast(min: number): (v: string) => number {
  return (v) => {
    const n = plainNumber(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < min) throw new InvalidArgumentError(`needs a whole number ≥ ${min}.`);
    return n;
  };
}

/** A commander parser: milliseconds, a whole number from `min` to the longest timer Node sets. */
export function msAtLeast(min: number): (v: string) => number {
  const int = intAtLeast(min);
  return (v) => {
    const n = int(v);
    if (n > MAX_TIMER_MS) throw new InvalidArgumentError(`needs at most ${MAX_TIMER_MS} ms (about 24.8 days).`);
    return n;
  };
}

/** A commander parser: seconds > 0, decimals allowed ("0", "-1", "abc" rejected, exit 2). */
export function positiveSeconds(v: string): number {
  const n = plainNumber(v);
  if (v.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('needs a number of seconds > 0.');
  if (n * 1000 > MAX_TIMER_MS)
    throw new InvalidArgumentError(`needs at most ${Math.floor(MAX_TIMER_MS / 1000)} seconds (about 24.8 days).`);
  return n;
}
