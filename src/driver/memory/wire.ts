import type { Context } from '../../core/serializer.js';
import type { Reply } from '../driver.js';

/**
 * What travels through the in-process broker, as JSON strings so that a memory transport has
 * the same serialisation limits as a real one. Not oslo's wire format: nothing outside the
 * process ever reads it.
 */
export interface RequestBody {
  ctx: Context;
  message: Record<string, unknown>;
  msgId?: string;
  replyTo?: string;
  /** Call-monitor timeout, ms. */
  monitor?: number;
  /** A call's time to live, ms: its caller's timeout, as RabbitMQ's per-message expiration carries it. */
  ttl?: number;
  /**
   * When that time runs out, on `performance.now()`'s clock: every memory transport is in one
   * process. The request is discarded if it is still waiting to be delivered then, as RabbitMQ
   * discards an expired message at its queue's head; counted from the publish, not from delivery.
   */
  expires?: number;
}

/** A reply (`ending: true`) or a call-monitor heartbeat (`ending: false`). */
export interface ReplyBody {
  msgId: string;
  ending: boolean;
  result?: unknown;
  failure?: Reply['failure'] | null;
  /** The result is the token of a job started for this request (see `Reply.job`). */
  job?: true;
}
