/**
 * "Did you mean" for misspelt configuration keys: unknown keys are errors that name the known key
 * they are a likely typo of, and only then (a suggestion far from what was typed misleads more
 * than it helps).
 */
import { ConfigError } from '../core/errors.js';
import { CONFIG_KEYS } from './schema.js';

/**
 * Edit distance between two strings where swapping two neighbours is one edit, as typing does
 * (optimal string alignment: `rnu` is one edit from `run`, not two).
 */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * How far `typed` is from candidate `key`, compared whole or with its last segment (a key typed
 * without its section, `heartbeat` for `rabbit.heartbeat`), case-insensitively, and the most
 * edits still taken for a typo of it: a third of the longer string, 1 to 3 edits.
 */
function score(typed: string, key: string): { d: number; allowed: number } {
  const lower = typed.toLowerCase();
  const full = key.toLowerCase();
  const last = full.split('.').pop()!;
  const dFull = distance(lower, full);
  const dLast = distance(lower, last);
  const target = dFull <= dLast ? full : last;
  const allowed = Math.min(3, Math.max(1, Math.floor(Math.max(lower.length, target.length) / 3)));
  return { d: Math.min(dFull, dLast), allowed };
}

/** The known key `key` is a likely typo of (a few edits away), or undefined when none is close. */
export function closeKey(key: string, candidates: readonly string[] = CONFIG_KEYS): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const { d, allowed } = score(key, c);
    if (d <= allowed && d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best;
}

/** Throws {@link ConfigError} (naming the close known key, if any) unless `key` is a configuration key. */
export function assertKnownKey(key: string, source: string): void {
  if (!CONFIG_KEYS.includes(key)) {
    const guess = closeKey(key);
    throw new ConfigError(
      `unknown configuration key '${key}' (from ${source})${guess ? `; did you mean '${guess}'?` : '.'} ` +
        'Run with --help-config to list the options.',
      { key },
    );
  }
}
