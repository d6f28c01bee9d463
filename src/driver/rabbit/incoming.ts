import type { ConsumeMessage } from 'amqplib';
import type { Context } from '../../core/serializer.js';
import type { IncomingMessage, Reply } from '../driver.js';
import type { DedupRing } from './dedup.js';
import type { TickAcks } from './tick-acks.js';
import type { IncomingDict, ReplyAddress, ReplyContent } from './wire.js';

/** Publishes a reply (or heartbeat) to a caller's reply queue. */
export type ReplySender = (to: ReplyAddress, reply: ReplyContent) => Promise<void>;

/** What the messages of one consuming channel share. */
export interface IncomingHost {
  /** The channel the deliveries came on closed: the broker delivers them again, elsewhere or later. */
  dead: boolean;
  readonly acks: TickAcks;
  readonly dedup: DedupRing;
  readonly reply: ReplySender;
  /** Reports a copy of a message already received, dropped. */
  readonly duplicate: (uniqueId: unknown) => void;
}

/**
 * One delivery handed to a server or listener. A class, not an object literal of closures: a
 * busy server makes one per request, and six closures each were garbage the collector paid for.
 */
export class RabbitIncoming implements IncomingMessage {
  readonly ctx: Context;
  readonly message: Record<string, unknown>;
  readonly expectsReply: boolean;
  readonly callMonitorTimeout: number;
  /** A call request's per-message expiration in ms, as published (see {@link expiresAt}). */
  readonly ttl: number | undefined;
  /**
   * When `ttl` runs out counted from this delivery. RabbitMQ drops an expired request only while it
   * is queued: one delivered into the prefetch window waits in the server behind its concurrency
   * (a consumer on each of the topic, server and fanout queues), where nothing dropped it. The
   * broker delivers the expiration as published, not what is left of it, so the whole of it is
   * counted again from here: a request may still run late, never early.
   */
  readonly expiresAt: number | undefined;

  /**
   * The delivery, until it is settled. A server holds its request until the broker confirms the
   * reply, a round trip later; dropping the delivery (its frames, properties and content) when
   * it is acknowledged keeps those out of the old generation. They were most of what a busy
   * server promoted per call.
   */
  private msg: ConsumeMessage | undefined;
  /** `_unique_id`, until it is recorded on acknowledge. */
  private uniqueId: unknown;

  constructor(
    private readonly host: IncomingHost,
    msg: ConsumeMessage,
    parts: IncomingDict,
    /** Undefined for a cast, and for anything a notification listener receives. */
    private readonly to: ReplyAddress | undefined,
    /**
     * The broker delivers it again when its channel dies (a queue requeues; a stream does not:
     * its consumer resumes past the last offset delivered, so a stream message is run anyway).
     */
    private readonly redelivered = true,
  ) {
    this.msg = msg;
    this.uniqueId = parts.uniqueId;
    this.ctx = parts.ctx;
    this.message = parts.message;
    this.expectsReply = to !== undefined;
    this.callMonitorTimeout = to ? parts.callMonitorTimeout : 0;
    const expiration: unknown = msg.properties.expiration;
    // Whole milliseconds as decimal digits (RabbitMQ refuses anything else at publish).
    if (to && typeof expiration === 'string' && /^[1-9]\d{0,9}$/.test(expiration)) {
      this.ttl = Number(expiration);
      this.expiresAt = performance.now() + this.ttl;
    } else {
      this.ttl = undefined;
      this.expiresAt = undefined;
    }
  }

  reply(r: Reply): Promise<void> {
    if (!this.to) return Promise.resolve();
    const content: ReplyContent = { ending: true, result: r.result ?? null, failure: r.failure ?? null };
    if (r.job) content.job = true;
    return this.host.reply(this.to, content);
  }

  heartbeat(): Promise<void> {
    if (!this.to) return Promise.resolve();
    return this.host.reply(this.to, { ending: false, result: null, failure: null });
  }

  acknowledge(): boolean {
    // Its channel is gone, so the broker has requeued it and delivers it again (not from a
    // stream): this copy, still waiting in the server for a slot, must not run as well (oslo discards a request whose
    // acknowledgement fails). A copy of a request another copy already started is dropped too.
    const dead = this.host.dead;
    if (dead && this.redelivered) {
      this.msg = undefined;
      this.uniqueId = undefined;
      return false;
    }
    if (this.host.dedup.seen(this.uniqueId)) {
      // Not a second acknowledge() of this copy: that has nothing left to report.
      if (this.msg) this.host.duplicate(this.uniqueId);
      if (!dead) this.settle(true);
      this.msg = undefined;
      this.uniqueId = undefined;
      return false;
    }
    // Recorded on acknowledge, as oslo does: a requeued message is no duplicate when it returns.
    this.host.dedup.add(this.uniqueId);
    this.settle(true);
    return true;
  }

  stale(): boolean {
    return this.host.dead && this.redelivered;
  }

  requeue(): void {
    // A stream takes nothing back: RabbitMQ answers a nack or reject on a stream queue by closing
    // the whole connection (540 NOT_IMPLEMENTED), and every consumer on it with it. A stream
    // delivery (a fanout of rabbit.streamFanout) that a starting or stopping server hands back is
    // acknowledged instead: its offset is passed, as a classic fanout queue's messages go with the
    // queue that is deleted at stop.
    this.settle(!this.redelivered);
  }

  done(): void {}

  private settle(ack: boolean): void {
    const msg = this.msg;
    if (!msg) return;
    this.msg = undefined;
    this.uniqueId = undefined;
    try {
      if (ack) this.host.acks.ack(msg);
      else this.host.acks.requeue(msg);
    } catch {
      /* channel gone: the broker requeues it */
    }
  }
}
