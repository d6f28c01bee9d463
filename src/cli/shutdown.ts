/**
 * How every long-running bin stops (rpc-server, notify-listen, hermod-router, hermod-gateway,
 * hermod run): SIGTERM, SIGINT or SIGHUP (unless the bin reloads on it) starts the graceful stop with a deadline (`--shutdown-timeout`), logging what it waits for
 * once a second; a second signal aborts and exits at once; the exit status says whether work was
 * aborted. A backstop timer ends the process shortly after the deadline whatever the broker,
 * the network or an endpoint does. An uncaught exception or unhandled rejection is logged as one
 * fatal line and starts the same graceful stop, exiting 1.
 */

import { MAX_TIMER_MS } from '../core/errors.js';
import { type ShutdownSignal, SIGNAL_NUMBERS, takeStartupSignals } from './early-signals.js';
import { EXIT, UsageError } from './exit-codes.js';
import type { Logger } from './log.js';
import { plainNumber } from './program.js';

/** Exit statuses of a stop. A second signal exits 128 + the signal's number (129 SIGHUP, 130 SIGINT, 143 SIGTERM). */
export const STOP_EXIT = {
  /** Stopped; every piece of work in flight finished. */
  clean: EXIT.ok,
  /** Stopped at the deadline; work still running then was aborted (callers got ServerStopped, notifications requeued). */
  aborted: EXIT.aborted,
} as const;

/** Past the deadline, the backstop allows this much for the aborts' replies and the close handshakes. */
export const BACKSTOP_MS = 500;

/** What a bin tells {@link handleShutdown} about the thing it runs. */
export interface ShutdownTarget {
  /** What is still running, for the log ("3 in-flight request(s)"); empty when nothing is. */
  pending(): string;
  /** Work aborted so far (by a drain deadline): the backstop's exit status needs it. */
  aborted(): number;
  /** Stops taking work, waits up to `deadlineMs` for what runs, closes; resolves with how many were aborted. */
  graceful(deadlineMs: number): Promise<number>;
  /** Ends everything now (second signal). */
  abort(): Promise<unknown>;
  /**
   * How the stopped line words {@link graceful}'s count, for a target whose count is not of
   * pieces of work (a cluster primary counts workers). @default `aborted N piece(s) of work still running at the deadline`
   */
  abortedText?(n: number): string;
  /**
   * Still answering polls of jobs that ended during the stop, unread yet: the backstop then
   * allows {@link handleShutdown}'s `overrunMs` more. @default never
   */
  lingering?(): boolean;
}

/** Uncaught exceptions logged one by one; after them, one line says more were not. */
export const MAX_CRASH_LINES = 5;

/** The handle a bin keeps: the stop in progress, and a way to start one without a signal (`--count`). */
export interface Shutdown {
  /** A stop has begun (a signal, or {@link stop}). */
  readonly stopping: boolean;
  /**
   * Starts the graceful stop as a signal would; `reason` goes to the log. `status`, when given,
   * is the exit status whatever the stop reports (a failure that ended the service: the stop is
   * still graceful, but the process did not end because it was asked to).
   */
  stop(reason: string, status?: number): void;
  /**
   * Aborts as a second signal does (`reason` goes to the log), exiting `status` (default 143, as
   * a second SIGTERM): a worker whose primary got the second signal.
   */
  abort(reason: string, status?: number): void;
}

/** How long a worker that left a SIGTERM to its primary waits for the primary's stop request before stopping by itself. */
export const RELAY_WAIT_MS = 1000;

/**
 * Parses `--shutdown-timeout` (seconds, decimals allowed) into milliseconds; undefined keeps the
 * configured default.
 */
export function parseShutdownTimeout(value: string | undefined, fallbackMs: number): number {
  if (value === undefined) return fallbackMs;
  const s = plainNumber(value);
  if (value.trim() === '' || !Number.isFinite(s) || s < 0 || s * 1000 > MAX_TIMER_MS) {
    throw new UsageError(`--shutdown-timeout must be a number of seconds from 0 to ${Math.floor(MAX_TIMER_MS / 1000)}, got '${value}'`);
  }
  return Math.round(s * 1000);
}

/**
 * Installs the SIGTERM/SIGINT/SIGHUP handlers (call it before starting anything, so a signal
 * during start-up is honoured) and returns the handle. `exit` is for tests of this module.
 * Node's default for SIGHUP ends the process at once (exit 129, no log line, work in flight cut):
 * systemd's `ExecReload=kill -HUP $MAINPID`, a closed terminal or an operator's habit sends it,
 * so it is a graceful stop like SIGTERM, or `reload` where the bin gives one.
 */
export function handleShutdown(opts: {
  log: Logger;
  timeoutMs: number;
  target: ShutdownTarget;
  /**
   * A cluster worker's: SIGINT is left to the primary. A terminal's Ctrl-C reaches the whole
   * process group, and the primary passes it on as its stop request; taken here as well, a
   * request that came first made the worker's own SIGINT look like a second signal, which aborts
   * the work in flight. SIGTERM (the primary's abort, a service manager) is handled as usual, and
   * so is SIGINT while this returns false (the primary is gone: nobody passes Ctrl-C on).
   */
  primaryRelaysSigint?: () => boolean;
  /**
   * A cluster worker's whose primary stops and aborts it by message (hermod run): SIGTERM, while
   * this returns true, is left to the primary too. A service manager's SIGTERM reaches the whole
   * process group (systemd's default KillMode=control-group): taken here as well, the one that
   * came after the primary's stop request aborted the work in flight within milliseconds. A
   * SIGTERM sent to this worker alone starts its graceful stop after {@link RELAY_WAIT_MS} if no
   * request of the primary's came; during a stop it is ignored (the primary's second signal is
   * passed on as an abort message).
   */
  primaryRelaysSigterm?: () => boolean;
  /**
   * What SIGHUP does instead of the graceful stop (`hermod run` reloads its endpoint modules).
   * Not called once a stop has begun: the signal is then logged and ignored, since a reload
   * request is no request to abort.
   */
  reload?: () => void;
  /**
   * How much longer past the deadline the target may take on purpose while it says it is
   * {@link ShutdownTarget.lingering} when the backstop comes (rpc-server: answering polls of the
   * jobs it cancelled at the deadline, see `lingerPastDeadline`). Only then: a stop held up by
   * anything else (a frozen broker) is still ended {@link BACKSTOP_MS} past the deadline. @default 0
   */
  overrunMs?: number;
  exit?: (code: number) => void;
}): Shutdown {
  const { log, timeoutMs, target } = opts;
  const overrunMs = opts.overrunMs ?? 0;
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  let stopping = false;
  /** Set by a second signal: its status wins over whatever the graceful stop reports. */
  let forced: number | undefined;
  /** Set by stop(reason, status): why the service ended, whatever the drain reports. */
  let failure: number | undefined;
  let progress: NodeJS.Timeout | undefined;
  let backstop: NodeJS.Timeout | undefined;
  let relayWait: NodeJS.Timeout | undefined;
  // Nothing of the target's own left: what remains is closing (connections, the broker's answers).
  const waitingFor = () => target.pending() || 'connections to close';
  // Holds the event loop until the stop ends. A server whose transport keeps no socket open
  // (memory://) returned from main and exited 0 right after its serving line; and on Node 24 a
  // SIGTERM that came during that exit found the handlers gone and killed it by the signal.
  const keepAlive = setInterval(() => {}, MAX_TIMER_MS);
  const end = (code: number) => {
    clearInterval(keepAlive);
    clearInterval(progress);
    clearTimeout(backstop);
    clearTimeout(relayWait);
    exit(forced ?? failure ?? code);
  };
  const graceful = (reason: string) => {
    stopping = true;
    const t0 = Date.now();
    const running = target.pending();
    log.info(`${reason}: no new work; ${running ? `finishing ${running}` : 'nothing in flight'} (deadline ${timeoutMs / 1000} s)`);
    progress = setInterval(() => {
      const left = Math.max(0, timeoutMs - (Date.now() - t0)) / 1000;
      log.info(`stopping: waiting for ${waitingFor()} (${left.toFixed(0)} s left)`);
    }, 1000);
    let past = BACKSTOP_MS;
    const giveUp = () => {
      if (past === BACKSTOP_MS && overrunMs > 0 && target.lingering?.()) {
        past += overrunMs;
        backstop = setTimeout(giveUp, overrunMs);
        return;
      }
      const what = target.pending();
      log.warn(`stopping: gave up ${past} ms past the deadline${what ? ` with ${what} not finished` : ' while closing'}`);
      end(what || target.aborted() > 0 ? STOP_EXIT.aborted : STOP_EXIT.clean);
    };
    backstop = setTimeout(giveUp, timeoutMs + BACKSTOP_MS);
    target.graceful(timeoutMs).then(
      (aborted) => {
        if (forced !== undefined) return;
        if (aborted > 0)
          log.warn(`stopped: ${target.abortedText?.(aborted) ?? `aborted ${aborted} piece(s) of work still running at the deadline`}`);
        else log.info('stopped');
        end(aborted > 0 ? STOP_EXIT.aborted : STOP_EXIT.clean);
      },
      (err: Error) => {
        log.error(`stopping failed: ${err.message}`);
        end(STOP_EXIT.aborted);
      },
    );
  };
  const onSignal = (signal: string) => {
    if (!stopping) {
      graceful(signal);
      return;
    }
    // A second signal: whoever sent it wants the process gone, now.
    abortNow(`${signal} again`, 128 + (SIGNAL_NUMBERS[signal as ShutdownSignal] ?? 15));
  };
  const abortNow = (why: string, code: number) => {
    if (forced !== undefined) return;
    stopping = true;
    log.warn(`${why}: aborting ${waitingFor()} and exiting`);
    forced = code;
    const timer = setTimeout(() => end(code), 300);
    target.abort().then(
      () => {
        clearTimeout(timer);
        end(code);
      },
      () => {
        clearTimeout(timer);
        end(code);
      },
    );
  };
  process.on('SIGINT', () => {
    if (opts.primaryRelaysSigint?.()) log.debug('SIGINT: left to the primary, which asks the workers to stop');
    else onSignal('SIGINT');
  });
  process.on('SIGTERM', () => {
    if (!opts.primaryRelaysSigterm?.()) return onSignal('SIGTERM');
    log.debug('SIGTERM: left to the primary, which asks the workers to stop');
    if (stopping) return;
    relayWait ??= setTimeout(() => {
      if (!stopping) graceful('SIGTERM');
    }, RELAY_WAIT_MS);
  });
  process.on('SIGHUP', () => {
    if (!opts.reload) onSignal('SIGHUP');
    else if (stopping) log.info('SIGHUP: stopping already, not reloading');
    else opts.reload();
  });
  // An exception nothing caught (an endpoint's timer that throws, a rejection nobody awaited):
  // Node's default printed a raw stack among the log lines and exited 1 at once, cutting every
  // call in flight with no stop at all. Its state is unknown after one, so it is not resumed (as
  // Node's docs say): one fatal line, then the graceful stop, exiting 1.
  let crashes = 0;
  process.on('uncaughtException', (err: unknown, origin: string) => {
    crashes++;
    try {
      if (crashes <= MAX_CRASH_LINES) {
        const e = err instanceof Error ? err : undefined;
        const text = e ? `${e.name}: ${e.message}` : String(err);
        const what = origin === 'unhandledRejection' ? 'unhandled rejection' : 'uncaught exception';
        log.fatal(
          `${what}: ${text}; ${stopping ? 'stopping already' : 'stopping'} (the process state is unknown after it)`,
          { event: 'uncaught-exception', origin, error: e?.message ?? String(err) },
          e?.stack ?? text,
        );
      } else if (crashes === MAX_CRASH_LINES + 1) log.fatal('more uncaught exceptions; not logged', { event: 'uncaught-exception' });
    } catch {
      // Nothing left to report it with (stderr gone): the stop still runs.
    }
    if (failure === undefined || failure === 0) failure = EXIT.failed;
    if (!stopping) graceful(origin === 'unhandledRejection' ? 'unhandled rejection' : 'uncaught exception');
  });
  const handle: Shutdown = {
    get stopping() {
      return stopping;
    },
    stop(reason: string, status?: number) {
      if (stopping) return;
      failure = status;
      graceful(reason);
    },
    abort(reason: string, status = 128 + 15) {
      abortNow(reason, status);
    },
  };
  onOutputClosed(() => handle.stop('stdout closed'));
  // Signals that came while the bin loaded its modules (see early-signals), acted on now that
  // the handlers are in place; a turn later, so that the bin has begun what it starts after
  // this call, as for a signal that comes during start-up.
  const early = takeStartupSignals();
  if (early.length > 0)
    setImmediate(() => {
      for (const signal of early) {
        if (signal === 'SIGHUP' && opts.reload) {
          // The modules are being loaded for the first time: there is nothing older to replace.
          log.info('SIGHUP during start-up: the endpoint modules are loaded now, nothing to reload');
          continue;
        }
        log.debug(`${signal} came during start-up`);
        process.emit(signal, signal);
      }
    });
  return handle;
}

/** What a one-shot command has open that {@link exitWhenOutputCloses} closes first. */
const openForExit = new Set<{ close(): Promise<void> }>();

/** Registers `closable` (a transport) to be closed before the command exits for a reader that went away; returns it. */
export function closeBeforeExit<T extends { close(): Promise<void> }>(closable: T): T {
  openForExit.add(closable);
  return closable;
}

/**
 * For a one-shot command: when stdout's reader goes away (`| head`, `| true`), closes what
 * {@link closeBeforeExit} registered (within 2 s) and exits 0, as a Unix tool ends. Exiting at
 * once left a call's reply unacknowledged in its reply queue, the connection cut without a close.
 */
export function exitWhenOutputCloses(): void {
  onOutputClosed(() => {
    const timer = setTimeout(() => process.exit(0), 2000);
    void Promise.allSettled([...openForExit].map((c) => c.close())).then(() => {
      clearTimeout(timer);
      process.exit(0);
    });
  });
}

/**
 * Calls `closed` once when stdout fails (its reader went away: `| head`, a closed terminal).
 * Without a listener the failed write was an unhandled 'error' event: a stack trace and exit 1.
 * A failed stderr is ignored: there is nothing left to report it with.
 */
export function onOutputClosed(closed: () => void): void {
  let told = false;
  process.stdout.on('error', () => {
    if (told) return;
    told = true;
    closed();
  });
  process.stderr.on('error', () => {});
}
