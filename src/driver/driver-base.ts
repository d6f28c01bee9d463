import { EventEmitter } from 'node:events';
import type { HermodConfig } from '../config/index.js';
import type { TransportUrl } from '../config/transport-url.js';
import { type ConnectionState, channels, publish } from '../core/diagnostics.js';
import { ClosedError } from '../core/errors.js';
import type { Target } from '../core/target.js';
import type { Listener } from './driver.js';
import { encodeBounded } from './envelope.js';
import { ReplyWaiter } from './reply-waiter.js';

/** A listener a driver tracks so that `close()` can stop it. */
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

  /** Stops listeners, fails pending calls, then lets the driver close its connections. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const l of [...this.listeners_]) await l.stop();
    this.waiter.failAll(new ClosedError('transport closed while waiting for a reply'));
    await this.shutdown();
  }

  /** Closes the driver's own connections; runs once, after listeners stopped. */
  protected abstract shutdown(): Promise<void>;
}
