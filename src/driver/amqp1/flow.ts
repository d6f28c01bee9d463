import type { Message, Sender } from 'rhea';
import { MessagingTimeout, TransportError } from '../../core/errors.js';
import { sessionRoom } from '../../rhea/index.js';

/**
 * Slots of rhea's per-session delivery buffer (2048, FIFO, freed only from its head) kept for
 * replies and heartbeats, so a burst of calls cannot starve the replies a server owes. An
 * overflow of that buffer corrupts the session for good, so nothing may ever push past it.
 */
export const REPLY_RESERVE = 128;

/** Replies held at most while the connection is down; past it the oldest goes. */
const MAX_HELD_REPLIES = 10_000;

/** Where a waiting send hears that it is no longer wanted (a call's `Abandon`). */
export interface AbortHook {
  /** Set while the send waits for room; called once if it is abandoned meanwhile. */
  onAbort: (() => void) | undefined;
}

/** The links a {@link SendFlow} meters, looked up at each use (they change on reconnect). */
export interface FlowLinks {
  /** The connection is open. */
  isOpen(): boolean;
  /** The link calls and casts go out on (its session is the one metered). */
  requests(): Sender | undefined;
  /** The link replies and heartbeats go out on. */
  replies(): Sender | undefined;
}

/**
 * Gates sends on room in the session's outgoing delivery buffer: calls and casts wait their
 * turn (FIFO) and leave {@link REPLY_RESERVE} slots free; replies never wait, they are held in
 * a backlog when the buffer is full and pumped out as rhea frees slots.
 */
export class SendFlow {
  /** Calls and casts waiting for a slot in the session buffer, oldest first. */
  private readonly waiters: Array<{ wake(): void; fail(err: Error): void }> = [];
  /** Slots promised to woken waiters that have not sent yet. */
  private reserved = 0;
  /** Replies held for room, or for the connection to come back, each until its `until` (performance.now()). */
  private readonly replyBacklog: Array<{ m: Message; until: number }> = [];
  private pumpScheduled = false;

  /**
   * @param holdRepliesMs how long a reply made while the connection is down is held for its
   *   return (`rpc.responseTimeout`, as the RabbitMQ driver resends replies); 0: it fails at once.
   */
  constructor(
    private readonly links: FlowLinks,
    private readonly holdRepliesMs = 0,
  ) {}

  /** Slots a call or cast may take now. */
  private requestRoom(): number {
    return sessionRoom(this.links.requests()) - this.reserved - REPLY_RESERVE;
  }

  /**
   * Waits for a slot in the session's delivery buffer (FIFO among waiters), then reserves it;
   * the caller must call {@link release} right after its synchronous send. Resolves `false`,
   * with nothing reserved, when `abandon` is aborted first: a call whose caller already has its
   * answer or failure leaves the queue at once instead of holding its place to the deadline.
   */
  async acquire(deadline: number, what: string, abandon?: AbortHook): Promise<boolean> {
    if (this.waiters.length === 0 && this.requestRoom() > 0) {
      this.reserved++;
      return true;
    }
    return new Promise<boolean>((resolve, reject) => {
      // wake and fail are called on a waiter already taken off the queue; the timer and the
      // abort take it off themselves.
      const done = () => {
        clearTimeout(timer);
        if (abandon) abandon.onAbort = undefined;
      };
      const dequeue = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
      };
      const waiter = {
        wake: () => {
          done();
          resolve(true);
        },
        fail: (err: Error) => {
          done();
          reject(err);
        },
      };
      const timer = setTimeout(
        () => {
          done();
          dequeue();
          reject(
            new MessagingTimeout(`${what}: timed out waiting for room to send (${this.waiters.length} sends queued on the connection)`),
          );
        },
        Math.max(1, deadline - Date.now()),
      );
      if (abandon)
        abandon.onAbort = () => {
          done();
          dequeue();
          resolve(false);
        };
      this.waiters.push(waiter);
      this.schedulePump();
    });
  }

  /**
   * The transport is closing: sends still waiting for room fail now with `err` (their timers
   * would have kept the process alive to their deadlines), and replies held for room are dropped
   * (their reply addresses died with the connection).
   */
  failAll(err: Error): void {
    for (const w of this.waiters.splice(0)) w.fail(err);
    this.replyBacklog.length = 0;
  }

  /**
   * Gives back the slot {@link acquire} reserved. A woken send that did not use its slot (its
   * call ended, or the credit went while it queued) leaves the buffer as it was, so nothing else
   * would wake the sends behind it: the pump runs again for them. Without this, sends queued
   * behind calls failed by a lost connection stayed queued after the reconnect until their
   * deadlines.
   */
  release(): void {
    this.reserved--;
    if (this.waiters.length > 0) this.schedulePump();
  }

  /** A delivery was settled: room may have come free for waiting sends. */
  settled(): void {
    if (this.waiters.length > 0) this.schedulePump();
  }

  /**
   * Sends a reply or heartbeat on the reply link, or holds it until the pump finds room: a full
   * session buffer must not throw (that would corrupt the session). With the connection down it
   * is held for the connection's return, up to `holdRepliesMs` (a heartbeat up to its own ttl),
   * as oslo's amqp1 driver queues a reply on a link that is not active: the caller's reply
   * address outlives the server's connection, and a reply thrown away left a call that had run
   * to wait out its timeout. Throws TransportError when it cannot be held.
   */
  sendReply(m: Message): void {
    const s = this.links.replies();
    if (!this.links.isOpen() || !s) {
      const hold = m.body === undefined && typeof m.ttl === 'number' ? Math.min(m.ttl, this.holdRepliesMs) : this.holdRepliesMs;
      if (hold <= 0) throw new TransportError('connection lost before the reply could be sent');
      // Bounded: what runs while the connection is down is bounded by the server's credit, but
      // a flapping connection must not pile up replies without end.
      if (this.replyBacklog.length >= MAX_HELD_REPLIES) this.replyBacklog.shift();
      this.replyBacklog.push({ m, until: performance.now() + hold });
      return;
    }
    if (this.replyBacklog.length > 0 || sessionRoom(s) === 0) {
      this.replyBacklog.push({ m, until: Number.POSITIVE_INFINITY });
      this.schedulePump();
      return;
    }
    s.send(m);
  }

  /**
   * Runs after rhea has processed I/O (it frees buffer slots only after dispatching outcome
   * events): flushes held replies first, then wakes as many waiting sends as there is room for.
   */
  schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      const replies = this.links.replies();
      const now = performance.now();
      while (this.replyBacklog.length > 0 && this.links.isOpen() && replies && sessionRoom(replies) > 0) {
        const held = this.replyBacklog.shift()!;
        // Held past its bound while the connection was down: its caller has stopped waiting.
        if (held.until >= now) replies.send(held.m);
      }
      while (this.waiters.length > 0 && this.requestRoom() > 0) {
        this.reserved++;
        this.waiters.shift()!.wake();
      }
    });
  }
}
