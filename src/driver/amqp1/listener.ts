import type { Connection, EventContext, Receiver } from 'rhea';
import { AccessRefused, MalformedMessage, MessageTooLarge, TransportError } from '../../core/errors.js';
import { uuidHex } from '../../core/ids.js';
import { discardedBytes, linkCredit, locallyOpen, receivingEpoch, remoteSettled } from '../../rhea/index.js';
import type { IncomingMessage, Listener, ListenOptions, Reply } from '../driver.js';
import { badInputBody, bodySize, decodeRequest, replyBody } from './wire.js';

/**
 * Sends a reply body (undefined: a heartbeat, with `ttl` when the caller monitors the call) to
 * `to`, correlated by `correlationId`. Throws when the body cannot be encoded or the
 * connection is down.
 */
export type ReplyFn = (to: string, correlationId: unknown, body: Record<string, unknown> | undefined, ttl?: number) => void;

/** What an {@link Amqp1Listener} is given by its driver. */
export interface Amqp1ListenerOptions {
  /** The connection to attach receivers on. */
  conn: Connection;
  /** One receiver per address. */
  addresses: string[];
  listen: ListenOptions;
  /** Credit per receiver: at most this many messages taken and not yet done. */
  credit: number;
  /** Largest request body accepted, bytes. */
  maxMessageSize: number;
  /** Deeper-nested bodies are refused as NestingTooDeep before they are parsed. */
  maxJsonDepth: number;
  reply: ReplyFn;
  /**
   * A link refused after the listener started (a reconnect re-attached it and the peer refused):
   * it receives nothing from that address any more.
   */
  onRefused?: (err: Error) => void;
  /** Called for each receiver once attached: a later detach by the peer reconnects (see Amqp1Connection.watch). */
  watch?: (receiver: Receiver) => void;
}

/**
 * An RPC server's or notification listener's receivers, one per address, each with credit
 * `credit` that comes back as messages are done. Messages are received unsettled and settled
 * by acknowledge (accepted) or requeue (released); undecodable ones are rejected at once, and
 * a call among them is answered with the error.
 */
export class Amqp1Listener implements Listener {
  private readonly receivers: Receiver[] = [];
  readonly attached: Promise<void>;
  onStop: (() => void) | undefined;
  private stopped = false;
  private closed = false;
  private readonly credit: number;
  /** Messages taken per receiver and not yet done: credit + processing = capacity, always. */
  private readonly processing = new Map<Receiver, number>();

  constructor(private readonly opts: Amqp1ListenerOptions) {
    this.credit = opts.credit;
    const opens: Promise<void>[] = [];
    for (const address of opts.addresses) {
      const r = opts.conn.open_receiver({
        source: { address },
        target: { address },
        credit_window: 0,
        autoaccept: false,
        snd_settle_mode: 2,
        name: `openstack.org/om/receiver/[${address}]/${uuidHex()}`,
      });
      opens.push(
        new Promise<void>((resolve, reject) => {
          let refused: Error | undefined;
          let started = false;
          // A peer that refuses a link (no permission, a link limit) attaches it and detaches it
          // with an error at once: both frames come in one read, so the error is known by the
          // next turn. Without this the server said "serving" and received nothing.
          r.once('receiver_open', () =>
            setImmediate(() => {
              started = true;
              if (refused) {
                reject(refused);
                return;
              }
              this.opts.watch?.(r);
              resolve();
            }),
          );
          r.on('receiver_error', (ctx: EventContext) => {
            const e = (ctx.receiver?.error ?? {}) as { condition?: string; description?: string };
            const why = `${e.condition ?? 'detached'}${e.description ? `: ${e.description}` : ''}`;
            const text = `the peer refused to let this listener receive from ${address} (${why})`;
            const err = e.condition === 'amqp:unauthorized-access' ? new AccessRefused(text) : new TransportError(text);
            if (!started) {
              refused ??= err;
              reject(refused);
              return;
            }
            // Refused once running: re-attached after a reconnect to a router whose policy changed,
            // or a detach that came in a later read than the attach. rhea does not attach a
            // refused link again, so this address is deaf for good: say so instead of idling.
            // A detach the router forced (no refusal) reconnects instead, which attaches it again
            // (see Amqp1Connection.watch).
            if (!this.stopped && !this.closed && e.condition !== 'amqp:link:detach-forced') this.opts.onRefused?.(err);
          });
        }),
      );
      r.on('message', (ctx: EventContext) => this.onMessage(r, ctx));
      r.add_credit(this.credit);
      this.processing.set(r, 0);
      this.receivers.push(r);
    }
    this.attached = Promise.all(opens).then(() => undefined);
  }

  private onMessage(receiver: Receiver, ctx: EventContext): void {
    const message = ctx.message!;
    const delivery = ctx.delivery!;
    // Counted from now, as an intermediary counts it (AMQP 1.0 §3.2.1); 0 is none, as proton sends it.
    const ttl = typeof message.ttl === 'number' && message.ttl > 0 ? message.ttl : undefined;
    const expiresAt = ttl === undefined ? undefined : performance.now() + ttl;
    let freed = false;
    this.processing.set(receiver, (this.processing.get(receiver) ?? 0) + 1);
    const free = () => {
      if (freed) return;
      freed = true;
      this.processing.set(receiver, (this.processing.get(receiver) ?? 1) - 1);
      // Locally open, not is_open(): a request that ends while the re-attach after a reconnect
      // waits for the router's answer gave its credit to nobody, and the server received less
      // from then on (with concurrency 1, nothing). rhea sends the flow after the attach.
      if (!this.stopped && locallyOpen(receiver)) receiver.add_credit(1);
    };
    // Cut off while it arrived (see incomingLimit): rejected already, and nothing of it is left,
    // not even the reply address, so the caller cannot be told; the server's log is.
    const cut = discardedBytes(delivery);
    if (cut !== undefined) {
      free();
      this.opts.listen.onInvalid?.(new MessageTooLarge(cut, this.opts.maxMessageSize), {
        address: (receiver.source as { address?: string }).address ?? '?',
        size: cut,
      });
      return;
    }
    const replyTo = typeof message.reply_to === 'string' ? message.reply_to : undefined;
    const correlationId = message.message_id;
    let decoded: ReturnType<typeof decodeRequest>;
    try {
      decoded = decodeRequest(message.body, this.opts.maxMessageSize, this.opts.maxJsonDepth);
    } catch (err) {
      const e = err instanceof Error ? err : new MalformedMessage(String(err));
      delivery.reject({ condition: 'amqp:decode-error', description: e.message });
      free();
      // A call deserves an answer even when its body is garbage: the caller stops waiting now.
      if (replyTo !== undefined && correlationId !== undefined) {
        try {
          this.opts.reply(replyTo, correlationId, badInputBody(e));
        } catch {
          /* connection gone */
        }
      }
      this.opts.listen.onInvalid?.(e, {
        address: (receiver.source as { address?: string }).address ?? '?',
        size: bodySize(message.body),
      });
      return;
    }
    const expectsReply = Boolean(replyTo && correlationId !== undefined);
    const cmt = decoded.callMonitorTimeout;
    const reply = this.opts.reply;
    let settled = false;
    const epoch = receivingEpoch(receiver);
    const presettled = remoteSettled(delivery);
    const settle = (fn: () => void) => {
      if (!settled) {
        settled = true;
        try {
          fn();
        } catch {
          /* link gone */
        }
      }
    };
    const stale = () => !presettled && receivingEpoch(receiver) !== epoch;
    const incoming: IncomingMessage = {
      ctx: decoded.ctx,
      message: decoded.message,
      expectsReply,
      callMonitorTimeout: cmt,
      ...(ttl === undefined ? {} : { ttl, expiresAt }),
      async reply(r: Reply) {
        if (!expectsReply) return;
        reply(replyTo!, correlationId, replyBody(r));
      },
      async heartbeat() {
        if (!expectsReply) return;
        reply(replyTo!, correlationId, undefined, cmt || undefined);
      },
      acknowledge: () => {
        // Taken on a connection that dropped since: the router gives it to a consumer again, and
        // its accept would go nowhere.
        // A presettled delivery is gone from the router once sent: nobody delivers it again, so
        // it runs whatever became of the connection.
        if (stale()) {
          settled = true;
          return false;
        }
        settle(() => delivery.accept());
        return true;
      },
      stale,
      requeue: () => {
        settle(() => delivery.release());
        free();
      },
      done: () => free(),
    };
    this.opts.listen.onMessage(incoming);
  }

  /**
   * After a reconnect rhea re-attaches the receivers with zero credit; grant what the
   * messages still being processed from the old connection leave free.
   */
  reattached(): void {
    if (this.stopped) return;
    for (const r of this.receivers) {
      // Less what the link holds already: a request that ended between rhea's reconnect (credit
      // reset to 0) and this open gave its credit back to the link itself.
      const free = this.credit - (this.processing.get(r) ?? 0) - linkCredit(r);
      if (free > 0) r.add_credit(free);
    }
  }

  /**
   * Takes no new messages: asks each sender to drain the credit it still holds and grants no more.
   * The links stay attached, so deliveries already taken can still be accepted or released; a
   * message that was on the wire arrives anyway and is released by the server or listener above.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const r of this.receivers) {
      try {
        if (r.is_open()) r.drain_credit();
      } catch {
        /* link or connection gone */
      }
    }
  }

  /** Detaches the receivers; deliveries not settled by now go back to their senders. */
  async close(): Promise<void> {
    await this.stop();
    if (this.closed) return;
    this.closed = true;
    for (const r of this.receivers) {
      try {
        r.close();
      } catch {
        /* already closed */
      }
    }
    this.onStop?.();
  }
}
