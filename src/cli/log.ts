/** Logging of the bins: one line per event, plain or JSON, at `log.level`; connection changes logged. */
import diagnostics_channel from 'node:diagnostics_channel';
import type { HermodConfig } from '../config/index.js';

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

/** The logger {@link makeLogger} returns. */
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
