import { ClosedError, MessagingTimeout } from '../core/errors.js';
import type { Reply } from './driver.js';

interface Pending {
  resolve(reply: Reply): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
  monitor: NodeJS.Timeout | undefined;
  monitorMs: number;
  describe: string;
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
  private readonly pending = new Map<string, Pending>();

  /** Calls waiting for a reply. */
  get size(): number {
    return this.pending.size;
  }

  /** Registers `msgId` before the request is sent, so an early reply is never missed. */
  wait(msgId: string, opts: WaitOptions): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(
          msgId,
          new MessagingTimeout(
            `Timed out waiting for a reply to message ID ${msgId} (${opts.describe}) after ${Math.round(opts.named ?? opts.timeout)} ms`,
          ),
        );
      }, opts.timeout);
      const monitorMs = opts.callMonitorTimeout ?? 0;
      const entry: Pending = { resolve, reject, timer, monitor: undefined, monitorMs, describe: opts.describe };
      this.pending.set(msgId, entry);
      this.armMonitor(msgId, entry);
    });
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
    for (const id of [...this.pending.keys()]) this.fail(id, err);
  }

  private take(msgId: string): Pending | undefined {
    const entry = this.pending.get(msgId);
    if (!entry) return undefined;
    this.pending.delete(msgId);
    clearTimeout(entry.timer);
    if (entry.monitor) clearTimeout(entry.monitor);
    return entry;
  }
}
