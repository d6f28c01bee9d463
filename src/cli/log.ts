/** Logging of the bins: one line per event, plain or JSON, at `log.level`; connection changes logged. */
import diagnostics_channel from 'node:diagnostics_channel';
import type { HermodConfig } from '../config/index.js';

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 } as const;

/** Longest run of non-blank characters a log line keeps: a method name or topic is cut after it. */
export const MAX_LOG_TOKEN = 200;
/** Longest log message, after escaping. */
export const MAX_LOG_MESSAGE = 2000;
/** Longest string field of a JSON log line, after escaping. */
export const MAX_LOG_FIELD = 200;

// C0 and C1 controls (newlines, ESC, CSI), line and paragraph separators, and bidi overrides:
// whatever could end a line, forge another one or rewrite the terminal.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const SHORT: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeUnsafe(s: string): string {
  return s.replace(UNSAFE, (c) => SHORT[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function cut(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}…[+${s.length - max} chars]` : s;
}

const LONG_TOKEN = new RegExp(`\\S{${MAX_LOG_TOKEN + 1},}`, 'g');

/**
 * Makes text safe for one log line: control characters escaped (`\n`, `\u001b`), runs of more
 * than {@link MAX_LOG_TOKEN} non-blank characters cut, the whole cut at `max`. Log messages
 * quote what peers send (method names, topics, error messages); this keeps each event one line
 * of bounded size, so a peer can neither forge lines nor fill the disk.
 */
export function logSafe(text: string, max = MAX_LOG_MESSAGE): string {
  return cut(
    escapeUnsafe(text).replace(LONG_TOKEN, (t) => cut(t, MAX_LOG_TOKEN)),
    max,
  );
}

function safeFields(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) out[logSafe(k, MAX_LOG_FIELD)] = typeof v === 'string' ? logSafe(v, MAX_LOG_FIELD) : v;
  return out;
}

/** A small logger for the bins: one line per event, plain or JSON; every line passes {@link logSafe}. */
export function makeLogger(config: HermodConfig, name: string, allToStderr = false) {
  const min = LEVELS[config.log.level];
  const who = logSafe(name, MAX_LOG_FIELD);
  const write = (level: keyof typeof LEVELS, msg: string, fields: Record<string, unknown> = {}) => {
    if (LEVELS[level] < min) return;
    const text = logSafe(String(msg));
    const line = config.log.json
      ? JSON.stringify({ time: new Date().toISOString(), level, name: who, msg: text, ...safeFields(fields) })
      : `${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${who}: ${text}`;
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
    else if (ev.state === 'blocked') log.warn(`the broker at ${ev.host} blocked publishing: ${(ev as { reason?: string }).reason ?? ''}`);
    else if (ev.state === 'unblocked') log.info(`the broker at ${ev.host} unblocked publishing`);
  });
}
