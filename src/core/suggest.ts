/**
 * "Did you mean" for misspelt names (configuration keys, option names): a suggestion only when
 * the typed name is a likely typo of a known one (a suggestion far from what was typed misleads
 * more than it helps).
 */
import { InvalidArgument } from './errors.js';

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

/** The known name `key` is a likely typo of (a few edits away), or undefined when none is close. */
export function closeName(key: string, candidates: readonly string[]): string | undefined {
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

/**
 * Throws InvalidArgument unless `options` is undefined or an object whose own keys are all in
 * `known` (a record with every option name of the options type, so that the compiler keeps it
 * complete). A misspelt option (`timeot`, `sever`) would otherwise be ignored in silence and the
 * default used, which only typed TypeScript callers are protected from.
 */
export function assertOptions(options: unknown, known: Readonly<Record<string, true>>, what: string): void {
  if (options === undefined) return;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidArgument(
      `${what} must be an object, got ${options === null ? 'null' : Array.isArray(options) ? 'an array' : typeof options}`,
    );
  }
  for (const key in options) {
    if (!Object.hasOwn(options, key) || Object.hasOwn(known, key)) continue;
    const names = Object.keys(known);
    const guess = closeName(key, names);
    throw new InvalidArgument(`${what}: unknown option '${key}'${guess ? `; did you mean '${guess}'?` : ''} (known: ${names.join(', ')})`);
  }
}
