import diagnostics_channel from 'node:diagnostics_channel';
import { ConfigError, HermodError } from '../core/errors.js';
import { loadConfig, parseConfigArgs, describeConfig, type HermodConfig } from '../config/index.js';
import { redactUrl } from '../config/transport-url.js';

/** Where a CLI connects when neither a flag, the environment nor a config file names a URL: the embedded router. */
export const CLI_DEFAULT_URL = 'amqp://127.0.0.1:5672/';

/** Shared start-up of the bins: config flags out of argv, config loaded, `--help-config` handled. */
export function cliConfig(argv: string[]): { config: HermodConfig; rest: string[]; urlFromConfig: boolean } {
  if (argv.includes('--help-config')) {
    process.stdout.write(`${describeConfig()}\n`);
    process.exit(0);
  }
  const { overrides, files, rest } = parseConfigArgs(argv);
  const config = loadConfig({ files, overrides });
  const urlFromConfig = 'transportUrl' in overrides || process.env.HERMOD_TRANSPORT_URL !== undefined ||
    config.transportUrl !== 'memory://';
  return { config, rest, urlFromConfig };
}

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 } as const;

/** A small logger for the bins: one line per event, plain or JSON. */
export function makeLogger(config: HermodConfig, name: string, allToStderr = false) {
  const min = LEVELS[config.log.level];
  const write = (level: keyof typeof LEVELS, msg: string, fields: Record<string, unknown> = {}) => {
    if (LEVELS[level] < min) return;
    const line = config.log.json
      ? JSON.stringify({ time: new Date().toISOString(), level, name, msg, ...fields })
      : `${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${name}: ${msg}`;
    // Tools whose stdout is data (notify-listen) log everything to stderr.
    (allToStderr || level === 'error' || level === 'warn' ? process.stderr : process.stdout).write(`${line}\n`);
  };
  return {
    debug: (m: string, f?: Record<string, unknown>) => write('debug', m, f),
    info: (m: string, f?: Record<string, unknown>) => write('info', m, f),
    warn: (m: string, f?: Record<string, unknown>) => write('warn', m, f),
    error: (m: string, f?: Record<string, unknown>) => write('error', m, f),
  };
}

export type Logger = ReturnType<typeof makeLogger>;

/** Logs connection state changes (reconnects, failovers) from any driver. */
export function logConnectionState(log: Logger): void {
  diagnostics_channel.subscribe('hermod:connection:state', (e) => {
    const ev = e as { state: string; host: string; error?: Error; attempt?: number };
    if (ev.state === 'connected') log.info(`connected to ${ev.host}`);
    else if (ev.state === 'disconnected') log.warn(`disconnected from ${ev.host}${ev.error ? `: ${ev.error.message}` : ''}`);
    else if (ev.state === 'reconnecting' && (ev.attempt ?? 0) <= 1) log.info(`connecting to ${ev.host}…`);
  });
}

/** Prints a startup or usage error and exits with status 2. */
export function fatal(err: unknown): never {
  const msg = err instanceof Error ? err.message : String(err);
  process.stderr.write(`error: ${redactUrl(msg)}\n`);
  process.exit(err instanceof ConfigError ? 2 : 1);
}

/** A shell value: JSON when it parses (`5`, `true`, `{"a":1}`), else the string itself. */
export function parseValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** `key=value` words (arguments, context, payload) into an object of parsed values. */
export function parseKeyValues(pairs: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new HermodError(`argument '${p}' is not key=value`);
    out[p.slice(0, eq)] = parseValue(p.slice(eq + 1));
  }
  return out;
}
