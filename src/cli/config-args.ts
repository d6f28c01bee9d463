/**
 * The configuration flags every bin takes: `--config key=value`, `--config key value`,
 * `--config-file path` and `--help-config`.
 */

import { assertKnownKey, type ConfigValues, envName, type HermodConfig, loadConfig, OPTIONS } from '../config/index.js';
import { ConfigError } from '../core/errors.js';

/** The epilog line of the bins that take the configuration flags. */
export const CONFIG_HELP_LINE =
  'Configuration: --config key=value | --config key value, --config-file file.json (repeatable), --help-config (every key, its default and environment variable)';

/**
 * Pulls `--config key=value`, `--config key value` and `--config-file path` out of argv.
 * Returns the remaining arguments untouched.
 */
export function parseConfigArgs(argv: readonly string[]): { overrides: Record<string, string>; files: string[]; rest: string[] } {
  const overrides: Record<string, string> = {};
  const files: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--config' || a.startsWith('--config=')) {
      let spec = a === '--config' ? argv[++i] : a.slice('--config='.length);
      if (spec === undefined) throw new ConfigError('--config needs key=value or key value');
      if (spec.startsWith('=') || spec === '')
        throw new ConfigError(`--config ${spec} names no key: use --config key=value or --config key value`);
      let value: string | undefined;
      const eq = spec.indexOf('=');
      if (eq > 0) {
        value = spec.slice(eq + 1);
        spec = spec.slice(0, eq);
      } else {
        value = argv[++i];
        if (value === undefined) throw new ConfigError(`--config ${spec} needs a value`, { key: spec });
      }
      assertKnownKey(spec, '--config');
      // A later flag of the same key wins, as command-line flags do: a script adds its own
      // --config after the ones it was given (the tests' helpers do too).
      overrides[spec] = value;
    } else if (a === '--config-file' || a.startsWith('--config-file=')) {
      const file = a === '--config-file' ? argv[++i] : a.slice('--config-file='.length);
      if (!file) throw new ConfigError('--config-file needs a path');
      files.push(file);
    } else {
      rest.push(a);
    }
  }
  return { overrides, files, rest };
}

/**
 * Every option with its default, environment variable and doc, for `--help-config`. A
 * command's own `defaults` are shown as its defaults, beside the library's.
 */
export function describeConfig(defaults: ConfigValues = {}): string {
  return OPTIONS.map(([k, option]) => {
    const own = (defaults as Record<string, unknown>)[k];
    const def =
      own === undefined
        ? `default ${JSON.stringify(option.default)}`
        : `default ${JSON.stringify(own)} here, library default ${JSON.stringify(option.default)}`;
    return `${k}  (${def}, env ${envName(k)})\n    ${option.doc}`;
  }).join('\n');
}

/**
 * Shared start-up of the bins: `--help-config` answered, config flags taken out of argv, and the
 * config loaded over the command's `defaults` (the lowest source).
 */
export function cliConfig(argv: string[], defaults: ConfigValues): { config: HermodConfig; rest: string[] } {
  if (argv.includes('--help-config')) {
    process.stdout.write(`${describeConfig(defaults)}\n`);
    process.exit(0);
  }
  const { overrides, files, rest } = parseConfigArgs(argv);
  return { config: loadConfig({ defaults, files, overrides }), rest };
}
