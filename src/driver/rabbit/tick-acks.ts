import type { Channel, Message } from 'amqplib';

/**
 * The acknowledgements of one consuming channel, sent once per tick: the longest run of settled
 * deliveries from the oldest unsettled one goes as one `basic.ack` with `multiple`, the rest one
 * by one. A server at 64 calls in flight acks many requests per tick; one frame instead of one
 * each saves the server encoding and the broker parsing them. `multiple` acknowledges every
 * outstanding tag up to the one named, so it is only used up to the first delivery not yet
 * acknowledged (a request still queued, or one requeued).
 */
export class TickAcks {
  /** Delivered and neither flushed nor requeued, in delivery (tag) order. */
  private readonly open: number[] = [];
  /** Acknowledged, waiting for the end of the tick. */
  private readonly done = new Set<number>();
  private scheduled = false;

  constructor(private readonly ch: Channel) {}

  delivered(msg: Message): void {
    this.open.push(msg.fields.deliveryTag);
  }

  ack(msg: Message): void {
    this.done.add(msg.fields.deliveryTag);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Requeues now (a requeued message should be redelivered without waiting). */
  requeue(msg: Message): void {
    const i = this.open.indexOf(msg.fields.deliveryTag);
    if (i >= 0) this.open.splice(i, 1);
    this.ch.nack(msg, false, true);
  }

  /** Sends what is waiting; also called before the channel closes, so that no acknowledgement is lost. */
  flush(): void {
    this.scheduled = false;
    if (this.done.size === 0) return;
    let last = -1;
    while (this.open.length > 0 && this.done.has(this.open[0]!)) {
      last = this.open.shift()!;
      this.done.delete(last);
    }
    try {
      if (last >= 0) this.ch.ack({ fields: { deliveryTag: last } } as Message, true);
      for (const tag of this.done) {
        this.open.splice(this.open.indexOf(tag), 1);
        this.ch.ack({ fields: { deliveryTag: tag } } as Message, false);
      }
    } catch {
      /* channel gone: the broker requeues what was not acknowledged */
    }
    this.done.clear();
  }
}
