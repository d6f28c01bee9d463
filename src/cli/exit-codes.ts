/**
 * Exit statuses of the bins, one table for all of them (printed by every `--help` and in the
 * README's "Exit statuses"), so scripts can tell failures apart; and the error a bin throws for
 * a usage mistake.
 */
import type { CommanderError } from 'commander';
import { redactUrl } from '../config/transport-url.js';
import { ConfigError, HermodError, RemoteError, type TransportError } from '../core/errors.js';
import { isRemote } from '../rpc/remote-errors.js';
import { logSafe } from './log.js';

/** Exit statuses by meaning. */
export const EXIT = {
  /** Done. */
  ok: 0,
  /** rpc-client: the remote method raised. */
  remote: 1,
  /** Any other bin: it failed (startup or run) for a reason not listed below. */
  failed: 1,
  /** Bad arguments, options or configuration. */
  usage: 2,
  /** rpc-client: no reply in time, or (RabbitMQ) no queue bound, i.e. nobody serves it. */
  timeout: 3,
  /** rpc-client: no such method, or the server does not support the requested version. */
  noSuchMethod: 4,
  /** Cannot connect to the broker or router. */
  connect: 5,
  /** rpc-client: a call failed in an unexpected way. */
  other: 6,
  /** A server stopped at its shutdown deadline with work still running, which it aborted. */
  aborted: 7,
} as const;

/** The exit-status table every bin's `--help` ends with; the README's "Exit statuses" says the same. */
export const EXIT_TABLE = `Exit status (all hermod CLIs):
  0  ok
  1  the remote method raised (rpc-client), or another failure not listed here
  2  usage or configuration error (bad option, argument, config key or value, endpoint module)
  3  timeout: no reply in time, or nobody serves the topic (nothing took it), or
     still connecting (the first attempt under way) when the time ran out; a job's
     server unavailable, or too many jobs on it to start another
  4  no such method, or the server does not support the requested version; no such job
  5  cannot connect to the broker or router (gave up; the message says where and why)
  6  rpc-client: a call failed in an unexpected way (the message says how)
  7  stopped at the shutdown deadline with work still running, which was aborted
  129 / 130 / 143  a second SIGHUP / SIGINT / SIGTERM ended a graceful stop at once`;

/** An exit status of {@link EXIT}. */
export type ExitStatus = (typeof EXIT)[keyof typeof EXIT];

/** A command line that cannot be run as written (a positional that is not key=value, say); exits {@link EXIT.usage}. */
export class UsageError extends HermodError {
  static override readonly CODE: string = 'HERMOD_ERR_USAGE';
}

/** Error codes whose meaning is a usage mistake, for {@link describeFailure}. */
const USAGE_CODES: ReadonlySet<string> = new Set([
  UsageError.CODE,
  ConfigError.CODE,
  // The transport URL points at a peer of the other AMQP version.
  'HERMOD_ERR_WRONG_PROTOCOL',
  'HERMOD_ERR_INVALID_TARGET',
  'HERMOD_ERR_INVALID_ARGUMENT',
]);

/** Codes a server answers about the request itself, which keep their exit status when rebuilt from the wire. */
const CALLER_MISTAKES: ReadonlySet<string> = new Set([
  'HERMOD_ERR_NO_SUCH_METHOD',
  'HERMOD_ERR_UNSUPPORTED_VERSION',
  'HERMOD_ERR_INVALID_ARGUMENT',
]);

/** Writes a failure {@link describeFailure} described to stderr: `error: text`, or one JSON object under `--json`. */
export function printFailure(d: { status: ExitStatus; text: string }, err: unknown, json: boolean): void {
  // The text quotes what peers and the command line sent (remote error messages, method names):
  // one line of bounded size, no terminal escapes, as in the logs.
  const text = logSafe(d.text);
  process.stderr.write(
    json
      ? `${JSON.stringify({ error: { status: d.status, code: (err as { code?: string } | undefined)?.code ?? null, message: text } })}\n`
      : `error: ${text}\n`,
  );
}

/**
 * The exit status of an RPC failure and the line that explains it (rpc-client's statuses).
 * `method` is the method the caller asked for: a "no such method" names it from there, since
 * peers word (and oslo's rebuilt errors repeat) the message in their own ways.
 */
export function describeFailure(err: unknown, method?: string): { status: ExitStatus; text: string } {
  const e = err as HermodError & { code?: string };
  if (err instanceof RemoteError) return { status: EXIT.remote, text: `remote error: ${err.excType}: ${err.value}` };
  // A rebuilt error keeps its local class: a MessagingTimeout the method itself raised (its own
  // call to another service timed out) is the method failing, not this call timing out. Only the
  // dispatcher's verdicts on the request (no such method, version, arguments) keep their status.
  // A ContractViolation is the caller's mistake for its arguments, the server's for its result.
  const argsRefused = e.code === 'HERMOD_ERR_CONTRACT_VIOLATION' && (e as { of?: string }).of === 'arguments';
  if (argsRefused) return { status: EXIT.usage, text: `remote error: ContractViolation: ${e.message}` };
  if (isRemote(err) && !CALLER_MISTAKES.has(e.code ?? ''))
    return { status: EXIT.remote, text: `remote error: ${err.name}: ${err.message}` };
  if (e?.code !== undefined && USAGE_CODES.has(e.code)) return { status: EXIT.usage, text: e.message };
  switch (e?.code) {
    case 'HERMOD_ERR_TIMEOUT':
      return { status: EXIT.timeout, text: `timeout: ${e.message}` };
    // RabbitMQ returned it: no queue is bound, i.e. nobody serves the topic (or server).
    case 'HERMOD_ERR_UNDELIVERABLE':
      return { status: EXIT.timeout, text: `nobody serves it: ${e.message}` };
    case 'HERMOD_ERR_NO_SUCH_METHOD':
      return {
        status: EXIT.noSuchMethod,
        // The server's own words only where they say where it has the method (another namespace or version).
        text:
          method === undefined
            ? `no such method: ${e.message}`
            : `no such method: ${method}${/ \(this server has .*\)$/.exec(e.message)?.[0] ?? ''}`,
      };
    case 'HERMOD_ERR_UNSUPPORTED_VERSION':
      return { status: EXIT.noSuchMethod, text: `unsupported version: ${e.message}` };
    case 'HERMOD_ERR_TRANSPORT':
      // The call's own time ran out during a first connect attempt that had not failed: a
      // timeout (3), as with `--timeout 0.001` against a broker that is up, not "cannot connect".
      if ((err as TransportError).stillConnecting) return { status: EXIT.timeout, text: `timeout: ${e.message}` };
      return { status: EXIT.connect, text: e.message };
    case 'HERMOD_ERR_ACCESS_REFUSED':
      return { status: EXIT.connect, text: e.message };
    default:
      return { status: EXIT.other, text: err instanceof Error ? `${err.name}: ${err.message}` : String(err) };
  }
}

/** The exit status of a bin's startup or run failure: 2 usage or config, 5 cannot connect, else 1. */
export function failureStatus(err: unknown): ExitStatus {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (err instanceof ConfigError || err instanceof UsageError || (typeof code === 'string' && USAGE_CODES.has(code))) return EXIT.usage;
  if (code === 'HERMOD_ERR_TRANSPORT' || code === 'HERMOD_ERR_ACCESS_REFUSED') return EXIT.connect;
  return EXIT.failed;
}

/** The logger name {@link fatal} writes its JSON line under; undefined: plain text. */
let fatalJsonName: string | undefined;

/**
 * Makes {@link fatal} write one JSON log line (`level` `fatal`, `time`, `pid`, `name` as the
 * bin's logger writes them, `msg`, `status`, `code`) instead of `error: …`, for a bin whose log
 * is JSON: a plain line among JSON ones is one a log pipeline cannot parse. `undefined`: plain
 * text again.
 */
export function fatalAsJsonLog(name: string | undefined): void {
  fatalJsonName = name;
}

/**
 * For a long-running bin, called before anything can fail: with `--log-json` or `--config
 * log.json=true` on its command line (before a `--`), or `HERMOD_LOG_JSON` true in its
 * environment, {@link fatal} and commander's own errors ({@link usageErrorOutput}) are JSON lines
 * from the start, under `name`. A bad `--config`, a missing `--config-file` or an unknown flag
 * came before the logger existed, and was a plain `error: …` line among JSON ones. (A
 * `--config-file`'s `log.json` is known only once the file has been read, and its errors come
 * before that.)
 */
export function fatalAsJsonLogIfAsked(name: string, argv: readonly string[], env: NodeJS.ProcessEnv = process.env): void {
  const end = argv.indexOf('--');
  const args = end === -1 ? argv : argv.slice(0, end);
  // The values config's 'bool' format reads as true.
  const yes = (v: string | undefined) => v !== undefined && /^(true|1|yes|on)$/i.test(v.trim());
  let asked = yes(env.HERMOD_LOG_JSON);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const spec = a === '--config' ? args[i + 1] : a.startsWith('--config=') ? a.slice('--config='.length) : undefined;
    const m = spec === undefined ? null : /^\s*log\.json\s*=(.*)$/.exec(spec);
    // The last one given wins, as in the configuration itself.
    if (m) asked = yes(m[1]);
  }
  // The flag wins over the configuration, as in program.ts.
  if (asked || args.includes('--log-json')) fatalJsonName = name;
}

/** The JSON line {@link fatal} writes under {@link fatalAsJsonLog}. */
function fatalJsonLine(name: string, msg: string, status: number, code?: unknown): string {
  const line = {
    level: 'fatal',
    time: new Date().toISOString(),
    pid: process.pid,
    name: logSafe(name),
    msg,
    status,
    ...(typeof code === 'string' ? { code } : {}),
  };
  return `${JSON.stringify(line)}\n`;
}

/**
 * For commander's `configureOutput({ outputError })`: its own error (`error: unknown option
 * '--bogus'`) as it writes it, or as one JSON line under {@link fatalAsJsonLog}.
 */
export function usageErrorOutput(text: string, write: (text: string) => void): void {
  if (fatalJsonName === undefined) write(text);
  else write(fatalJsonLine(fatalJsonName, logSafe(text.trim().replace(/^error: /, '')), EXIT.usage));
}

/**
 * Exits with `status` once stdout and stderr have handed what was written to them to the OS.
 * `process.exit()` drops what a pipe has not taken yet: a 1 MB result piped to `wc -c` arrived as
 * 64 KiB, exit 0. A reader that stops reading keeps the command waiting, as it would keep `cat`;
 * one that goes away ends it (onOutputClosed, or the failed write's callback).
 */
export function exitWhenWritten(status: number): Promise<never> {
  return new Promise<never>(() => {
    let waiting = 0;
    const done = () => {
      if (--waiting === 0) process.exit(status);
    };
    for (const stream of [process.stdout, process.stderr]) {
      // An empty write's callback runs once everything written before it has left.
      if (stream.writableLength > 0 && !stream.destroyed) {
        waiting++;
        stream.write('', done);
      }
    }
    if (waiting === 0) process.exit(status);
  });
}

/** Prints a startup or usage error (passwords redacted) and exits with {@link failureStatus}. */
export function fatal(err: unknown): never {
  const msg = logSafe(redactUrl(err instanceof Error ? err.message : String(err)));
  const status = failureStatus(err);
  if (fatalJsonName === undefined) process.stderr.write(`error: ${msg}\n`);
  else process.stderr.write(fatalJsonLine(fatalJsonName, msg, status, (err as { code?: unknown } | undefined)?.code));
  process.exit(status);
}

/** For commander's `exitOverride`: `--help` and `--version` exit 0, a bad command line exits 2. */
export function exitOnUsage(err: CommanderError): never {
  process.exit(err.exitCode === 0 ? EXIT.ok : EXIT.usage);
}
