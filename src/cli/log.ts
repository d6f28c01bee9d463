/** Logging of the bins (pino): one line per event, plain or JSON, at `log.level`; connection changes logged. */
import * as diagnostics_channel from 'node:diagnostics_channel';
import { format } from 'node:util';
import { pino } from 'pino';
import type { HermodConfig } from '../config/index.js';
import { escapeUnsafe } from '../core/unsafe-text.js';

/** Longest run of non-blank characters a log line keeps: a method name or topic is cut after it. */
export const MAX_LOG_TOKEN = 200;
/** Longest log message, after escaping. */
export const MAX_LOG_MESSAGE = 2000;
/** Longest string field of a JSON log line, after escaping. */
export const MAX_LOG_FIELD = 200;

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
  const escaped = escapeUnsafe(text);
  const tokensCut = escaped.replace(LONG_TOKEN, (t) => cut(t, MAX_LOG_TOKEN));
  if (tokensCut.length <= max) return tokensCut;
  // Cut again at `max`, counting what is hidden in the escaped text: cutting the token-cut text
  // counted a token's marker as text, and (for a field, as long as a token) chopped it, so a
  // 1,000,001-character method name was said to hide 16 characters.
  let out = '';
  let at = 0;
  for (const m of escaped.matchAll(LONG_TOKEN)) {
    const plain = escaped.slice(at, m.index);
    if (out.length + plain.length >= max) return `${out}${plain.slice(0, max - out.length)}${hidden(escaped, at + max - out.length)}`;
    out += plain;
    at = m.index;
    const kept = Math.min(MAX_LOG_TOKEN, max - out.length);
    const marker = `…[+${m[0].length - MAX_LOG_TOKEN} chars]`;
    // A token's own marker only when it fits whole; else the line's marker says it all.
    if (kept < MAX_LOG_TOKEN || out.length + MAX_LOG_TOKEN + marker.length > max) {
      return `${out}${m[0].slice(0, kept)}${hidden(escaped, at + kept)}`;
    }
    out += m[0].slice(0, MAX_LOG_TOKEN) + marker;
    at += m[0].length;
  }
  const rest = escaped.slice(at);
  return `${out}${rest.slice(0, max - out.length)}${hidden(escaped, at + max - out.length)}`;
}

/** The marker of a line cut at `shown` characters of `escaped`. */
function hidden(escaped: string, shown: number): string {
  return `…[+${escaped.length - shown} chars]`;
}

function safeFields(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) out[logSafe(k, MAX_LOG_FIELD)] = typeof v === 'string' ? logSafe(v, MAX_LOG_FIELD) : v;
  return out;
}

/** What {@link makeLogger} reads of the configuration: `log.level` and `log.json`. */
export type LogConfig = Pick<HermodConfig, 'log'>;

/** Plain text for a person: `time LEVEL name: message`, the fields already said in the message. */
function plainLine(json: string): string {
  const e = JSON.parse(json) as { time: string; level: string; name: string; msg: string; stack?: string };
  return `${e.time} ${e.level.toUpperCase().padEnd(5)} ${e.name}: ${e.msg}${e.stack ? ` | ${e.stack}` : ''}\n`;
}

/**
 * The bins' logger, on pino: one line per event at `log.level`, JSON (`log.json`, pino's
 * format with ISO times and level names) or plain text; every message and string field passes
 * {@link logSafe}. Debug and info go to stdout, warnings and errors to stderr; with
 * `allToStderr` (tools whose stdout is data, such as notify-listen) everything goes to stderr.
 * Lines are written through `process.stdout`/`process.stderr`, which are synchronous for files
 * and pipes, so nothing is lost when a bin calls `process.exit`.
 */
export function makeLogger(config: LogConfig, name: string, allToStderr = false) {
  const format = config.log.json ? (s: string) => s : plainLine;
  const sink = (stream: () => NodeJS.WriteStream) => ({ write: (s: string) => stream().write(format(s)) });
  // Looked up at each write, so that a test (or a bin) replacing process.stdout.write sees the lines.
  const out = sink(() => process.stdout);
  const err = sink(() => process.stderr);
  const build = (level: string) =>
    pino(
      {
        name: logSafe(name, MAX_LOG_FIELD),
        level,
        base: { pid: process.pid },
        timestamp: pino.stdTimeFunctions.isoTime,
        formatters: { level: (label) => ({ level: label }) },
      },
      pino.multistream(
        [
          { level: 'debug', stream: allToStderr ? err : out },
          { level: 'warn', stream: err },
        ],
        { dedupe: true },
      ),
    );
  const logger = build(config.log.level);
  // Announcements are info lines that --quiet and --log-level warn|error keep; silent drops them.
  const announcer = config.log.level === 'silent' || logger.isLevelEnabled('info') ? logger : build('info');
  const write = (to: pino.Logger, level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => {
    if (!to.isLevelEnabled(level)) return;
    const text = logSafe(String(msg));
    if (fields) to[level](safeFields(fields), text);
    else to[level](text);
  };
  return {
    debug: (m: string, f?: Record<string, unknown>) => write(logger, 'debug', m, f),
    info: (m: string, f?: Record<string, unknown>) => write(logger, 'info', m, f),
    warn: (m: string, f?: Record<string, unknown>) => write(logger, 'warn', m, f),
    error: (m: string, f?: Record<string, unknown>) => write(logger, 'error', m, f),
    /**
     * An info line logged at every level but silent: an address the process listens on, which a
     * script or person needs even with --quiet (with port 0 it is the only way to learn the port).
     */
    announce: (m: string, f?: Record<string, unknown>) => write(announcer, 'info', m, f),
    /**
     * The line of a process that is going down (an uncaught exception), logged at every level
     * but silent. `stack` is kept up to {@link MAX_LOG_MESSAGE} characters (other string fields
     * are cut at {@link MAX_LOG_FIELD}), escaped onto the one line; plain text shows it after the
     * message.
     */
    fatal: (m: string, f: Record<string, unknown> = {}, stack?: string) => {
      if (!logger.isLevelEnabled('fatal')) return;
      logger.fatal({ ...safeFields(f), ...(stack === undefined ? {} : { stack: logSafe(stack, MAX_LOG_MESSAGE) }) }, logSafe(String(m)));
    },
  };
}

/** The logger {@link makeLogger} returns. */
export type Logger = ReturnType<typeof makeLogger>;

let consoleCaptured = false;

/**
 * Sends what libraries write with `console.error` and `console.warn` to `log` as warn lines, at
 * most {@link PEER_LINES_PER_SECOND} a second. rhea writes peer-chosen text that way (a link's
 * terminus descriptor, an outcome, "Received transfer when credit was 0"), once per frame and
 * unescaped: a peer could forge log lines and fill the disk past every bound of the CLI's own
 * lines. Once per process: the first CLI logger keeps them. Returns what puts the console back.
 */
export function captureConsole(log: Logger): () => void {
  if (consoleCaptured) return () => {};
  consoleCaptured = true;
  const { error, warn } = console;
  const budget = lineBudget(PEER_LINES_PER_SECOND, 1000, (skipped) =>
    log.warn(`${skipped} more console lines not logged in the last second`),
  );
  const toLog = (...args: unknown[]) => {
    if (budget()) log.warn(`console: ${format(...args)}`);
  };
  console.error = toLog;
  console.warn = toLog;
  return () => {
    console.error = error;
    console.warn = warn;
    consoleCaptured = false;
  };
}

/**
 * When the next connection attempt comes, for a reconnect line: `at once` for 0, milliseconds
 * below 100 ms (one decimal of a second would print 30 ms as `0.0 s`), else seconds with one
 * decimal (`in 4.0 s`); `trying again` when the driver gave no delay.
 */
export function nextTryText(delayMs: number | undefined): string {
  if (delayMs === undefined || !Number.isFinite(delayMs) || delayMs < 0) return 'trying again';
  if (delayMs === 0) return 'next try at once';
  if (delayMs < 100) return `next try in ${Math.max(1, Math.round(delayMs))} ms`;
  return `next try in ${(delayMs / 1000).toFixed(1)} s`;
}

/**
 * Logs connection state changes of any driver (`hermod:connection:state`): each reconnect
 * attempt at info with the host, the reason when known and when the next try comes, so that a
 * bin waiting for a broker is never silent; losses and flow control at warn. `budget`: the retry
 * budget of a bin that makes one request and gives up past it (rpc-client's `rpc.retry`), so the
 * attempt that spends it says so instead of announcing a next try.
 */
export function logConnectionState(log: Logger, budget?: { retry: number; key: string }): void {
  // The last reason each connection gave: a 'reconnecting' event may not carry one itself.
  const reasons = new Map<string, string>();
  // Connections that failed or were lost since they were last connected.
  const troubled = new Set<string>();
  diagnostics_channel.subscribe('hermod:connection:state', (e) => {
    const ev = e as {
      state: string;
      host: string;
      role?: string;
      error?: Error;
      reason?: string;
      attempt?: number;
      delayMs?: number;
      refused?: boolean;
    };
    const reason = ev.error?.message ?? ev.reason;
    // The RabbitMQ driver keeps a connection for publishing and one per server or listener, each
    // with its own backoff: one broker lost is a line per connection, and the role tells them apart.
    const host = ev.role ? `${ev.host} [${ev.role}]` : ev.host;
    if (ev.state === 'connected') {
      // News at info only after trouble; a first connect is routine (and the bins say where they serve).
      (troubled.delete(host) ? log.info : log.debug)(`connected to ${host}`);
      reasons.delete(host);
    } else if (ev.state === 'disconnected') {
      if (reason) reasons.set(host, reason);
      troubled.add(host);
      log.warn(`disconnected from ${host}${reason ? `: ${reason}` : ''}`);
    } else if (ev.state === 'reconnecting') {
      troubled.add(host);
      const why = reason ?? reasons.get(host);
      // The connection itself would try again, but the one request of a short-lived bin gives up
      // past its retry budget: "next try in 4.4 s" right before "gave up" misled.
      const spent = budget !== undefined && budget.retry >= 0 && (ev.attempt ?? 0) > budget.retry;
      // A refused login or a wrong protocol fails what waits for the connection at once: a "next
      // try in 30.0 s" right before a one-shot bin's "not retrying" misled. A long-running one's
      // connection does try again (a wrong protocol excepted, "not retried" in its reason).
      const next =
        /\bnot retried\)$/.test(why ?? '') || (ev.refused && budget !== undefined)
          ? 'not retrying'
          : ev.refused
            ? `what waits for it fails at once, ${nextTryText(ev.delayMs)}`
            : spent
              ? `no more tries (${budget.key}=${budget.retry})`
              : nextTryText(ev.delayMs);
      // "reconnecting to" before "not retrying" or "no more tries" said two things at once.
      const verb = next === 'not retrying' || spent ? 'connecting to' : 'reconnecting to';
      log.info(`${verb} ${host}${why ? ` (${why})` : ''}: attempt ${ev.attempt ?? '?'} failed, ${next}`, {
        host: ev.host,
        ...(ev.role ? { role: ev.role } : {}),
        attempt: ev.attempt,
        delayMs: ev.delayMs,
      });
    } else if (ev.state === 'blocked') {
      log.warn(`${host} blocked publishing${reason ? `: ${reason}` : ''}`);
    } else if (ev.state === 'unblocked') {
      log.info(`${host} unblocked`);
    } else if (ev.state === 'failed') {
      log.error(`gave up on ${host}: ${reason ?? 'no reason given'}`);
    }
  });
}

/**
 * Lines a second the long-running CLIs write for failed requests, and for invalid or duplicate
 * messages, before the rest are only counted (README "Logging"): a peer causes those at will.
 */
export const PEER_LINES_PER_SECOND = 20;

/**
 * A budget of log lines for one kind of event a peer can cause at will (a failed request, an
 * invalid message): at most `perWindow` lines each `windowMs`; the rest are counted and
 * `summarize` is told how many once their window ends, so a flood costs one line a window
 * instead of a line per message (50,000 polls of unknown jobs wrote 10 MB in 8 s). Returns the
 * check to call before each line.
 */
export function lineBudget(perWindow: number, windowMs: number, summarize: (skipped: number) => void): () => boolean {
  let start = Number.NEGATIVE_INFINITY;
  let used = 0;
  let skipped = 0;
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    timer = undefined;
    if (skipped > 0) summarize(skipped);
    skipped = 0;
  };
  return () => {
    const now = Date.now();
    if (now - start >= windowMs) {
      start = now;
      used = 0;
    }
    if (used < perWindow) {
      used++;
      return true;
    }
    skipped++;
    // Said when the window ends, whether or not more come; the timer never holds the process.
    if (!timer) {
      timer = setTimeout(flush, Math.max(1, start + windowMs - now));
      timer.unref();
    }
    return false;
  };
}
