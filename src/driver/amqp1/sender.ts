import type { Delivery, EventContext, Message, Sender } from 'rhea';
import { MessageDeliveryFailure, MessagingTimeout } from '../../core/errors.js';
import { remoteOutcome } from '../../rhea/index.js';
import type { Amqp1Connection } from './connection.js';
import type { SendFlow } from './flow.js';

/** Delay before resending a message the peer released (no receiver yet). */
const RESEND_DELAY_MS = 50;

/** How one unsettled send ended. */
interface Outcome {
  kind: 'accepted' | 'released' | 'rejected' | 'modified' | 'timeout' | 'lost';
  detail?: string;
}

/** What a {@link MessageSender} sends through. */
export interface SenderLinks {
  /** The presettled (true) or unsettled (false) anonymous sender of the current connection. */
  link(presettled: boolean): Sender | undefined;
}

/**
 * Sends requests and notifications on the connection's anonymous-relay links: presettled ones
 * go and are done; unsettled ones wait for the peer's outcome and are resent on `released` or
 * `modified` until their deadline. Calls in flight are failed when the connection drops.
 */
export class MessageSender {
  private readonly outcomes = new WeakMap<Delivery, (o: Outcome) => void>();
  /** Unsettled sends waiting for their outcome: told when the connection drops. */
  private readonly awaiting = new Set<() => void>();
  /** Calls sent on the current connection: failed promptly when it drops. */
  private readonly inflight = new Map<string, (err: Error) => void>();

  constructor(
    private readonly connection: Amqp1Connection,
    private readonly flow: SendFlow,
    private readonly links: SenderLinks,
  ) {}

  /** Registers a call sent on the current connection; returns the function that forgets it. */
  trackCall(id: string, fail: (err: Error) => void): () => void {
    this.inflight.set(id, fail);
    return () => this.inflight.delete(id);
  }

  /** The connection dropped: calls in flight fail with `err`, unsettled sends resend. */
  connectionLost(err: Error): void {
    for (const fail of [...this.inflight.values()]) fail(err);
    this.inflight.clear();
    for (const lost of [...this.awaiting]) lost();
  }

  /** The peer settled one of our deliveries. */
  onOutcome(ctx: EventContext, kind: 'accepted' | 'released' | 'rejected' | 'modified'): void {
    const d = ctx.delivery!;
    const done = this.outcomes.get(d);
    if (!done) return;
    this.outcomes.delete(d);
    this.flow.settled();
    const error = remoteOutcome(d)?.error;
    done({ kind, ...(error ? { detail: `${error.condition ?? ''} ${error.description ?? ''}`.trim() } : {}) });
  }

  /**
   * Sends one message; unsettled ones resolve on `accepted`. `released`/`modified` (no
   * receiver, or one that vanished) resend after a short pause until the deadline, as oslo
   * does; `rejected` fails with MessageDeliveryFailure.
   */
  async deliver(build: () => Message, presettled: boolean, deadline: number, retry: number, what: string, isCall = false): Promise<void> {
    const sender = () => this.links.link(presettled);
    for (;;) {
      await this.connection.until(() => this.connection.isOpen && sender()?.sendable() === true, deadline, retry, what);
      await this.flow.acquire(deadline, what);
      if (!this.connection.isOpen || sender()?.sendable() !== true) {
        // Lost the connection or the credit while queued for room: go round again.
        this.flow.release();
        continue;
      }
      const message = build();
      if (presettled) {
        try {
          sender()!.send(message);
        } finally {
          this.flow.release();
        }
        return;
      }
      const outcome = await new Promise<Outcome>((resolve) => {
        let d: Delivery;
        try {
          d = sender()!.send(message);
        } finally {
          this.flow.release();
        }
        const timer = setTimeout(() => resolve({ kind: 'timeout' }), Math.max(1, deadline - Date.now()));
        const done = (o: Outcome) => {
          clearTimeout(timer);
          this.awaiting.delete(lost);
          resolve(o);
        };
        const lost = () => {
          if (!this.connection.isOpen) done({ kind: 'lost' });
        };
        this.awaiting.add(lost);
        this.outcomes.set(d, done);
      });
      if (outcome.kind === 'accepted') return;
      if (outcome.kind === 'rejected')
        throw new MessageDeliveryFailure(`${what} was rejected by the peer${outcome.detail ? `: ${outcome.detail}` : ''}`);
      if (outcome.kind === 'timeout') {
        throw new MessagingTimeout(`${what}: no receiver accepted the message before the deadline (address has no consumer?)`);
      }
      // released, modified or connection lost: try again while time allows.
      if (Date.now() + RESEND_DELAY_MS >= deadline) {
        if (isCall) throw new MessagingTimeout(`${what}: nobody is serving it (the router released it until the deadline)`);
        throw new MessageDeliveryFailure(`${what}: the router released it and the deadline passed (no receiver for the address)`);
      }
      await new Promise((r) => setTimeout(r, RESEND_DELAY_MS));
    }
  }
}
