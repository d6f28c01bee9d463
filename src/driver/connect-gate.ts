import { ClosedError, MessagingTimeout, TransportError } from '../core/errors.js';

/** What a {@link ConnectGate} needs to know about its connection at each check. */
export interface GateStatus {
  /** The transport was closed: waiting is over for good. */
  closed: boolean;
  /** A connection is open now. */
  connected: boolean;
  /** Failed connect attempts since the last success. */
  failedAttempts: number;
  /** Failed connect attempts since the connection was made: never goes down, so a waiter can count those of its own wait. */
  failuresEver: number;
  /**
   * Retrying cannot help: the broker refused the login, vhost or certificate, or speaks another
   * protocol. `true` fails waiters with a TransportError; a function gives the error to fail
   * them with (an AccessRefused, a WrongProtocol), given what the waiter waits for.
   */
  refused: boolean | ((what: string) => Error);
  /** "cannot connect to …: why", for errors. */
  problem: string;
}

/**
 * Where sends and subscriptions wait for their connection (and for whatever else they need:
 * a channel, a reply address, credit). Waiters sleep until {@link wake} or their deadline; each
 * wake re-checks, so the first waiter after a reconnect goes at once. Fails with ClosedError
 * after close, TransportError when the retry budget is spent or the broker refused the login,
 * and at the deadline with TransportError (still not connected) or MessagingTimeout.
 */
export class ConnectGate {
  private readonly waiters = new Set<() => void>();

  /**
   * `hurry(attempts)`, when given, asks the connection for its next attempt no later than the
   * backoff after `attempts` failed ones from now (it may try sooner, never later). A waiter with
   * a retry budget calls it on arrival and after each failure of its own: oslo's sends reconnect on a backoff of their
   * own, started afresh for each send, where waiting out the connection's (grown to
   * `intervalMax` in a long outage) made a `retry=2` send take up to a minute instead of seconds.
   */
  constructor(
    private readonly status: () => GateStatus,
    private readonly hurry?: (attempts: number) => void,
  ) {}

  /** Wakes every waiter to re-check (connected, lost, closed, credit arrived). */
  wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /**
   * Resolves once `ready()` holds. `retry` counts failed connect attempts (-1: no limit), this
   * waiter's own: those that fail while it waits, and the failure that left the connection waiting
   * when it came (its first try, in effect). oslo's sends each reconnect with their own
   * `max_retries`; a count of the connection's failures since its last success instead failed
   * every send with a small `retry` at once, without a try of its own, once an outage had lasted
   * that many attempts. `pollMs` bounds each sleep for conditions nobody wakes the gate for.
   */
  async until(ready: () => boolean, deadline: number, retry: number, what: string, pollMs = Infinity): Promise<void> {
    const started = Date.now();
    let base: number | undefined;
    let hurried = -1;
    while (!ready()) {
      const s = this.status();
      if (s.closed) return failSoon(new ClosedError('transport is closed'));
      base ??= s.failuresEver - (!s.connected && s.failedAttempts > 0 ? 1 : 0);
      if (!s.connected) {
        if (typeof s.refused === 'function') return failSoon(s.refused(what));
        if (s.refused)
          return failSoon(new TransportError(`${s.problem} (the broker refused the login or vhost; not retrying for ${what})`));
        const own = s.failuresEver - base;
        if (retry >= 0 && own > retry) {
          return failSoon(
            Object.assign(new TransportError(`${s.problem} (gave up after ${own} attempt${own === 1 ? '' : 's'}, retry=${retry})`), {
              gaveUp: true,
            }),
          );
        }
        // Only a send with a budget: its tries must happen for `retry` to mean anything. Sends
        // without one (the default) wait on the connection's backoff, which spares a recovering
        // broker: hurried by every send, steady traffic kept each client trying about once a
        // second for a whole outage.
        if (retry >= 0 && own !== hurried) {
          hurried = own;
          this.hurry?.(own);
        }
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        if (!s.connected) {
          // How long it waited: a timeout given in the wrong unit (`rpc.responseTimeout=8`, meant
          // as seconds, is 8 ms) shows at once.
          const after = `${what} timed out after ${waited(started)}`;
          // No attempt failed: "cannot connect" would blame a broker that may be fine.
          const text =
            s.failedAttempts === 0
              ? `${s.problem.replace(/^cannot connect to/, 'not connected to')} yet: the attempt under way had not failed when ${after}`
              : `${s.problem} (still trying when ${after})`;
          throw Object.assign(new TransportError(text), { stillConnecting: s.failedAttempts === 0 });
        }
        throw new MessagingTimeout(`timed out waiting to send ${what} (after ${waited(started)})`);
      }
      await this.sleep(Math.min(left, pollMs));
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        this.waiters.delete(done);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }
}

/** Time since `started`, for an error: `8 ms`, `2.5 s`. */
function waited(started: number): string {
  const ms = Date.now() - started;
  return ms < 1000 ? `${ms} ms` : `${Number((ms / 1000).toFixed(1))} s`;
}

/**
 * Rejects with `err` after the event loop's next turn. These failures answer every send at once
 * and for good: a caller that retried at once never gave timers or I/O a turn (325,000 calls
 * refused in 6 s held a 100 ms interval back by 4.5 s).
 */
async function failSoon(err: Error): Promise<never> {
  await new Promise((resolve) => setImmediate(resolve));
  throw err;
}
