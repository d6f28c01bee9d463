import type { Channel, ChannelModel, ConsumeMessage, Options } from 'amqplib';
import { within } from '../driver-base.js';
import type { ReplyWaiter } from '../reply-waiter.js';
import { compressionOf } from './compression.js';
import type { RabbitConnection } from './connection.js';
import { declaring } from './declare-errors.js';
import { ReplyDispatch, type ReplyLimits } from './reply-dispatch.js';

/** Longest a received reply waits for its acknowledgement when no request follows it. */
const REPLY_ACK_DELAY_MS = 20;

/**
 * The caller's `reply_<uuid>` queue (`reply_<host>:<process>:<n>` with the queue manager): declared and consumed on the first call and again on every
 * reconnect. Replies are routed to the waiting calls by `_msg_id`, duplicates dropped by
 * `_unique_id`, heartbeats (`ending: false`) restart the call monitor, and old-style partial
 * replies (result first, `ending` later) are joined.
 */
export class ReplyQueue {
  /** A call has needed the queue: the setup hook declares it on every reconnect from then on. */
  private wanted = false;
  private ready: Promise<void> | undefined;
  /** Declared and consumed once: later calls need not wait (a reconnect declares it again in setup()). */
  private declared = false;
  /** The connection the consumer was set up on. */
  private model: ChannelModel | undefined;
  private readonly dispatch: ReplyDispatch;
  /** The last reply not yet acknowledged, and its channel (see {@link flushAcks}). */
  private lastReply: ConsumeMessage | undefined;
  private ackChannel: Channel | undefined;
  private ackTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly name: string,
    private readonly conn: RabbitConnection,
    private readonly waiter: ReplyWaiter,
    private readonly options: Options.AssertQueue,
    limits: ReplyLimits,
    /**
     * `rabbit.replyAcks`. Without acknowledgements the broker drops each reply as it sends it
     * instead of keeping it until the ack: 4–18 µs less broker CPU per call at 64 in flight on
     * the bench machine (seven pairs). The price is a reply already on a connection that
     * drops: with acks the broker sends it again after the reconnect, without them it is gone.
     */
    private readonly acks = true,
  ) {
    this.dispatch = new ReplyDispatch(waiter, limits);
  }

  /** Setup hook: re-declares and consumes the queue on a reconnect, once a call has used it. */
  async setup(model: ChannelModel): Promise<void> {
    if (this.wanted) await this.consume(model);
  }

  /** Declares and consumes the queue if not yet done; waits for the connection within the call's budget. */
  ensure(deadline: number, retry: number, what: string): Promise<void> | undefined {
    if (this.declared) return undefined;
    if (this.ready) return this.ready;
    this.wanted = true;
    const ready = (async () => {
      const model = await this.conn.ready(deadline, retry, what);
      await this.consume(model);
    })();
    this.ready = ready;
    ready.then(
      () => {
        if (this.ready === ready) this.declared = true;
      },
      () => {
        this.ready = undefined;
        this.wanted = false;
      },
    );
    return ready;
  }

  /** The request of call `msgId` has been published. */
  sent(msgId: string, _replyTo: string, seq: number, sentTo: string, sentKey: string): void {
    // The calls published naming this queue are the ones a lost queue leaves without a reply.
    this.waiter.published(msgId, this, seq, sentTo, sentKey);
  }

  /** Drops what is kept for a call that has ended. */
  forget(msgId: string): void {
    this.dispatch.forget(msgId);
  }

  private async consume(model: ChannelModel): Promise<void> {
    // The reconnect hook and the first call may both get here for one connection.
    if (this.model === model) return;
    this.model = model;
    const ch = await model.createChannel();
    ch.on('error', () => {});
    // Closed by the broker, the connection up (an acknowledgement it did not know, a declare
    // refused): no reply would arrive again. A turn later, as a connection loss closes the
    // channels first (see RabbitListener).
    ch.once('close', () =>
      setImmediate(() => {
        if (this.model === model) this.conn.recycle(model);
      }),
    );
    await declaring(() => ch.assertQueue(this.name, this.options));
    await this.subscribe(model, ch);
  }

  private async subscribe(model: ChannelModel, ch: Channel): Promise<void> {
    await ch.consume(
      this.name,
      (msg) => {
        if (!msg) {
          void this.cancelled(model, ch);
          return;
        }
        if (this.acks) {
          this.ackChannel = ch;
          this.lastReply = msg;
          if (!this.ackTimer) {
            this.ackTimer = setTimeout(() => {
              this.ackTimer = undefined;
              this.flushAcks();
            }, REPLY_ACK_DELAY_MS);
            this.ackTimer.unref();
          }
        }
        this.dispatch.onReply(msg.content, compressionOf(msg.properties.headers));
      },
      { noAck: !this.acks },
    );
  }

  /**
   * Acknowledges every reply received so far in one frame (`multiple`). The driver calls it
   * right before it publishes a request, so the acknowledgement leaves in the same write as the
   * request; a timer sends it when no request follows. A gateway answering one HTTP request at
   * a time saved a socket write per request (the ack used to leave alone, a tick after the reply).
   */
  flushAcks(): void {
    const msg = this.lastReply;
    if (!msg) return;
    this.lastReply = undefined;
    try {
      this.ackChannel?.ack(msg, true);
    } catch {
      /* channel gone: the broker requeues what was not acknowledged */
    }
  }

  /**
   * At close: acknowledges the replies received and closes their channel, whose close-ok the
   * broker sends after the acknowledgement. amqplib writes channel frames through its muxer a
   * turn later, while a connection.close goes straight to the socket: closing the connection
   * right after flushAcks() left the last reply unacknowledged, in the queue for good (an
   * oslo-style reply queue outlives its consumer until it expires, and with the queue manager
   * the next process of that name reads the stale reply). The listeners close so for the same
   * reason.
   */
  async settle(graceMs: number): Promise<void> {
    if (this.ackTimer) {
      clearTimeout(this.ackTimer);
      this.ackTimer = undefined;
    }
    const ch = this.lastReply ? this.ackChannel : undefined;
    this.flushAcks();
    if (!ch) return;
    // Our close, not the broker's: the channel's close handler must not recycle the connection.
    this.model = undefined;
    await within(
      ch.close().catch(() => {}),
      graceMs,
    );
  }

  /**
   * The broker cancelled the consumer: the queue was deleted (an operator, a policy) or moved.
   * It is declared and consumed again under its name (oslo reconnects after a Basic.cancel);
   * before, every later call timed out too, until the process restarted. The calls in flight
   * keep waiting, as after a broker restart that lost the queue: a reply sent while the queue
   * was gone is returned to its server, which sends it again until the queue is back (hermod's
   * and oslo's servers, for up to `rpc.responseTimeout`). Only a reply already in the deleted
   * queue is lost, and its call ends at its timeout (or call-monitor timeout), as oslo's caller's
   * does. Failing every call in flight at once (as until 2026-12) gave a TransportError, read as
   * "safe to retry", to calls that had run or were running and whose replies were still to come.
   */
  private async cancelled(model: ChannelModel, ch: Channel): Promise<void> {
    if (this.model !== model) return;
    try {
      await declaring(() => ch.assertQueue(this.name, this.options));
      await this.subscribe(model, ch);
    } catch {
      // The channel went (a declare refused): its close handler has the connection made anew.
    }
  }
}
