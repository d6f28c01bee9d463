import { unenvelope } from '../envelope.js';
import type { ReplyWaiter } from '../reply-waiter.js';
import { DedupRing } from './dedup.js';
import { parseFailure } from './wire.js';

/**
 * Routes the replies a client receives (on its reply queue or its direct reply-to channel) to
 * the waiting calls by `_msg_id`: duplicates dropped by `_unique_id`, heartbeats
 * (`ending: false`) restart the call monitor, and old-style partial replies (result first,
 * `ending` later) are joined.
 */
export class ReplyDispatch {
  private readonly dedup = new DedupRing();
  /** Partial results of old-style replies (result first, `ending` later), by `_msg_id`. */
  private readonly partial = new Map<string, { result: unknown; failure: unknown }>();

  constructor(
    private readonly waiter: ReplyWaiter,
    /** Bodies nested deeper are dropped unparsed (`maxJsonDepth`). */
    private readonly maxJsonDepth: number,
  ) {}

  /** Drops what is kept for a call that has ended. */
  forget(msgId: string): void {
    if (this.partial.size > 0) this.partial.delete(msgId);
  }

  /** One reply body as it arrived; anything unreadable or not ours is dropped. */
  onReply(content: Buffer): void {
    let data: Record<string, unknown>;
    try {
      data = unenvelope(content, this.maxJsonDepth);
    } catch {
      return;
    }
    if (this.dedup.seen(data._unique_id)) return;
    this.dedup.add(data._unique_id);
    const id = data._msg_id;
    if (typeof id !== 'string') return;
    const { result, failure } = data;
    if (data.ending !== true) {
      // oslo < 2 sent the result first and `ending` separately; keep it for the final message.
      if ((result !== null && result !== undefined) || failure) this.partial.set(id, { result, failure });
      this.waiter.heartbeat(id);
      return;
    }
    const early = this.partial.get(id);
    if (early) this.partial.delete(id);
    const f = failure ?? early?.failure;
    if (f) this.waiter.resolve(id, { failure: parseFailure(f) });
    else this.waiter.resolve(id, { result: result ?? early?.result ?? null });
  }
}
