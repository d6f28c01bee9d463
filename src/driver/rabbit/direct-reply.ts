import type { Channel, ChannelModel } from 'amqplib';
import { MessagingTimeout, TransportError } from '../../core/errors.js';
import type { ReplyWaiter } from '../reply-waiter.js';
import { compressionOf } from './compression.js';
import type { RabbitConnection } from './connection.js';
import { ReplyDispatch, type ReplyLimits } from './reply-dispatch.js';

/** RabbitMQ's pseudo-queue for direct reply-to: consumed without acks, never declared. */
export const DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to';

/** How long learning the channel's reply-to address may take (one message to itself). */
const LEARN_TIMEOUT_MS = 10_000;

/**
 * The `rabbit.directReplyTo` mode: replies come to RabbitMQ's direct reply-to pseudo-queue of
 * one channel instead of a `reply_<uuid>` queue, so there is no reply queue to declare, no
 * acknowledgement per reply and no queue in the broker's path. Calls name the channel's address
 * (`amq.rabbitmq.reply-to.<key>`) as their `_reply_q`; an oslo server answers to the default
 * exchange with that routing key, which is how RabbitMQ routes a direct reply.
 *
 * The address lives as long as the channel. When the channel or connection goes, the replies
 * of calls in flight have nowhere to go: those calls fail at once with TransportError (never at
 * their timeout), and later calls name the new channel's address.
 */
export class DirectReplyTo {
  /** The current channel's address, `amq.rabbitmq.reply-to.<key>`; empty while there is none. */
  name = '';
  /** A call has needed it: the setup hook opens it again on every reconnect from then on. */
  private wanted = false;
  private channel: Channel | undefined;
  private opening: { model: ChannelModel; done: Promise<void> } | undefined;
  private readonly dispatch: ReplyDispatch;
  /** Stands for the current address in the waiter: calls published naming it (see ReplyWaiter.published). */
  private address: object = {};

  constructor(
    private readonly conn: RabbitConnection,
    private readonly waiter: ReplyWaiter,
    limits: ReplyLimits,
  ) {
    this.dispatch = new ReplyDispatch(waiter, limits);
  }

  /** Setup hook: opens a new channel (and address) on a reconnect, once a call has used one. */
  async setup(model: ChannelModel): Promise<void> {
    if (this.wanted) await this.open(model);
  }

  /** Opens the channel and learns its address if not yet done; waits for the connection within the call's budget. */
  ensure(deadline: number, retry: number, what: string): Promise<void> | undefined {
    if (this.channel) return undefined;
    this.wanted = true;
    return (async () => {
      const model = await this.conn.ready(deadline, retry, what);
      await this.open(model);
    })();
  }

  /**
   * The request of call `msgId`, naming `replyTo`, has been published. If the channel changed
   * since the request was built, its reply cannot arrive: the call fails now.
   */
  sent(msgId: string, replyTo: string, seq: number, sentTo: string, sentKey: string): void {
    if (replyTo === this.name) this.waiter.published(msgId, this.address, seq, sentTo, sentKey);
    else this.waiter.fail(msgId, this.lostError('was replaced while the request was sent'));
  }

  /** Direct reply-to replies are not acknowledged (consumed with noAck). */
  flushAcks(): void {}

  /** Direct reply-to replies need no acknowledgement. */
  async settle(): Promise<void> {}

  /** Drops what is kept for a call that has ended. */
  forget(msgId: string): void {
    this.dispatch.forget(msgId);
  }

  private open(model: ChannelModel): Promise<void> {
    // The reconnect hook and the first call may both get here for one connection.
    if (this.opening?.model === model) return this.opening.done;
    const done = this.doOpen(model);
    const opening = { model, done };
    this.opening = opening;
    done.catch(() => {
      if (this.opening === opening) this.opening = undefined;
    });
    return done;
  }

  private async doOpen(model: ChannelModel): Promise<void> {
    const ch = await model.createChannel();
    ch.on('error', () => {});
    const closed = new Promise<never>((_, reject) => {
      ch.once('close', () => {
        this.lost(ch, model);
        reject(new TransportError('the direct reply-to channel closed while it was being opened'));
      });
    });
    closed.catch(() => {});
    await Promise.race([
      ch.consume(DIRECT_REPLY_TO, (msg) => msg && this.dispatch.onReply(msg.content, compressionOf(msg.properties.headers)), {
        noAck: true,
      }),
      closed,
    ]);
    this.name = await Promise.race([learnAddress(ch), closed]);
    this.channel = ch;
  }

  /** The channel went (connection lost, broker closed it): calls in flight cannot get their replies. */
  private lost(ch: Channel, model: ChannelModel): void {
    if (this.opening?.model === model) this.opening = undefined;
    if (this.channel !== ch) return;
    this.channel = undefined;
    this.name = '';
    const err = this.lostError('closed (connection lost?)');
    const address = this.address;
    this.address = {};
    this.waiter.failVia(address, err);
  }

  private lostError(what: string): TransportError {
    return new TransportError(
      `the direct reply-to channel (rabbit.directReplyTo) ${what}: the reply of a call in flight cannot arrive, so the call fails now`,
    );
  }
}

/**
 * The channel's direct reply-to address. RabbitMQ tells it only by rewriting the `reply_to`
 * of a message the channel publishes, so the channel sends one empty message to a queue of its
 * own and reads it back. oslo servers reply to the `_reply_q` in the body, not to `reply_to`,
 * so hermod must know the address before it builds a request.
 */
async function learnAddress(ch: Channel): Promise<string> {
  const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
  let timer: NodeJS.Timeout | undefined;
  try {
    const got = new Promise<string>((resolve, reject) => {
      timer = setTimeout(() => reject(new MessagingTimeout('RabbitMQ did not return the direct reply-to probe')), LEARN_TIMEOUT_MS);
      void ch.consume(queue, (msg) => msg && resolve(String(msg.properties.replyTo ?? '')), { noAck: true }).catch(reject);
    });
    ch.sendToQueue(queue, Buffer.alloc(0), { replyTo: DIRECT_REPLY_TO });
    const name = await got;
    if (!name.startsWith(`${DIRECT_REPLY_TO}.`)) {
      throw new TransportError(
        `the broker does not support direct reply-to (rabbit.directReplyTo): the probe came back with reply_to '${name}'`,
      );
    }
    return name;
  } finally {
    clearTimeout(timer);
    await ch.deleteQueue(queue).catch(() => {});
  }
}
