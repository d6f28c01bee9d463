import type { Channel, Message } from 'amqplib';

/**
 * How long a quiet channel's acknowledgements may wait for company. A server answering one call
 * at a time would otherwise write one 21-byte frame per call, and on loopback every write costs
 * the sender the receiver's work too and wakes the broker: in the sequential bench that write
 * was a fifth of the server's CPU per call.
 */
export const QUIET_ACK_DELAY_MS = 10;

/**
 * The acknowledgements of one consuming channel, sent once per tick: the longest run of settled
 * deliveries from the oldest unsettled one goes as one `basic.ack` with `multiple`, the rest one
 * by one. A server at 64 calls in flight acks many requests per tick; one frame instead of one
 * each saves the server encoding and the broker parsing them. `multiple` acknowledges every
 * outstanding tag up to the one named, so it is only used up to the first delivery not yet
 * acknowledged (a request still queued, or one requeued).
 *
 * While fewer than half the prefetch are unacknowledged on the broker, acknowledgements wait up
 * to {@link QUIET_ACK_DELAY_MS} instead of the end of the tick: nothing waits on them then (the
 * broker still has credit to deliver), and one frame carries the acks of many calls. From half
 * the prefetch on they leave at the end of the tick, so a busy consumer never stalls on credit.
 * A server killed inside that window has those requests delivered again, as one killed before
 * the end of a tick always had.
 */
export class TickAcks {
  /** Delivered and neither flushed nor requeued, in delivery (tag) order. */
  private readonly open: number[] = [];
  /**
   * Beside `open`, whether each was acknowledged (waiting for the end of the tick). Flags in an
   * array, not a Set of tags: the Set was cleared every flush, and each clear made V8 a new
   * table, thousands per second on a busy server.
   */
  private readonly acked: boolean[] = [];
  /** Acknowledged tags that were never recorded as delivered: acked one by one. */
  private readonly stray: number[] = [];
  private waiting = 0;
  private scheduled = false;
  /**
   * One timer, re-armed (`refresh`) for each quiet batch rather than made anew. Not cleared when
   * the tick flushes first (a cleared timer cannot be re-armed): it then fires into nothing.
   */
  private timer: NodeJS.Timeout | undefined;
  private timerArmed = false;
  /** Unacknowledged deliveries from which acks leave at the end of the tick. */
  private readonly eager: number;

  /** @param prefetch the consumers' per-consumer prefetch (1 acks every delivery in its tick). */
  constructor(
    private readonly ch: Channel,
    prefetch = 1,
    /** How long quiet acks wait ({@link QUIET_ACK_DELAY_MS}; tests lengthen it to stay clear of a loaded machine's pauses). */
    private readonly quietDelayMs = QUIET_ACK_DELAY_MS,
  ) {
    this.eager = Math.max(1, prefetch >> 1);
  }

  delivered(msg: Message): void {
    this.open.push(msg.fields.deliveryTag);
    this.acked.push(false);
  }

  ack(msg: Message): void {
    const tag = msg.fields.deliveryTag;
    const i = this.open.indexOf(tag);
    if (i < 0) this.stray.push(tag);
    else if (!this.acked[i]) this.acked[i] = true;
    else return;
    this.waiting++;
    if (this.scheduled) return;
    if (this.open.length + this.stray.length >= this.eager) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    } else if (!this.timerArmed) {
      this.timerArmed = true;
      if (this.timer) this.timer.refresh();
      else {
        this.timer = setTimeout(() => {
          this.timerArmed = false;
          this.flush();
        }, this.quietDelayMs);
        // A consumer that stops flushes first; an abandoned channel needs nothing acknowledged.
        this.timer.unref();
      }
    }
  }

  /** Requeues now (a requeued message should be redelivered without waiting). */
  requeue(msg: Message): void {
    const i = this.open.indexOf(msg.fields.deliveryTag);
    if (i >= 0) {
      if (this.acked[i]) this.waiting--;
      this.open.splice(i, 1);
      this.acked.splice(i, 1);
    }
    this.ch.nack(msg, false, true);
  }

  /** Sends what is waiting; also called before the channel closes, so that no acknowledgement is lost. */
  flush(): void {
    this.scheduled = false;
    if (this.waiting === 0) return;
    this.waiting = 0;
    let n = 0;
    while (n < this.open.length && this.acked[n]) n++;
    const last = n > 0 ? this.open[n - 1]! : -1;
    const single: number[] = this.stray.splice(0);
    if (n > 0) {
      this.open.splice(0, n);
      this.acked.splice(0, n);
    }
    for (let i = 0; i < this.open.length; ) {
      if (this.acked[i]) {
        single.push(this.open[i]!);
        this.open.splice(i, 1);
        this.acked.splice(i, 1);
      } else i++;
    }
    try {
      if (last >= 0) this.ch.ack({ fields: { deliveryTag: last } } as Message, true);
      for (const tag of single) this.ch.ack({ fields: { deliveryTag: tag } } as Message, false);
    } catch {
      /* channel gone: the broker requeues what was not acknowledged */
    }
  }
}
