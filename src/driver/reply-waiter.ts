import { ClosedError, MessagingTimeout } from '../core/errors.js';
import { SlotMap } from '../core/slot-map.js';
import type { Reply } from './driver.js';

interface Pending {
  resolve(reply: Reply): void;
  reject(err: Error): void;
  /** performance.now() at which the call times out. */
  deadline: number;
  /** The timeout its message names. */
  named: number;
  monitor: NodeJS.Timeout | undefined;
  monitorMs: number;
  describe: string;
  /** What the request went out through (a reply queue, a direct reply-to channel), once published. */
  via: object | undefined;
  /** The sender's number for the request (0 until published, or when it numbers none; see {@link ReplyWaiter.failDropped}). */
  sentSeq: number;
  /** Where the request went: the RabbitMQ exchange (`''` the default one). */
  sentTo: string | undefined;
  /** Its routing key. */
  sentKey: string | undefined;
}

/** Options of {@link ReplyWaiter.wait}; durations in ms. */
export interface WaitOptions {
  timeout: number;
  callMonitorTimeout?: number;
  /** Names the call in timeout messages, e.g. `add on topic demo`. */
  describe: string;
  /** The duration timeout messages name, when it differs from `timeout` (see SendOptions.callTimeout). @default timeout */
  named?: number;
}

/**
 * Pending calls of one reply queue or link, keyed by message id: the overall deadline, the
 * call-monitor timer that heartbeats restart, and routing of replies. Shared by all drivers.
 */
export class ReplyWaiter {
  /** A SlotMap, not a Map: a finished call's entry (its promise, its caller's frame) must not outlive it (see SlotMap). */
  private readonly pending = new SlotMap<string, Pending>();
  /**
   * One timer for every pending call's deadline, armed for the earliest one (`armedAt`), instead
   * of a timer per call: creating and clearing a Node timer per call was ~3 µs of a sequential
   * caller's time (a new timer list, the priority queue, the libuv timer each time). Calls
   * mostly share a timeout, so a new call's deadline is rarely earlier than the armed one. The
   * timer is unref'ed while nothing waits, as a cleared one would be.
   */
  private timer: NodeJS.Timeout | undefined;
  private armedAt = Infinity;

  /** Calls waiting for a reply. */
  get size(): number {
    return this.pending.size;
  }

  /** Registers `msgId` before the request is sent, so an early reply is never missed. */
  wait(msgId: string, opts: WaitOptions): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      const deadline = performance.now() + opts.timeout;
      const monitorMs = opts.callMonitorTimeout ?? 0;
      const entry: Pending = {
        resolve,
        reject,
        deadline,
        named: opts.named ?? opts.timeout,
        monitor: undefined,
        monitorMs,
        describe: opts.describe,
        via: undefined,
        sentSeq: 0,
        sentTo: undefined,
        sentKey: undefined,
      };
      if (this.pending.size === 0) this.timer?.ref();
      this.pending.set(msgId, entry);
      if (deadline < this.armedAt) this.arm(deadline);
      this.armMonitor(msgId, entry);
    });
  }

  private arm(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.armedAt = at;
    // Rounded up: a timer never fires before its deadline, so none is seen as not yet due.
    this.timer = setTimeout(() => this.expire(), Math.max(0, Math.ceil(at - performance.now())));
  }

  /** Fails the calls whose deadline has come, and arms the timer for the next one. */
  private expire(): void {
    // The timer fired for `armedAt`: that deadline has come even if the clock reads a hair less.
    const now = Math.max(performance.now(), this.armedAt);
    this.timer = undefined;
    this.armedAt = Infinity;
    let next = Infinity;
    for (const [msgId, e] of this.pending.entries()) {
      if (e.deadline <= now) {
        this.fail(
          msgId,
          new MessagingTimeout(`Timed out waiting for a reply to message ID ${msgId} (${e.describe}) after ${Math.round(e.named)} ms`),
        );
      } else if (e.deadline < next) {
        next = e.deadline;
      }
    }
    if (next !== Infinity) {
      this.armedAt = next;
      this.timer = setTimeout(() => this.expire(), Math.ceil(next - now));
    }
  }

  private armMonitor(msgId: string, entry: Pending): void {
    if (!entry.monitorMs) return;
    if (entry.monitor) clearTimeout(entry.monitor);
    entry.monitor = setTimeout(() => {
      this.fail(
        msgId,
        new MessagingTimeout(
          `Timed out waiting for a reply to message ID ${msgId} (${entry.describe}): no heartbeat from the server for ${entry.monitorMs} ms (call monitor)`,
        ),
      );
    }, entry.monitorMs);
  }

  /** A call-monitor heartbeat arrived; false when nobody waits for `msgId`. */
  heartbeat(msgId: string): boolean {
    const entry = this.pending.get(msgId);
    if (!entry) return false;
    this.armMonitor(msgId, entry);
    return true;
  }

  /**
   * Records that `msgId`'s request was published through `via`, whose loss leaves it without a
   * reply (see {@link failVia}). Kept on the pending entry, so that it goes with the call: a
   * Set of ids beside it cost a hash insert and delete per call, and held ids of calls that had
   * ended before their publish was confirmed.
   */
  published(msgId: string, via: object | undefined, seq = 0, sentTo?: string, sentKey?: string): void {
    const entry = this.pending.get(msgId);
    if (!entry) return;
    entry.via = via;
    entry.sentSeq = seq;
    entry.sentTo = sentTo;
    entry.sentKey = sentKey;
  }

  /**
   * Fails the calls a broker's refusal dropped. The sender numbers its requests in the order it
   * writes them (`published`), and those numbered `from`..`to` went out on one channel, which
   * the broker closed for refusing a request that `isRefused` (by its exchange and routing key)
   * describes. The broker refuses every such request alike, so the first of them on that channel
   * is the one refused, and the broker discarded everything after it on the channel unread
   * (AMQP: after a channel.close, only close and close-ok count): those fail now with
   * `dropped`'s error, the refused kind with `refused`'s, instead of each at its timeout.
   * Requests before the refused one were taken, and keep waiting for their replies. Nothing
   * happens when no refused kind of call is found there.
   */
  failDropped(
    from: number,
    to: number,
    isRefused: (sentTo: string | undefined, sentKey: string | undefined) => boolean,
    refused: (describe: string) => Error,
    dropped: (describe: string) => Error,
  ): number {
    let first = Infinity;
    for (const [, e] of this.pending.entries()) {
      if (e.sentSeq >= from && e.sentSeq <= to && e.sentSeq < first && isRefused(e.sentTo, e.sentKey)) first = e.sentSeq;
    }
    if (first === Infinity) return 0;
    const hit: Array<[string, Pending]> = [];
    for (const [msgId, e] of this.pending.entries()) if (e.sentSeq >= first && e.sentSeq <= to) hit.push([msgId, e]);
    for (const [msgId, e] of hit) this.fail(msgId, isRefused(e.sentTo, e.sentKey) ? refused(e.describe) : dropped(e.describe));
    return hit.length;
  }

  /** Fails every call published through `via` (its reply queue or channel was lost). */
  failVia(via: object, err: Error): void {
    for (const [msgId, e] of this.pending.entries()) if (e.via === via) this.fail(msgId, err);
  }

  /** The final reply arrived; false when nobody waits for `msgId` (late or unknown). */
  resolve(msgId: string, reply: Reply): boolean {
    const entry = this.take(msgId);
    if (!entry) return false;
    entry.resolve(reply);
    return true;
  }

  /** Fails one pending call; false when nobody waits for `msgId`. */
  fail(msgId: string, err: Error): boolean {
    const entry = this.take(msgId);
    if (!entry) return false;
    entry.reject(err);
    return true;
  }

  /** Fails every pending call, e.g. when the transport closes. */
  failAll(err: Error = new ClosedError('transport closed while waiting for a reply')): void {
    for (const id of this.pending.keys()) this.fail(id, err);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.armedAt = Infinity;
  }

  private take(msgId: string): Pending | undefined {
    const entry = this.pending.take(msgId);
    if (!entry) return undefined;
    if (entry.monitor) clearTimeout(entry.monitor);
    // Nothing waits: the armed timer must not keep the process alive (it fires once, finds
    // nothing, and is not re-armed).
    if (this.pending.size === 0) this.timer?.unref();
    return entry;
  }
}
