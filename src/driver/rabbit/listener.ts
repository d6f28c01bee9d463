import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { channels, publish } from '../../core/diagnostics.js';
import { MessageTooLarge } from '../../core/errors.js';
import { failureOf } from '../../core/failure.js';
import type { ListenOptions } from '../driver.js';
import { CLOSE_GRACE_MS, type TrackedListener, within } from '../driver-base.js';
import { peek, unenvelope } from '../envelope.js';
import { compressionOf, decompressBody } from './compression.js';
import type { RabbitConnection } from './connection.js';
import { DedupRing } from './dedup.js';
import { type IncomingHost, RabbitIncoming, type ReplySender } from './incoming.js';
import { TickAcks } from './tick-acks.js';
import type { QueueBinding, Topology } from './topology.js';
import { replyAddress, splitIncoming } from './wire.js';

export type { ReplySender } from './incoming.js';

/** Times a listener's setup declares again after its exchange vanished before it stops trying. */
const VANISHED_RETRIES = 5;

/**
 * Whether `err` is a bind the broker refused because the exchange no longer exists although it
 * was declared just before on the same channel. Fanout exchanges are auto-delete (as oslo
 * declares them): when the last other server of a topic stops between this server's exchange
 * declare and its bind, the broker deletes the exchange and answers the bind with 404. Declaring
 * again creates it anew; that is a race to retry, not a setup failure (which would end a
 * starting server: an rpc-server exited on it in CI).
 */
export function exchangeVanished(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | undefined;
  return e?.code === 404 && typeof e.message === 'string' && /QueueBind/.test(e.message) && /no exchange/.test(e.message);
}

/** What a {@link RabbitListener} is built from; its driver hands it in, and it reaches for nothing else. */
export interface RabbitListenerOptions {
  /** The listener's own connection (closed when it stops). */
  conn: RabbitConnection;
  topology: Topology;
  /** Its queues, declared and bound on every (re)connect. */
  bindings: QueueBinding[];
  /** `rpc` answers calls; `notify` never replies. */
  kind: 'rpc' | 'notify';
  /** Larger deliveries are refused as MessageTooLarge. */
  maxMessageSize: number;
  /** Deeper-nested bodies are refused as NestingTooDeep before they are parsed. */
  maxJsonDepth: number;
  reply: ReplySender;
  listen: ListenOptions;
  /** Wait before a consumer the broker cancelled is declared and consumed again (rabbit.retryInterval). */
  retryDelay: number;
}

/** Acknowledges a delivery the listener settles itself (bad input, a duplicate): a function, not a closure made for every delivery. */
function ackNow(host: IncomingHost, msg: ConsumeMessage): void {
  try {
    host.acks.ack(msg);
  } catch {
    /* channel gone: the broker requeues it */
  }
}

/**
 * An RPC server's or notification listener's consumer: declares its bindings and consumes
 * them with per-consumer prefetch on every (re)connect, drops duplicates by `_unique_id`, and
 * hands each message over as an IncomingMessage. Bad input is acknowledged (so it cannot stall
 * the queue), reported, and answered with a failure when it names a reply queue.
 */
export class RabbitListener implements TrackedListener {
  onStop: (() => void) | undefined;
  private channel: Channel | undefined;
  private acks: TickAcks | undefined;
  /** What the current channel's deliveries share (its acks, the duplicate check, the reply sender). */
  private host: IncomingHost | undefined;
  private tags: string[] = [];
  private stopped = false;
  private closing: Promise<void> | undefined;
  /** When stop() sent its consumer cancels, while they are unanswered (a frozen or lost broker). */
  private cancelSentAt: number | undefined;
  private readonly dedup = new DedupRing();
  /**
   * Where each stream queue is to be consumed from on the next (re)connect: `last` at first,
   * then the offset after the last message delivered, as oslo keeps it (so a reconnect neither
   * skips nor repeats fanouts; a new listener starts at the stream's last chunk).
   */
  private readonly streamOffset = new Map<string, number | 'last'>();

  constructor(private readonly o: RabbitListenerOptions) {}

  /**
   * Setup hook: declares the topology and consumes; runs on every (re)connect. A bind refused
   * because its exchange is gone is declared again on a fresh channel (see {@link exchangeVanished}).
   */
  /** Whether it has a channel, on which deliveries may have come (see subscribe's abort). */
  get delivering(): boolean {
    return this.channel !== undefined;
  }

  async setup(model: ChannelModel): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.setupOnce(model);
      } catch (err) {
        if (attempt >= VANISHED_RETRIES || !exchangeVanished(err) || this.stopped) throw err;
      }
    }
  }

  private async setupOnce(model: ChannelModel): Promise<void> {
    if (this.stopped) return;
    const ch = await model.createChannel();
    let closedBy: Error | undefined;
    ch.on('error', (err: Error) => {
      closedBy = err;
    });
    // prefetch_count is a 16-bit field: a larger concurrency (a server's or listener's own
    // option; rpc.serverConcurrency is bounded in the config) made amqplib throw at every
    // (re)connect. 65,535 unacknowledged per queue keeps any such server busy.
    const prefetch = Math.min(this.o.listen.prefetch, 65_535);
    const acks = new TickAcks(ch, prefetch);
    const host: IncomingHost = { dead: false, acks, dedup: this.dedup, reply: this.o.reply, duplicate: this.duplicate };
    // At once: a request waiting for a slot must see it before it starts (see acknowledge).
    ch.once('close', () => {
      host.dead = true;
    });
    // The broker closed the channel and not the connection (an acknowledgement it did not know,
    // RabbitMQ's consumer_timeout, a declare refused): nothing would consume again, and the
    // server would serve nothing while it looked up. Checked a turn later: on a connection loss
    // the channels close first and the connection right after, and the loop dials by itself.
    ch.once('close', () =>
      setImmediate(() => {
        if (!this.stopped && this.channel === ch)
          this.o.conn.recycle(
            model,
            closedBy ? `the broker closed the ${this.o.kind === 'rpc' ? 'server' : 'listener'}'s channel: ${closedBy.message}` : undefined,
          );
      }),
    );
    // Known from now on: deliveries may arrive before setup ends, and close() must flush their acks.
    this.channel = ch;
    this.acks = acks;
    this.host = host;
    // Per-consumer prefetch (never global QoS): each queue may have `prefetch` unacked.
    await ch.prefetch(prefetch, false);
    for (const b of this.o.bindings) await this.o.topology.declareBinding(ch, b);
    const tags: string[] = [];
    // One consumer per queue: a pool's one queue is bound once per priority, and a consumer per
    // binding took that many shares of the pool from the other members (an oslo listener too)
    // with that many times the prefetch.
    const consumed = new Set<string>();
    for (const b of this.o.bindings) {
      if (consumed.has(b.queue)) continue;
      consumed.add(b.queue);
      tags.push(await this.consume(ch, b));
    }
    this.tags = tags;
    // Stopped while it was consuming: stop() had no tags to cancel yet.
    if (this.stopped) for (const tag of tags) void ch.cancel(tag).catch(() => undefined);
  }

  private async consume(ch: Channel, b: QueueBinding): Promise<string> {
    const args = b.stream ? { 'x-stream-offset': this.streamOffset.get(b.queue) ?? 'last' } : undefined;
    // The callback may have to name its own consumer tag, known only once consume() answers.
    const ref = { tag: '' };
    const { consumerTag } = await ch.consume(
      b.queue,
      (msg) => {
        if (msg) {
          if (b.stream) this.trackOffset(b.queue, msg);
          // Set by subscribe() before the first consume, for this channel.
          if (this.host) this.onMessage(this.host, b.queue, msg, b.stream === true);
        } else {
          // The broker cancelled the consumer: its queue was deleted (by an operator, an expiry
          // policy) or moved (a quorum or mirrored queue's failover). oslo reconnects and
          // declares again after a Basic.cancel; without this the server stayed up serving
          // nothing, and calls to its topic came back unroutable for good. A stream is consumed
          // from `last` again, as oslo does.
          if (b.stream) this.streamOffset.set(b.queue, 'last');
          void this.resubscribe(ch, b, ref.tag);
        }
      },
      { noAck: false, ...(args ? { arguments: args } : {}) },
    );
    ref.tag = consumerTag;
    return consumerTag;
  }

  private async resubscribe(ch: Channel, b: QueueBinding, oldTag: string): Promise<void> {
    if (this.stopped || this.channel !== ch) return;
    this.tags = this.tags.filter((t) => t !== oldTag);
    // After rabbit.retryInterval, as oslo waits kombu_reconnect_delay after a Basic.cancel: an
    // operator who deletes a queue to declare it otherwise gets to do so first.
    await new Promise((r) => setTimeout(r, this.o.retryDelay).unref());
    if (this.stopped || this.channel !== ch) return;
    try {
      // Every binding of the queue: a pool's queue is bound once per priority.
      for (const x of this.o.bindings) if (x.queue === b.queue) await this.o.topology.declareBinding(ch, x);
      if (this.stopped || this.channel !== ch) return;
      this.tags = [...this.tags, await this.consume(ch, b)];
    } catch {
      // The broker closed the channel (a declare refused, as when the queue came back with
      // other arguments): its close handler has the connection made anew.
    }
  }

  private trackOffset(queue: string, msg: ConsumeMessage): void {
    const offset = msg.properties.headers?.['x-stream-offset'];
    if (typeof offset === 'number') this.streamOffset.set(queue, offset + 1);
    else if (typeof offset === 'bigint') this.streamOffset.set(queue, Number(offset) + 1);
  }

  private onMessage(host: IncomingHost, queue: string, msg: ConsumeMessage, stream: boolean): void {
    host.acks.delivered(msg);
    let data: Record<string, unknown>;
    // A kombu-compressed body (an oslo peer with kombu_compression set) is read decompressed,
    // and so searched for where to answer when it is refused.
    let body = msg.content;
    try {
      if (msg.content.length > this.o.maxMessageSize) throw new MessageTooLarge(msg.content.length, this.o.maxMessageSize);
      const compression = compressionOf(msg.properties.headers);
      if (compression !== undefined) body = decompressBody(msg.content, compression, this.o.maxMessageSize);
      data = unenvelope(body, this.o.maxJsonDepth);
    } catch (err) {
      // Acknowledge bad input so it cannot stall the queue, and answer a call if we can tell.
      ackNow(host, msg);
      const e = err as Error;
      this.answerBadCall(body, e);
      this.o.listen.onInvalid?.(e, { address: queue, size: msg.content.length });
      return;
    }
    if (this.dedup.seen(data._unique_id)) {
      ackNow(host, msg);
      this.duplicate(data._unique_id);
      return;
    }
    const parts = splitIncoming(data);
    this.o.listen.onMessage(new RabbitIncoming(host, msg, parts, this.o.kind === 'rpc' ? parts.replyTo : undefined, !stream));
  }

  /**
   * Reports a copy of a message already received, dropped as oslo drops it ("ignoring duplicate
   * message"). Before, it went without a trace: a publisher's retry storm, or two publishers
   * reusing ids, showed as messages that never arrived.
   */
  private readonly duplicate = (uniqueId: unknown): void => {
    publish(channels.duplicateMessage, () => ({
      where: this.o.kind === 'rpc' ? 'rpc server' : 'notification listener',
      uniqueId: String(uniqueId).slice(0, 100),
    }));
    this.o.listen.onDuplicate?.();
  };

  /** Best effort: an unsupported envelope or a bad field may still name its reply queue. */
  private answerBadCall(content: Buffer, e: Error): void {
    if (this.o.kind !== 'rpc') return;
    const to = replyAddress(peek(content));
    if (to) this.o.reply(to, { ending: true, result: null, failure: failureOf(e) }).catch(() => {});
  }

  /**
   * Cancels the consumers and keeps the channel, so messages already delivered can still be
   * acknowledged or requeued; the connection is not re-made if it drops from now on. Not set up
   * yet (dialing, backing off): nothing was delivered that could be settled, so it closes now.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.o.conn.holdOpen();
    const ch = this.channel;
    // Not waiting for cancel-ok: a broker that is stopped, SIGSTOPped or blocked may never send
    // it, and a delivery that still comes is given back by the server or listener above.
    if (ch && this.o.conn.isOpen) {
      if (this.tags.length > 0) {
        const sentAt = performance.now();
        this.cancelSentAt = sentAt;
        void Promise.allSettled(this.tags.map((tag) => ch.cancel(tag))).then(() => {
          if (this.cancelSentAt === sentAt) this.cancelSentAt = undefined;
        });
      }
      // The server's fanout queue goes now (oslo's goes with its connection): fanout requests
      // are acknowledged when they start, so nothing in flight needs it. Bounded like the rest.
      const transient = this.o.bindings.filter((b) => b.deleteOnStop);
      if (transient.length > 0) await within(Promise.all(transient.map((b) => ch.deleteQueue(b.queue))), CLOSE_GRACE_MS);
    }
  }

  /** Closes the channel (flushing its acknowledgements), then the connection; unsettled messages go back to the queue. */
  close(): Promise<void> {
    // One close for every caller: a transport closing meanwhile must wait for the same flush.
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    await this.stop();
    const ch = this.channel;
    let answered = true;
    if (ch) {
      // One grace per stop for a broker that answers nothing: counted from the cancels stop()
      // sent. One that has not answered them by now will not answer a close either, and waiting
      // the full grace again would push a stop past its deadline + 1 s.
      const grace =
        this.cancelSentAt === undefined ? CLOSE_GRACE_MS : Math.max(0, CLOSE_GRACE_MS - (performance.now() - this.cancelSentAt));
      const done = await within(
        (async () => {
          // Closing the channel first flushes the acknowledgements queued on it: amqplib writes
          // channel frames through its muxer, and a connection.close sent at once can overtake them.
          this.acks?.flush();
          await ch.close();
          return true;
        })(),
        grace,
      );
      answered = done === true;
    }
    // A broker that did not answer the channel close will not answer the connection's either.
    await this.o.conn.close(answered ? CLOSE_GRACE_MS : 0);
    this.onStop?.();
  }
}
