import { channels, publish } from '../../core/diagnostics.js';
import { MalformedMessage, MessageTooLarge, NestingTooDeep } from '../../core/errors.js';
import { JOB_REPLY_KEY } from '../driver.js';
import { peekReplyId, unenvelope } from '../envelope.js';
import type { ReplyWaiter } from '../reply-waiter.js';
import { decompressBody } from './compression.js';
import { parseFailure } from './wire.js';

/**
 * What a reply may be: nested at most `maxJsonDepth` deep (deeper ones fail their call unparsed),
 * and at most `maxMessageSize` bytes (larger ones too: any peer on the broker can publish to a
 * reply queue, and the broker's own bound is far higher).
 */
export interface ReplyLimits {
  maxJsonDepth: number;
  maxMessageSize: number;
}

/**
 * Routes the replies a client receives (on its reply queue or its direct reply-to channel) to
 * the waiting calls by `_msg_id`: heartbeats (`ending: false`) restart the call monitor, and
 * old-style partial replies (result first, `ending` later) are joined.
 *
 * No duplicate check by `_unique_id` (oslo keeps one; this did, with a 4,096-id ring): a copy
 * of a final reply finds its call ended and is dropped, a copy of a heartbeat restarts the
 * monitor once more, and a copy of a partial result is kept only while its call waits, so a
 * copy cannot do anything the original did not. The check cost every reply about 1 µs (a Set
 * lookup, insert and delete on a 4,096-entry table).
 */
export class ReplyDispatch {
  /** Partial results of old-style replies (result first, `ending` later), by `_msg_id`. */
  private readonly partial = new Map<string, { result: unknown; failure: unknown }>();

  private readonly maxJsonDepth: number;
  private readonly maxMessageSize: number;

  constructor(
    private readonly waiter: ReplyWaiter,
    limits: ReplyLimits,
  ) {
    this.maxJsonDepth = limits.maxJsonDepth;
    this.maxMessageSize = limits.maxMessageSize;
  }

  /** Partial results kept for calls that wait (old-style replies in progress). */
  get partials(): number {
    return this.partial.size;
  }

  /** Drops what is kept for a call that has ended. */
  forget(msgId: string): void {
    if (this.partial.size > 0) this.partial.delete(msgId);
  }

  /**
   * One reply body as it arrived, `compression` its kombu `compression` header (an oslo server
   * with kombu_compression set); anything unreadable or not ours is dropped.
   */
  onReply(content: Buffer, compression?: string): void {
    if (compression !== undefined) {
      try {
        content = decompressBody(content, compression, this.maxMessageSize);
      } catch (err) {
        // Nothing of a compressed body can be read to find its call: it waits out its timeout,
        // and the line says why.
        invalid(err as Error, content.length);
        return;
      }
    }
    if (content.length > this.maxMessageSize) {
      // Found by scanning the body's ends only, as an oversized request's ids are.
      const id = peekReplyId(content);
      const error = new MessageTooLarge(content.length, this.maxMessageSize);
      if (id) this.waiter.fail(id, error);
      invalid(error, content.length);
      return;
    }
    let data: Record<string, unknown>;
    try {
      data = unenvelope(content, this.maxJsonDepth);
    } catch (err) {
      // The call gets the reason (NestingTooDeep, MalformedMessage) at once instead of its
      // timeout: the reply's `_msg_id` is found without parsing what was refused.
      const id = peekReplyId(content);
      if (id) {
        const why =
          err instanceof NestingTooDeep
            ? new NestingTooDeep(err.limit, 'reply')
            : new MalformedMessage(`reply is not readable: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        this.waiter.fail(id, why);
      }
      invalid(err instanceof Error ? err : new MalformedMessage(String(err)), content.length);
      return;
    }
    const id = data._msg_id;
    if (typeof id !== 'string') {
      invalid(new MalformedMessage('reply without a _msg_id'), content.length);
      return;
    }
    const { result, failure } = data;
    // Any true value ends the call, as in oslo (`ending = data.get('ending', False)`): a peer's
    // `"ending": 1` or "yes" left the call waiting for its timeout.
    if (!pythonTrue(data.ending)) {
      // oslo < 2 sent the result first and `ending` separately; keep it for the final message,
      // while the call waits (a late copy must not stay behind after forget()).
      if (this.waiter.heartbeat(id) && ((result !== null && result !== undefined) || failure)) this.partial.set(id, { result, failure });
      return;
    }
    const early = this.partial.get(id);
    if (early) this.partial.delete(id);
    const f = failure ?? early?.failure;
    if (f) {
      let parsed: ReturnType<typeof parseFailure>;
      try {
        parsed = parseFailure(f, this.maxJsonDepth);
      } catch (err) {
        this.waiter.fail(id, err as Error);
        return;
      }
      this.waiter.resolve(id, { failure: parsed });
    } else if (data[JOB_REPLY_KEY] === 1) this.waiter.resolve(id, { result: result ?? null, job: true });
    else this.waiter.resolve(id, { result: result ?? early?.result ?? null });
  }
}

/** Python's truth of a JSON value: false for null, false, 0, "", [] and {}. */
function pythonTrue(v: unknown): boolean {
  if (Array.isArray(v)) return v.length > 0;
  if (v !== null && typeof v === 'object') return Object.keys(v).length > 0;
  return Boolean(v);
}

/**
 * Reports a reply no call can be given on `hermod:message:invalid`, as servers and listeners
 * report what they refuse: anyone who may publish to the vhost can write to a reply queue. A
 * reply for a call no longer waited for (after its timeout) is not invalid, and not reported.
 */
function invalid(error: Error, size: number): void {
  publish(channels.invalidMessage, { where: 'reply queue', error, size });
}
