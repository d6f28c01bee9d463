/**
 * Signals that come while a long-running CLI is still loading its modules.
 *
 * Node's default for SIGHUP, SIGINT and SIGTERM ends the process at once. A CLI loads its
 * modules for 100–150 ms before {@link handleShutdown} installs its handlers, and a signal in
 * that window (systemd's `ExecReload=kill -HUP` right after a start, a deploy that stops what it
 * just started) ended it with 129, 130 or 143 and no log line. Each long-running bin is a small
 * entry that calls {@link holdStartupSignals} first and only then imports its main module, whose
 * `handleShutdown` takes the held signals over with {@link takeStartupSignals} and acts on each.
 *
 * This module imports nothing: the entry's static imports are loaded before any of its code runs.
 */

/** The signals {@link handleShutdown} handles. */
export const SHUTDOWN_SIGNALS = ['SIGHUP', 'SIGINT', 'SIGTERM'] as const;

/** One of {@link SHUTDOWN_SIGNALS}. */
export type ShutdownSignal = (typeof SHUTDOWN_SIGNALS)[number];

const held: ShutdownSignal[] = [];
let holding = false;
/** Their numbers: a process ended by one exits 128 + it. */
export const SIGNAL_NUMBERS: Record<ShutdownSignal, number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

/** Set while {@link quitOnStopWhile} runs: a stop signal then ends the process at once. */
let quitOnStop: ((signal: ShutdownSignal) => void) | undefined;

function hold(signal: NodeJS.Signals): void {
  const s = signal as ShutdownSignal;
  if (s !== 'SIGHUP' && quitOnStop) {
    quitOnStop(s);
    return;
  }
  // A second stop request while the command still loads (an endpoint module whose top level
  // never settles, a worker waiting for its primary): whoever sent it wants the process gone,
  // as a second signal during a graceful stop aborts it. Held, it was never acted on.
  if (s !== 'SIGHUP' && held.some((h) => h !== 'SIGHUP')) process.exit(128 + SIGNAL_NUMBERS[s]);
  if (!held.includes(s)) held.push(s);
}

/** Keeps SIGHUP, SIGINT and SIGTERM from ending the process until {@link takeStartupSignals}. */
export function holdStartupSignals(): void {
  if (holding) return;
  holding = true;
  for (const s of SHUTDOWN_SIGNALS) process.on(s, hold);
}

/**
 * Runs `work` (the user's modules loading, before anything serves) with SIGINT and SIGTERM
 * calling `quit`, which should log and exit, instead of being held: nothing is started yet, so
 * there is nothing to finish. Held, a stop waited for the load, up to its 30 s bound for a top
 * level that never settles, where Node's default had ended the process at once. A stop signal
 * held before this call is acted on so at once. SIGHUP stays held (a reload before the first
 * load has nothing to replace). Without holding (the bin's entry did not hold), `work` as is.
 */
export async function quitOnStopWhile<T>(work: Promise<T>, quit: (signal: ShutdownSignal) => void): Promise<T> {
  if (!holding) return work;
  const early = held.find((h) => h !== 'SIGHUP');
  if (early) quit(early);
  quitOnStop = quit;
  try {
    return await work;
  } finally {
    quitOnStop = undefined;
  }
}

/**
 * Stops holding and returns the signals that came meanwhile, in order. Call it once the real
 * handlers are installed, so that no signal finds the process without one.
 */
export function takeStartupSignals(): ShutdownSignal[] {
  if (!holding) return [];
  holding = false;
  for (const s of SHUTDOWN_SIGNALS) process.off(s, hold);
  return held.splice(0);
}

/**
 * For a command that installs no signal handlers of its own (`hermod status`, `hermod-router
 * passwd`): Node's defaults again, and a signal held meanwhile ends the process as Node's default
 * would have. Left held, those commands ignored SIGINT, SIGTERM and SIGHUP for good.
 */
export function releaseStartupSignals(): void {
  const early = takeStartupSignals();
  if (early.length > 0) process.kill(process.pid, early[0]!);
}
