/**
 * "Did you mean" for misspelt configuration keys: unknown keys are errors that name the known key
 * they are a likely typo of, and only then (a suggestion far from what was typed misleads more
 * than it helps).
 */
import { ConfigError } from '../core/errors.js';
import { closeName } from '../core/suggest.js';
import { CONFIG_KEYS } from './schema.js';

/** The known key `key` is a likely typo of (a few edits away), or undefined when none is close. */
export function closeKey(key: string, candidates: readonly string[] = CONFIG_KEYS): string | undefined {
  return closeName(key, candidates);
}

/** Throws {@link ConfigError} (naming the close known key, if any) unless `key` is a configuration key. */
export function assertKnownKey(key: string, source: string): void {
  // `{ "rpc": null }`: the section is known, its value is not a section.
  if (!CONFIG_KEYS.includes(key) && CONFIG_KEYS.some((k) => k.startsWith(`${key}.`))) {
    throw new ConfigError(`configuration section '${key}' (from ${source}) must be an object of ${key}.* options`, { key });
  }
  if (!CONFIG_KEYS.includes(key)) {
    const guess = closeKey(key);
    throw new ConfigError(
      `unknown configuration key '${key}' (from ${source})${guess ? `; did you mean '${guess}'?` : '.'} ` +
        // Also met by library callers (getTransport's overrides), for whom a flag alone said nothing.
        'The options: --help-config of any hermod CLI, or the README\'s "Configuration".',
      { key },
    );
  }
}
