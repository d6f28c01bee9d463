import { EventEmitter } from 'node:events';
import type { HermodConfig } from '../config/index.js';
import type { TransportUrl } from '../config/transport-url.js';
import { type ConnectionState, channels, publish } from '../core/diagnostics.js';
import { ClosedError } from '../core/errors.js';
import type { Target } from '../core/target.js';
import type { Listener } from './driver.js';
import { encodeBounded } from './envelope.js';
import { ReplyWaiter } from './reply-waiter.js';

/**
 * How long a driver waits for a close handshake or a channel operation (cancel, delete) during
 * stop and close before it gives up on the peer and drops the socket: a broker that is stopped,
 * SIGSTOPped or blocked may never answer, and stopping must not wait for it.
 */
export const CLOSE_GRACE_MS = 1000;

/** Resolves with `p`'s outcome, or with `undefined` after `ms`, whichever comes first; never rejects. */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([p.catch(() => undefined), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A listener a driver tracks so that `close()` can close it. */
export interface TrackedListener extends Listener {
  onStop: (() => void) | undefined;
}

/**
 * What every driver shares: the closed flag and its error, the exchange default, size-checked
 * encoding, connection-state events (emitted and published on diagnostics_channel), the reply
 * waiter of its calls and the listeners it must stop on close.
 */
export abstract class DriverBase extends EventEmitter {
  abstract readonly kind: 'memory' | 'rabbit' | 'amqp1';
  protected closed = false;
  protected readonly waiter = new ReplyWaiter();
  private readonly listeners_ = new Set<TrackedListener>();
  private closing: Promise<void> | undefined;

  constructor(
    readonly url: TransportUrl,
    protected readonly config: HermodConfig,
  ) {
    super();
  }

  /** Throws ClosedError once the transport is closed. */
  protected assertOpen(): void {
    if (this.closed) throw new ClosedError('transport is closed');
  }

  /** The target's exchange, or the control exchange (oslo's `control_exchange`). */
  protected exchange(target: Target): string {
    return target.exchange ?? this.config.controlExchange;
  }

  /** JSON within `maxMessageSize`, else MessageTooLarge. */
  protected encode(value: unknown, what: string): string {
    return encodeBounded(value, what, this.config.maxMessageSize);
  }

  /** Largest message accepted or sent, bytes. */
  get maxMessageSize(): number {
    return this.config.maxMessageSize;
  }

  /** Emits `state` and publishes it on `hermod:connection:state`. */
  protected setState(s: ConnectionState, extra: Record<string, unknown> = {}): void {
    this.emit('state', s);
    publish(channels.connection, () => ({ ...s, driver: this.kind, ...extra }));
  }

  /** Tracks a listener until it stops. */
  protected track<L extends TrackedListener>(listener: L): L {
    this.listeners_.add(listener);
    listener.onStop = () => this.listeners_.delete(listener);
    return listener;
  }

  /** Forgets a listener that never got going (its subscription failed or was aborted). */
  protected untrack(listener: TrackedListener): void {
    this.listeners_.delete(listener);
  }

  /**
   * Closes listeners (all at once, each bounded), fails pending calls, then lets the driver close
   * its connections. Never waits for a reconnect.
   */
  close(): Promise<void> {
    // Every caller waits for the one close under way.
    this.closing ??= (async () => {
      this.closed = true;
      await Promise.all([...this.listeners_].map((l) => l.close()));
      this.waiter.failAll(new ClosedError('transport closed while waiting for a reply'));
      await this.shutdown();
    })();
    return this.closing;
  }

  /** Closes the driver's own connections; runs once, after listeners stopped. */
  protected abstract shutdown(): Promise<void>;
}

/**
 * `p`, or a ClosedError as soon as `signal` aborts. A subscription that arrives after that is the
 * caller's to close ({@link closeLateSubscription}), after the work it delivered meanwhile settled:
 * closed here at once, it took the acknowledgements of messages handled during start() with it,
 * and they were delivered again.
 */
export async function untilAborted(p: Promise<Listener>, signal: AbortSignal): Promise<Listener> {
  if (signal.aborted) throw new ClosedError('stopped before the subscription was made');
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(new ClosedError('stopped before the subscription was made'));
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([p, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort!);
  }
}

/**
 * Closes a subscription that a stop during start() gave up waiting for, once what it delivered
 * meanwhile has settled (the caller's wait() calls this after its drain). Waits for it at most
 * `graceMs`: one still dialing is closed whenever it arrives, as nothing was delivered on it.
 */
export async function closeLateSubscription(late: Promise<Listener | undefined>, graceMs: number): Promise<void> {
  if (graceMs <= 0) {
    void late.then((l) => l?.close()).catch(() => {});
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const arrived = await Promise.race([
    late,
    new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), graceMs);
    }),
  ]);
  clearTimeout(timer);
  if (arrived === 'late') void late.then((l) => l?.close()).catch(() => {});
  else await arrived?.close();
}

/**
 * A subscription a stop during start() got: closed now when `closeNow` (nothing came through it,
 * or its owner's wait() is past its close), else stopped (no more deliveries; their
 * acknowledgements still go) and returned for wait() to close after the drain. Closed at once,
 * what it had delivered was delivered again.
 */
export async function settleStoppedSubscription(l: Listener, closeNow: boolean): Promise<Listener | undefined> {
  if (closeNow) {
    await l.close();
    return undefined;
  }
  await l.stop();
  return l;
}
