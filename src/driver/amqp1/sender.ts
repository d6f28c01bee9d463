import type { Delivery, EventContext, Message, Sender } from 'rhea';
import { ClosedError, MessageDeliveryFailure, MessageUndeliverable, MessagingTimeout } from '../../core/errors.js';
import { SlotList, SlotMap } from '../../core/slot-map.js';
import { forgetSent, presettledWritten, remoteOutcome } from '../../rhea/index.js';
import type { Amqp1Connection } from './connection.js';
import type { SendFlow } from './flow.js';

/** Presettled deliveries tracked before the written ones are dropped from the set. */
const UNWRITTEN_PRUNE_AT = 256;

/** Delay before the first resend of a message the peer released (no receiver yet). */
const RESEND_DELAY_MS = 50;
/**
 * The delay doubles with each hand-back of one message, up to this. At a steady 50 ms a cast
 * to a topic nobody serves went to the router and back about 1,100 times over a 60 s timeout
 * (2.2 s of the client's CPU), and every notification to a topic without listeners alike;
 * oslo's amqp1 driver waits `link_retry_delay` (10 s) between resends. A receiver that comes
 * up meanwhile gets the message at most this much later.
 */
const RESEND_MAX_DELAY_MS = 1000;

/** How one unsettled send ended. */
interface Outcome {
  kind: 'accepted' | 'released' | 'rejected' | 'modified' | 'timeout' | 'lost' | 'abandoned';
  detail?: string;
}

/** How far one send got, for its caller to word a timeout. */
export interface SendProgress {
  /** The router handed an attempt back (released, modified) and no later one was accepted yet. */
  handedBack: boolean;
  /**
   * The latest attempt went down with the connection, unsettled: the router may have taken it
   * before the drop, so a deadline after that must not say that nobody took it.
   */
  lost?: boolean;
  /** An attempt was handed to rhea: the request left, or is leaving, this process. */
  sent?: boolean;
}

/**
 * Tells a call's request delivery to stop waiting for its outcome (the reply or failure came).
 * A plain object instead of an AbortController: Node builds an EventTarget per controller
 * (with three hidden-class transitions each) and dispatches an event on abort, for one
 * listener that this calls directly.
 */
export class Abandon {
  aborted = false;
  /** Set by abort(true): the call failed, and its request's slot in the session buffer goes (see forgetSent). */
  forget = false;
  /** Called once, on the first abort. */
  onAbort: (() => void) | undefined = undefined;

  abort(forget = false): void {
    if (this.aborted) return;
    this.aborted = true;
    this.forget = forget;
    const f = this.onAbort;
    this.onAbort = undefined;
    f?.();
  }
}

/** Where an unsettled delivery keeps the callback its outcome settles. */
const OUTCOME = Symbol('hermod.outcome');
type OutcomeHolder = Delivery & { [OUTCOME]?: ((o: Outcome) => void) | undefined };

/** What a {@link MessageSender} sends through. */
export interface SenderLinks {
  /** The presettled (true) or unsettled (false) anonymous sender of the current connection. */
  link(presettled: boolean): Sender | undefined;
}

/**
 * Sends requests and notifications on the connection's anonymous-relay links: presettled ones
 * go and are done (kept until rhea has written them, for {@link flushed}); unsettled ones wait
 * for the peer's outcome and are resent on `released` or `modified` until their deadline. Calls
 * in flight are failed when the connection drops.
 */
export class MessageSender {
  /*
   * Per-call bookkeeping is kept where V8 can drop it at once: the outcome callback on the
   * delivery itself, the rest in slot tables. Maps, Sets and WeakMaps that take and drop an
   * entry per message keep every value they held reachable for the scavenger until a full GC
   * (see SlotMap), which promoted each call's promise chain.
   */
  /** Unsettled sends waiting for their outcome: told when the connection drops. */
  private readonly awaiting = new SlotList<() => void>();
  /** Calls sent on the current connection: failed promptly when it drops. */
  private readonly inflight = new SlotMap<string, (err: Error) => void>();
  /** Presettled deliveries handed to rhea and perhaps not yet written. */
  private readonly unwritten = new Set<Delivery>();
  /** The transport is closing: a released message is not resent (nobody would wait for it). */
  closing = false;

  constructor(
    private readonly connection: Amqp1Connection,
    private readonly flow: SendFlow,
    private readonly links: SenderLinks,
  ) {}

  /** Registers a call sent on the current connection; returns the function that forgets it. */
  trackCall(id: string, fail: (err: Error) => void): () => void {
    this.inflight.set(id, fail);
    return () => {
      this.inflight.delete(id);
    };
  }

  /** The connection dropped: calls in flight fail with `err`, unsettled sends resend. */
  connectionLost(err: Error): void {
    for (const [id, fail] of this.inflight.entries()) {
      this.inflight.delete(id);
      fail(err);
    }
    this.unwritten.clear();
    for (const lost of this.awaiting.values()) lost();
  }

  /** Every presettled message handed to rhea has been written to the socket. */
  flushed(): boolean {
    for (const d of this.unwritten) {
      if (!presettledWritten(d)) return false;
      this.unwritten.delete(d);
    }
    return true;
  }

  /** The peer settled one of our deliveries. */
  onOutcome(ctx: EventContext, kind: 'accepted' | 'released' | 'rejected' | 'modified'): void {
    const d = ctx.delivery!;
    this.flow.settled();
    const done = (d as OutcomeHolder)[OUTCOME];
    if (!done) return;
    (d as OutcomeHolder)[OUTCOME] = undefined;
    const error = remoteOutcome(d)?.error;
    done({ kind, ...(error ? { detail: `${error.condition ?? ''} ${error.description ?? ''}`.trim() } : {}) });
  }

  /**
   * Sends one message; unsettled ones resolve on `accepted`. `released`/`modified` (no
   * receiver, or one that vanished) resend after a pause (50 ms, doubling to 1 s) until the
   * deadline, as oslo does (after its `link_retry_delay`); `rejected` fails with MessageDeliveryFailure. A call's request is abandoned (no
   * resend, no error) once `abandon` is aborted: its caller already has its answer or failure.
   */
  async deliver(
    build: () => Message,
    presettled: boolean,
    deadline: number,
    retry: number,
    what: string,
    isCall = false,
    abandon?: Abandon,
    progress: SendProgress = { handedBack: false },
  ): Promise<void> {
    const sender = () => this.links.link(presettled);
    let resendDelay = RESEND_DELAY_MS;
    for (;;) {
      try {
        await this.connection.until(
          () => abandon?.aborted === true || (this.connection.isOpen && sender()?.sendable() === true),
          deadline,
          retry,
          what,
        );
        if (abandon?.aborted) return;
        if (!(await this.flow.acquire(deadline, what, abandon))) return;
      } catch (err) {
        // The deadline came while waiting to resend: say what happened to the message.
        if (err instanceof MessagingTimeout && progress.handedBack) throw this.nobodyTook(what, isCall, progress);
        throw err;
      }
      if (abandon?.aborted) {
        this.flow.release();
        return;
      }
      if (!this.connection.isOpen || sender()?.sendable() !== true) {
        // Lost the connection or the credit while queued for room: go round again.
        this.flow.release();
        continue;
      }
      const message = build();
      if (presettled) {
        try {
          this.unwritten.add(sender()!.send(message));
          progress.sent = true;
          // Written ones leave in order: pruning the written head keeps the set to what is
          // still in rhea's buffers (a long-running caster of presettled casts grew it forever).
          if (this.unwritten.size > UNWRITTEN_PRUNE_AT) this.flushed();
        } finally {
          this.flow.release();
        }
        return;
      }
      let sent: Delivery | undefined;
      const outcome = await new Promise<Outcome>((resolve) => {
        let d: Delivery;
        try {
          d = sender()!.send(message);
          sent = d;
          progress.sent = true;
        } finally {
          this.flow.release();
        }
        const timer = setTimeout(() => resolve({ kind: 'timeout' }), Math.max(1, deadline - Date.now()));
        const done = (o: Outcome) => {
          clearTimeout(timer);
          this.awaiting.remove(slot);
          if (abandon) abandon.onAbort = undefined;
          resolve(o);
        };
        const lost = () => {
          if (!this.connection.isOpen) done({ kind: 'lost' });
        };
        // The outcome may never come (a server that never settles): stop waiting for it.
        if (abandon)
          abandon.onAbort = () => {
            (d as OutcomeHolder)[OUTCOME] = undefined;
            // A call that failed (timeout, call monitor) waits for nothing more from its request; one
            // answered is left alone (its settlement is on its way, and costs no frame of ours).
            if (abandon.forget && this.connection.isOpen) forgetSent(d);
            done({ kind: 'abandoned' });
          };
        const slot = this.awaiting.add(lost);
        (d as OutcomeHolder)[OUTCOME] = done;
      });
      if (outcome.kind === 'accepted') progress.handedBack = false;
      if (outcome.kind === 'accepted' || outcome.kind === 'abandoned') return;
      if (outcome.kind === 'rejected')
        throw new MessageDeliveryFailure(`${what} was rejected by the peer${outcome.detail ? `: ${outcome.detail}` : ''}`);
      if (outcome.kind === 'timeout') {
        // Its outcome will not be waited for any more: its slot in the session buffer goes.
        if (sent && this.connection.isOpen) forgetSent(sent);
        if (progress.handedBack) throw this.nobodyTook(what, isCall, progress);
        // The router holds a message for receivers that are busy (no credit) and does not withdraw
        // it: it may still be delivered and run. Said so, since a caller that retries on this
        // error runs the work twice; "no consumer?" sent people looking for a server that was there.
        throw new MessagingTimeout(
          `${what}: not settled before the deadline; its delivery is unknown: it may still reach a receiver (the router holds messages for busy ones) or none may exist`,
        );
      }
      progress.handedBack = true;
      progress.lost = outcome.kind === 'lost';
      // released, modified or connection lost: try again while time allows.
      if (this.closing && !isCall) {
        // Written and never settled: the router may have delivered it (a busy receiver runs it
        // later), so it is not a delivery failure, which a caller would take as "resend it".
        if (outcome.kind === 'lost')
          throw new ClosedError(
            `${what}: the transport closed before its outcome came; its delivery is unknown: it may still reach a receiver (the router holds messages for busy ones); not resent`,
          );
        throw new MessageDeliveryFailure(`${what}: the router ${outcome.kind} it while the transport was closing; not resent`);
      }
      // The last resend leaves a first delay's worth of time before the deadline for its outcome.
      const pause = Math.min(resendDelay, deadline - Date.now() - RESEND_DELAY_MS);
      if (pause < 0) throw this.nobodyTook(what, isCall, progress);
      await new Promise((r) => setTimeout(r, pause));
      // A connection lost is no sign that nobody receives: only hand-backs slow the resends.
      if (outcome.kind !== 'lost') resendDelay = Math.min(2 * resendDelay, RESEND_MAX_DELAY_MS);
    }
  }

  /** The error of a send the router kept handing back until its deadline. */
  nobodyTook(what: string, isCall: boolean, progress?: SendProgress): Error {
    if (progress?.lost)
      return new MessagingTimeout(
        `${what}: the connection dropped before the router settled it and it could not be sent again before the deadline; its delivery is unknown (the router may have taken it before the drop)`,
      );
    if (isCall) return new MessagingTimeout(`${what}: nobody is serving it (the router released it until the deadline)`);
    // Nobody receives it, as a RabbitMQ cast no queue is bound for: the same error (exit 3 in the
    // CLIs, 503 at the gateway), still a MessageDeliveryFailure.
    return new MessageUndeliverable(`${what}: the router released it and the deadline passed (no receiver for the address)`);
  }
}
