/**
 * `rpc-client job <token>` and `rpc-client … --start`: long operations from the shell (README
 * "Long operations"). The job logic is the library's; this file only parses, prints and maps
 * errors to exit statuses.
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import type { HermodConfig } from '../config/index.js';
import { escapeUnsafe, escapeUnsafeKeepLines } from '../core/unsafe-text.js';
import { type CallOptions, type Context, getTransport, type Job, type JobProgress, RPCClient, Target, type Transport } from '../index.js';
import { CONFIG_HELP_LINE } from './config-args.js';
import { CLI_DEFAULT_URL } from './defaults.js';
import { describeFailure, EXIT, type ExitStatus, exitOnUsage, printFailure } from './exit-codes.js';
import { logConnectionState, makeLogger } from './log.js';
import { applyLogFlags, commonOptions, type LogFlags, positiveSeconds } from './program.js';
import { closeBeforeExit } from './shutdown.js';

/** Exit status and text for job errors, on top of the RPC ones (`method`: as for {@link describeFailure}). */
export function describeJobFailure(err: unknown, method?: string): { status: ExitStatus; text: string } {
  const code = (err as { code?: unknown })?.code;
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'HERMOD_ERR_INVALID_JOB_TOKEN') return { status: EXIT.usage, text: `bad job token: ${message}` };
  if (code === 'HERMOD_ERR_SERVER_UNAVAILABLE') return { status: EXIT.timeout, text: `server unavailable: ${message}` };
  if (code === 'HERMOD_ERR_JOB_TIMEOUT') return { status: EXIT.timeout, text: `timeout: ${message}` };
  // The server's verdicts on the job asked for, told apart from the method failing (1): no such
  // job (its run restarted, or it expired) is the "no such method" of a job; too many jobs is
  // the server busy, to try again later.
  if (code === 'HERMOD_ERR_JOB_LOST') return { status: EXIT.noSuchMethod, text: `job lost: ${message}` };
  if (code === 'HERMOD_ERR_JOB_NOT_FOUND') return { status: EXIT.noSuchMethod, text: `no such job: ${message}` };
  if (code === 'HERMOD_ERR_TOO_MANY_JOBS') return { status: EXIT.timeout, text: `server busy: ${message}` };
  return describeFailure(err, method);
}

const pct = (p: number | null) => (p === null ? '' : ` ${Math.round(p * 100)}%`);
/**
 * Server-chosen text as a terminal line: the message a method reports, its error, its name. A
 * hostile server's escapes set the terminal's title, cleared the screen and forged a line
 * ("FAKE: succeeded 100%") in the progress and status output.
 */
const safe = (text: unknown) => escapeUnsafe(String(text));
/** One progress report as the CLIs print it: `running 50% step 2 of 4`. */
export const progressLine = (p: JobProgress) => `${safe(p.state)}${pct(p.progress)}${p.message ? ` ${safe(p.message)}` : ''}`;

/**
 * Follows a job: each change of state or progress goes to stderr (rewritten in place on a
 * terminal), then the result to stdout. `timeoutMs` bounds the whole wait (JobTimeout; the job
 * runs on), by default config `jobs.jobTimeout`.
 */
async function follow(job: Job, json: boolean, timeoutMs: number | undefined): Promise<void> {
  const tty = process.stderr.isTTY;
  let shown = false;
  try {
    const result = await job.result({
      ...(timeoutMs === undefined ? {} : { timeout: timeoutMs }),
      onProgress: (p) => {
        shown = true;
        process.stderr.write(tty ? `\r\x1b[K${progressLine(p)}` : `${progressLine(p)}\n`);
      },
    });
    if (tty && shown) process.stderr.write('\n');
    // The server's text: see rpc-client's output of a result.
    process.stdout.write(
      `${escapeUnsafeKeepLines(json || typeof result !== 'string' ? JSON.stringify(result, null, json ? 0 : 2) : result)}\n`,
    );
  } catch (err) {
    if (tty && shown) process.stderr.write('\n');
    throw err;
  }
}

/**
 * A plain `rpc-client` call: `boundMs` (what `--timeout`, `seconds`, leaves) bounds all of it, a
 * job the server made of it (a long method past `deferAfter`) included; without it the job is
 * followed within `jobs.jobTimeout`, as `call()` does. Past the bound the wait fails with
 * JobTimeout (exit 3) and the job runs on, as for `--start --wait --timeout`: a call's timeout
 * stops nothing on an oslo server either. The message carries the token, to follow or cancel it.
 */
export async function callWithin(
  client: RPCClient,
  ctx: Context,
  method: string,
  args: Record<string, unknown>,
  options: CallOptions,
  boundMs: number | undefined,
  seconds: number | undefined,
): Promise<unknown> {
  if (boundMs === undefined) return client.call(ctx, method, args, options);
  const deadline = performance.now() + boundMs;
  const { result, token } = await client.callOrJob(ctx, method, args, options);
  if (!token) return result;
  const job = client.job(token, ctx);
  try {
    return await job.result({ timeout: Math.max(1, Math.ceil(deadline - performance.now())) });
  } catch (err) {
    if ((err as { code?: unknown }).code === 'HERMOD_ERR_JOB_TIMEOUT' && err instanceof Error) {
      err.message = `${method} did not end within ${seconds} s (--timeout): server ${token.server} made it job ${token.job_id}, which runs on; rpc-client job '${job.serialized}' --wait follows it, --cancel cancels it`;
    }
    throw err;
  }
}

/**
 * `--start` of rpc-client: starts `method` as a job and prints its token (one line of JSON, for
 * `rpc-client job`); with `wait` (`--start --wait`), then follows it to its result as
 * `rpc-client job <token> --wait` does, within `waitMs` when given (default `jobs.jobTimeout`).
 * Errors are the caller's to map ({@link describeJobFailure}).
 */
export async function startJob(
  client: RPCClient,
  ctx: Context,
  method: string,
  args: Record<string, unknown>,
  wait: boolean,
  json: boolean,
  waitMs?: number,
): Promise<void> {
  let job: Job;
  try {
    job = await client.start(ctx, method, args);
  } catch (err) {
    // An unmarked token of this call (a server older than the marker): printed as a started
    // job's would be, so `rpc-client job <token>` can follow it; the error still says why.
    const token =
      (err as { code?: unknown; token?: unknown }).code === 'HERMOD_ERR_INVALID_JOB_TOKEN' && (err as { token?: unknown }).token;
    if (token) process.stdout.write(`${escapeUnsafe(JSON.stringify(token))}\n`);
    throw err;
  }
  process.stdout.write(`${escapeUnsafe(job.serialized)}\n`);
  // --timeout bounds the wait as it does for `rpc-client job <token> --wait` (it was ignored here).
  if (wait) await follow(job, json, waitMs);
}

/**
 * `rpc-client job <token> [--wait] [--cancel] [--json]`: the job's status (state, progress,
 * times), or `--wait` for its result with a progress display, or `--cancel`. The token is the
 * JSON `--start` printed, `@file` holding it, or `-` for stdin. Returns the exit status.
 */
export async function jobCommand(argv: string[], loaded: HermodConfig): Promise<ExitStatus> {
  const program = commonOptions(
    new Command('rpc-client job')
      .description('Show, follow or cancel a job from its token')
      .argument('<token>', 'the token --start printed (JSON), @file, or - for stdin')
      .option('--wait', 'poll until the job ends, showing progress on stderr, then print its result')
      .option('--cancel', 'ask the server to cancel the job')
      .option(
        '--timeout <seconds>',
        `with --wait: give up after this long, exit 3 (the job runs on; default jobs.jobTimeout, ${loaded.jobs.jobTimeout ? `${loaded.jobs.jobTimeout / 1000} s` : 'no bound'})`,
        positiveSeconds,
      )
      .option('--transport-url <url>', `transport URL (default ${CLI_DEFAULT_URL})`)
      .option('--json', 'print the status, result and errors as JSON'),
    [CONFIG_HELP_LINE],
  )
    .exitOverride(exitOnUsage)
    .parse(argv, { from: 'user' });
  const o = program.opts<{ wait?: boolean; cancel?: boolean; timeout?: number; transportUrl?: string; json?: boolean } & LogFlags>();
  const config = applyLogFlags(loaded, o);
  // stdout is the status or result: logs (connection progress) go to stderr.
  logConnectionState(makeLogger(config, 'rpc-client job', true));
  const fail = (d: { status: ExitStatus; text: string }, err?: unknown) => {
    printFailure(d, err, !!o.json);
    return d.status;
  };
  // Usage errors too are JSON with --json, as the README says of every error of this command.
  if (o.wait && o.cancel)
    return fail({ status: EXIT.usage, text: '--wait and --cancel do not go together (cancel, then: rpc-client job <token> --wait)' });
  if (o.timeout !== undefined && !o.wait) return fail({ status: EXIT.usage, text: '--timeout goes with --wait' });
  const raw = program.args[0]!;
  let text: string;
  try {
    text = raw === '-' ? readFileSync(0, 'utf8') : raw.startsWith('@') ? readFileSync(raw.slice(1), 'utf8') : raw;
  } catch (err) {
    return fail({ status: EXIT.usage, text: `cannot read the token: ${(err as Error).message}` });
  }
  let transport: Transport | undefined;
  try {
    transport = closeBeforeExit(await getTransport(o.transportUrl, { config }));
    // The token names its own target; the client's is only a placeholder.
    const job = new RPCClient(transport, new Target({ topic: 'hermod' })).job(text.trim());
    if (o.cancel) {
      const s = await job.cancel();
      process.stdout.write(
        o.json ? `${escapeUnsafe(JSON.stringify(s))}\n` : `cancel requested: ${safe(s.method)} ${safe(s.state)}${pct(s.progress)}\n`,
      );
    } else if (o.wait) {
      await follow(job, !!o.json, o.timeout === undefined ? undefined : o.timeout * 1000);
    } else {
      const s = await job.status();
      process.stdout.write(
        o.json
          ? `${escapeUnsafe(JSON.stringify(s))}\n`
          : `${safe(s.method)} ${safe(s.state)}${pct(s.progress)}${s.message ? ` ${safe(s.message)}` : ''}\n  job ${safe(s.id)} on ${safe(job.token.server)} (topic ${safe(job.token.topic)})\n  ${s.startedAt ? `started ${safe(s.startedAt)}` : 'not started yet'}${s.endedAt ? `, ended ${safe(s.endedAt)}` : ''}${s.error ? `\n  error ${safe(s.error.class)}: ${safe(s.error.message)}` : ''}\n`,
      );
    }
    return EXIT.ok;
  } catch (err) {
    return fail(describeJobFailure(err), err);
  } finally {
    await transport?.close();
  }
}
