import { MalformedMessage } from '../../core/errors.js';
import { failureOf } from '../../core/failure.js';
import { parsePeerJson } from '../../core/json.js';
import type { IncomingMessage, ListenOptions } from '../driver.js';
import type { TrackedListener } from '../driver-base.js';
import type { MemoryBroker, MemoryConsumer, MemoryDelivery } from './broker.js';
import type { ReplyBody, RequestBody } from './wire.js';

/** A delivery this listener holds; `ack()` settles it without freeing its prefetch slot (that is `done()`'s). */
interface TrackedDelivery extends MemoryDelivery {
  ack(): void;
}

/** Sends a reply or heartbeat to a caller's reply queue. */
export type MemoryReply = (replyTo: string, body: ReplyBody) => void;

/** One subscription of a memory transport: consumes its queues with one shared prefetch window. */
export class MemoryListener implements TrackedListener {
  private readonly cancels: Array<() => void> = [];
  onStop: (() => void) | undefined;
  private stopped = false;
  private closed = false;
  /** Delivered and not yet settled: what a broker gives back when its consumer's channel closes. */
  private readonly unsettled = new Set<MemoryDelivery>();

  constructor(
    private readonly broker: MemoryBroker,
    queues: string[],
    private readonly transient: string[],
    private readonly opts: ListenOptions,
    private readonly reply: MemoryReply,
    private readonly maxJsonDepth: number,
  ) {
    const consumer: MemoryConsumer = {
      prefetch: opts.prefetch,
      inFlight: 0,
      deliver: (d) => this.deliver(this.track(d)),
    };
    for (const q of queues) this.cancels.push(broker.consume(q, consumer));
  }

  private track(d: MemoryDelivery): TrackedDelivery {
    this.unsettled.add(d);
    return {
      body: d.body,
      // The broker's own done() and requeue() act once: after close() gave the delivery back, or
      // after the other one, a call does nothing.
      done: () => {
        this.unsettled.delete(d);
        d.done();
      },
      requeue: () => {
        // Acknowledged, the message is gone from the broker: there is nothing to put back.
        if (this.unsettled.delete(d)) d.requeue();
        else d.done();
      },
      ack: () => {
        this.unsettled.delete(d);
      },
    };
  }

  private deliver(d: TrackedDelivery): void {
    let body: RequestBody;
    try {
      body = parsePeerJson(d.body, 'message body', this.maxJsonDepth) as RequestBody;
      if (!body || typeof body !== 'object' || !body.message || typeof body.message !== 'object') {
        throw new MalformedMessage('message has no message object');
      }
    } catch (err) {
      d.done();
      const e =
        err instanceof MalformedMessage
          ? err
          : new MalformedMessage(`message is not valid JSON: ${(err as Error).message}`, { cause: err });
      this.opts.onInvalid?.(e, { address: 'memory', size: d.body.length });
      this.answerBadCall(d.body, e);
      return;
    }
    // Past its caller's timeout before a consumer took it: RabbitMQ would have discarded it.
    if (typeof body.expires === 'number' && performance.now() >= body.expires) {
      d.done();
      return;
    }
    this.opts.onMessage(this.incoming(d, body));
  }

  /** A caller whose body could not be decoded still gets the error: its ids are the body's last fields. */
  private answerBadCall(body: string, e: Error): void {
    const tail = body.slice(-1024);
    const msgId = /"msgId":"([\w.:@-]{1,255})"/.exec(tail)?.[1];
    const replyTo = /"replyTo":"([\w.:@-]{1,255})"/.exec(tail)?.[1];
    if (msgId && replyTo) this.reply(replyTo, { msgId, ending: true, result: null, failure: failureOf(e) });
  }

  private incoming(d: TrackedDelivery, body: RequestBody): IncomingMessage {
    const { msgId, replyTo } = body;
    const send = (reply: ReplyBody) => {
      if (msgId && replyTo) this.reply(replyTo, reply);
    };
    return {
      ctx: body.ctx ?? {},
      message: body.message,
      expectsReply: Boolean(msgId && replyTo),
      callMonitorTimeout: typeof body.monitor === 'number' ? body.monitor : 0,
      // Counted from the publish (see RequestBody.expires): the RabbitMQ driver can only count
      // from delivery, but the broker there has already discarded what waited past it.
      ...(typeof body.ttl === 'number' && body.ttl > 0
        ? { ttl: body.ttl, expiresAt: typeof body.expires === 'number' ? body.expires : performance.now() + body.ttl }
        : {}),
      async reply(reply) {
        const body: ReplyBody = { msgId: msgId!, ending: true, result: reply.result ?? null, failure: reply.failure ?? null };
        if (reply.job) body.job = true;
        send(body);
      },
      async heartbeat() {
        send({ msgId: msgId!, ending: false, result: null, failure: null });
      },
      // False once close() gave it back: the broker delivers it again, so running this copy would
      // run it twice. Acknowledged, it is settled (oslo's at-most-once): a close() while it runs
      // does not give it back, and no other server runs it again.
      acknowledge: () => {
        if (this.closed) return false;
        d.ack();
        return true;
      },
      stale: () => this.closed,
      requeue: () => d.requeue(),
      done: () => d.done(),
    };
  }

  /** Cancels the consumers; deliveries already made stay valid until {@link close}. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const c of this.cancels) c();
  }

  async close(): Promise<void> {
    await this.stop();
    if (this.closed) return;
    this.closed = true;
    // As RabbitMQ requeues a closed channel's unacknowledged deliveries: a request still running
    // or a notification held in a batch is delivered again, not lost.
    for (const d of [...this.unsettled]) d.requeue();
    this.unsettled.clear();
    // A server's fanout queue goes with it, as oslo deletes it when the server's connection closes.
    for (const q of this.transient) this.broker.deleteQueue(q);
    this.onStop?.();
  }
}
