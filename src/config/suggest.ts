/** "Did you mean" for misspelt configuration keys: unknown keys are errors that name the nearest one. */
import { ConfigError } from '../core/errors.js';
import { CONFIG_KEYS } from './schema.js';

/** Levenshtein distance between two strings. */
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
export function nearestKey(key: string, candidates: readonly string[] = CONFIG_KEYS): string {
  const lower = key.toLowerCase();
  let best = candidates[0]!;
  let bestD = Infinity;
  for (const c of candidates) {
    const last = c.split('.').pop()!.toLowerCase();
    const d = Math.min(distance(lower, c.toLowerCase()), distance(lower, last) + 1);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best;
}

/** Throws {@link ConfigError} naming the nearest known key unless `key` is a configuration key. */
export function assertKnownKey(key: string, source: string): void {
  if (!CONFIG_KEYS.includes(key)) {
    throw new ConfigError(
      `unknown configuration key '${key}' (from ${source}); did you mean '${nearestKey(key)}'? ` +
        'Run with --help-config to list the options.',
      { key },
    );
  }
}
