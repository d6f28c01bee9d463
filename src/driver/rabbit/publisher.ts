import type { Channel, ChannelModel, ConfirmChannel, Message } from 'amqplib';
import { type DeadlineEntry, Deadlines } from '../../core/deadlines.js';
import { ConfigError, MessageDeliveryFailure, MessageUndeliverable, MessagingTimeout, TransportError } from '../../core/errors.js';
import { unenvelope } from '../envelope.js';
import type { RabbitConnection } from './connection.js';
import type { ExchangeRef, QueueBinding, Topology } from './topology.js';
import { publishProps } from './wire.js';

/** Writes (amqplib's chunks: one per publish under 2 KiB, two or three above) a publishing channel buffers before publish() waits for `drain`. */
const PUBLISH_HWM = 256;

/** AMQP reply codes with which the broker refuses an operation: ACCESS_REFUSED, NOT_FOUND, PRECONDITION_FAILED. */
const REFUSALS = new Set([403, 404, 406]);

/**
 * Whether `err` is a broker refusal that resending cannot change. amqplib puts the
 * channel.close frame's `replyCode` on the error as a numeric `code` (hermod's errors have
 * string codes).
 */
function isRefusal(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' && REFUSALS.has(code);
}

const QUOTED = "'((?:[^'\\\\]|\\\\.)*)'";
const REFUSED_TOPIC = new RegExp(`topic ${QUOTED} in exchange ${QUOTED}`);
const REFUSED_EXCHANGE = new RegExp(`exchange ${QUOTED}`);

/**
 * What a broker's refusal names: the exchange (`403 … access to exchange 'x' … refused`, `404 …
 * no exchange 'x' …`; `''` for the default one, `amq.default`), and with a topic permission
 * (`403 … write access to topic 'k' in exchange 'x' …`) the routing key it refused, which only
 * that key's publishes to the exchange share. Undefined when it names no exchange.
 */
export function refusedRoute(err: Error): { exchange: string; key?: string } | undefined {
  const topic = REFUSED_TOPIC.exec(err.message);
  if (topic) return { exchange: topic[2] === 'amq.default' ? '' : topic[2]!, key: topic[1]! };
  const named = REFUSED_EXCHANGE.exec(err.message)?.[1];
  return named === undefined ? undefined : { exchange: named === 'amq.default' ? '' : named };
}

/** Whether a publish to `exchange` with `key` is of the kind `route` describes. */
export function refusedAlike(route: { exchange: string; key?: string }, exchange: string | undefined, key: string | undefined): boolean {
  return route.exchange === exchange && (route.key === undefined || route.key === key);
}

/** Where a returned message was sent, for MessageUndeliverable: to the default exchange, a key names a queue. */
export function returnedFrom(exchange: string | undefined): string {
  return exchange ? `exchange '${exchange}'` : 'the default exchange (no queue of that name)';
}

/**
 * A call request's per-message expiration: the time left, in whole milliseconds (at least 1);
 * undefined for a confirmed publish or with `expires` off.
 */
function expiration(p: Publication): string | undefined {
  return p.expires && !p.confirm ? String(Math.max(1, Math.round(p.deadline - Date.now()))) : undefined;
}

/** One message to publish, and how. */
export interface Publication {
  /**
   * Undefined: the default exchange `""`, routed by queue name (replies, and calls and casts
   * with `rabbit.requestRouting` = queue).
   */
  exchange: ExchangeRef | undefined;
  key: string;
  body: string;
  /** The body's `_unique_id`: matches a basic.return to its confirmed publish. */
  uniqueId: string;
  mandatory: boolean;
  /**
   * true: wait for the broker's publisher confirm. false: a call request, sent on a plain
   * channel; its reply is the confirmation.
   */
  confirm: boolean;
  /**
   * A call request (`confirm` false) carries the time left as its expiration, as oslo's do;
   * false with `rabbit.requestExpiration` off. Required so that no call request loses it by
   * omission; ignored when `confirm` is true.
   */
  expires: boolean;
  /** A queue to declare and bind first (the notifier's, so notifications wait for a listener). */
  declare?: QueueBinding;
  deadline: number;
  /** Resends after a connection loss: -1 until the deadline, 0 none, N at most N. */
  retry: number;
  /** Names the message in errors (`call add`, `reply to <id>`). */
  what: string;
}

interface Channels {
  /** Call requests: no confirms. */
  calls: Channel;
  /** The number of the first call request sent on `calls` (see {@link Publisher.lastCall}). */
  firstCall: number;
  /** Everything else: publisher confirms. */
  confirms: ConfirmChannel;
  /**
   * Exchange and queue declares, on a channel of their own, opened at the first one. A declare
   * the broker refuses (406: other flags than a peer's, as oslo 14's non-durable fanout exchange
   * against transient quorum queues) closes its channel: on the confirm channel that failed every
   * publish awaiting its confirm, and those were sent again, though the broker had routed them
   * before the declare: casts ran twice, on two servers of a pool.
   */
  declares: Promise<Channel> | undefined;
  model: ChannelModel;
}

/** Exchanges and notifier queues a {@link Publisher} remembers as declared. */
export const MAX_DECLARED = 4096;

/**
 * Publishes on one connection: a plain channel for call requests and a confirm channel for
 * the rest, with one retry loop for both. It resends after a channel or connection loss while
 * the deadline and `retry` allow (receivers drop duplicates by `_unique_id`), waits for `drain`
 * when amqplib's buffer is full, declares each exchange once per channel, and turns broker
 * answers into typed errors: a refusal (403/404/406) or nack into MessageDeliveryFailure, a
 * returned mandatory message into MessageUndeliverable.
 */
export class Publisher {
  private chans: Channels | undefined;
  private opening: Promise<Channels> | undefined;
  /** Exchanges and notifier queues declared on the current channels (at most {@link MAX_DECLARED}). */
  private declared = new Set<string>();
  /** Exchange declares on their way, by name, with the channel each went out on (see declare). */
  private readonly declaring = new Map<string, { ch: Channel; done: Promise<void> }>();
  /**
   * `_unique_id`s of confirmed mandatory publishes the broker returned, until their confirm
   * comes. RabbitMQ sends a basic.return before the basic.ack of the same message, on the same
   * channel, and amqplib calls back in frame order, so the confirm callback finds its return
   * here. Nothing is kept per publish: a table of every reply in flight (a SlotMap of
   * `{ returned }` entries) cost each reply a map insert and delete and an object, while
   * returns are rare.
   */
  private returned = new Set<string>();
  private drained: Promise<void> | undefined;
  private drainResolve: (() => void) | undefined;
  /**
   * Deadlines of publishes waiting on the broker: for their confirm, and on the slow path for a
   * declare or a `drain`. A broker that blocked the connection (memory or disk alarm) stops
   * reading it, and none of those would otherwise end before it unblocks.
   */
  private readonly deadlines = new Deadlines();
  /**
   * The refusal with which the broker closed a publishing channel (`403 ACCESS_REFUSED - access to
   * exchange 'x' … refused`). amqplib fails every publish still
   * waiting for its confirm on that channel with a bare "channel closed", the refused one
   * included: taken for a connection loss, a refused reply was resent every 20 ms until twice
   * its deadline, holding its server's slot all that while.
   */
  private readonly refusals = new WeakMap<Channel, Error>();
  /**
   * The number of the call request last handed to amqplib: call requests are numbered in the
   * order they are written, across channels, so that a refusal can tell which went out after
   * the refused one (see `onCallsRefused`).
   */
  private callSeq = 0;

  /**
   * `onCallReturned` gets call requests the broker returned (mandatory, nobody bound);
   * `onCallsRefused` the numbers of the call requests sent on a calls channel the broker closed
   * with a refusal (403/404/406), and that refusal, for the driver to judge. Call requests have no confirm to fail, so
   * without it they waited for replies that could not come.
   */
  constructor(
    private readonly conn: RabbitConnection,
    private readonly topology: Topology,
    private readonly onCallReturned: (msg: Message) => void,
    private readonly onCallsRefused: (from: number, to: number, refusal: Error) => void = () => {},
  ) {}

  /** The number of the call request last handed to amqplib (0 before the first). */
  get lastCall(): number {
    return this.callSeq;
  }

  /** Setup hook: opens the channels on every (re)connect. */
  async setup(model: ChannelModel): Promise<void> {
    await this.open(model);
  }

  private async open(model: ChannelModel): Promise<Channels> {
    // Call requests go on a plain channel: their reply is the confirmation, and skipping the
    // broker's basic.ack per request saves a frame each way. Unroutable calls still come back
    // (mandatory) as basic.return and fail with MessageUndeliverable.
    // amqplib buffers up to 1024 writes per channel (a frame each at most: 128 MiB at frameMax) before it says "full";
    // a smaller mark makes publish() wait for `drain` while the broker is not reading.
    const calls = await model.createChannel({ highWaterMark: PUBLISH_HWM } as never);
    this.watch(calls);
    calls.on('return', (msg: Message) => this.onCallReturned(msg));
    const confirms = await model.createConfirmChannel({ highWaterMark: PUBLISH_HWM } as never);
    this.watch(confirms);
    confirms.on('return', (msg: Message) => this.onReturn(msg));
    const chans: Channels = { calls, firstCall: this.callSeq + 1, confirms, declares: undefined, model };
    this.chans = chans;
    this.declared = new Set();
    // Returns seen on the old channels: their publishes failed with it (or are being resent).
    this.returned = new Set();
    return chans;
  }

  private watch(ch: Channel): void {
    // The broker's reason for closing it, for the publishes it fails (see refusedHere).
    ch.on('error', (err: Error) => {
      if (!isRefusal(err)) return;
      this.refusals.set(ch, err);
      // Emitted before 'close': the channels are still the current ones.
      const c = this.chans;
      if (c?.calls === ch && this.callSeq >= c.firstCall) this.onCallsRefused(c.firstCall, this.callSeq, err);
    });
    ch.on('drain', () => this.releaseDrain());
    ch.on('close', () => {
      const c = this.chans;
      if (c && (c.calls === ch || c.confirms === ch)) {
        // The broker closed one of them (a refused publish) or the connection went: both are
        // re-opened together on the next publish.
        this.chans = undefined;
        (c.calls === ch ? c.confirms : c.calls).close().catch(() => {});
        void c.declares?.then((d) => d.close()).catch(() => {});
      }
      // Publishes waiting for this channel's drain go on, and find the channel gone.
      this.releaseDrain();
    });
  }

  /** The declares channel of `chans`, opened at its first use and again after the broker closed it. */
  private declareChannel(chans: Channels): Promise<Channel> {
    if (chans.declares) return chans.declares;
    const opening = chans.model.createChannel().then((ch) => {
      // A refused declare closes it alone; its error is the declare's own, read there.
      ch.on('error', () => {});
      ch.on('close', () => {
        if (chans.declares === opening) chans.declares = undefined;
      });
      return ch;
    });
    opening.catch(() => {
      if (chans.declares === opening) chans.declares = undefined;
    });
    chans.declares = opening;
    return opening;
  }

  /** amqplib's buffer is full: later publishes wait for its `drain`. */
  private awaitDrain(): void {
    this.drained ??= new Promise((r) => {
      this.drainResolve = r;
    });
  }

  private releaseDrain(): void {
    const d = this.drainResolve;
    this.drainResolve = undefined;
    this.drained = undefined;
    d?.();
  }

  private onReturn(msg: Message): void {
    try {
      const id = unenvelope(msg.content)._unique_id;
      if (typeof id === 'string') this.returned.add(id);
    } catch {
      /* not ours */
    }
  }

  /** Waits for the connection, then for channels (re-opening them if the broker closed them). */
  private async channels(p: Publication): Promise<Channels> {
    for (;;) {
      const model = await this.conn.ready(p.deadline, p.retry, p.what);
      if (this.chans) return this.chans;
      try {
        this.opening ??= this.open(model).finally(() => {
          this.opening = undefined;
        });
        return await this.opening;
      } catch {
        // The connection is going away: ready() waits for the next one.
        if (Date.now() >= p.deadline) throw new MessagingTimeout(`timed out waiting for a channel to send ${p.what}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }

  /** The channels when `p` can be handed to amqplib right now: open, nothing to declare first, no `drain` awaited. */
  private ready(p: Publication): Channels | undefined {
    const chans = this.chans;
    return chans && this.conn.isOpen && !this.drained && !this.undeclared(p) ? chans : undefined;
  }

  /** Whether `p` needs an exchange or notifier queue not yet declared on the current channels. */
  private undeclared(p: Publication): boolean {
    return (p.exchange !== undefined && !this.declared.has(p.exchange.name)) || p.declare !== undefined;
  }

  private async declare(ch: Channel, p: Publication): Promise<void> {
    const ex = p.exchange;
    if (ex && !this.declared.has(ex.name)) {
      // Publishes to an exchange not declared yet share one declare: a batch of calls made
      // before the first one's declare came back each declared it again, and each went out
      // in a write of its own, once its own declare-ok was read.
      let declaring = this.declaring.get(ex.name);
      if (!declaring || declaring.ch !== ch) {
        declaring = {
          ch,
          done: this.topology.declareExchange(ch, ex).finally(() => {
            if (this.declaring.get(ex.name) === declaring) this.declaring.delete(ex.name);
          }),
        };
        this.declaring.set(ex.name, declaring);
      }
      await declaring.done;
      // Not kept when the broker deletes it by itself: a fanout cast after the topic's last
      // server stopped went to an exchange no longer there, and the broker's 404 closed both
      // publishing channels (failing other publishes under way) and read as a lost connection.
      if (!this.topology.autoDeleted(ex)) this.remember(ex.name);
    }
    const b = p.declare;
    const key = b && `queue:${b.exchange.name}:${b.key}`;
    if (b && key && !this.declared.has(key)) {
      await this.topology.declareBinding(ch, b);
      this.remember(key);
    }
  }

  /**
   * Notes a declared name. Past {@link MAX_DECLARED} the set starts again: declares are
   * idempotent, so forgetting costs one more declare per name, while keeping every name held
   * memory for each notification topic a long-lived process ever used until it reconnected
   * (about 190 bytes a topic, for applications that make topic names up).
   */
  private remember(name: string): void {
    if (this.declared.size >= MAX_DECLARED) this.declared.clear();
    this.declared.add(name);
  }

  /**
   * Hands a call request (no confirm) to amqplib at once when nothing stands in the way: the
   * channels are open, the exchange declared, no `drain` awaited. Returns false, having sent
   * nothing, when something does; {@link publish} then takes its usual path. A call makes no
   * promise and no async frames here: in a profile of the allocations per call, the client's
   * async publish path was the largest share after the driver's own send.
   */
  publishNow(p: Publication): boolean {
    const chans = p.confirm ? undefined : this.ready(p);
    if (!chans) return false;
    const props = publishProps(p.mandatory, expiration(p));
    let ok: boolean;
    try {
      ok = chans.calls.publish(p.exchange?.name ?? '', p.key, Buffer.from(p.body, 'utf8'), props);
      this.callSeq++;
    } catch {
      // A closing channel, or a message amqplib cannot encode: publish() resends or explains.
      return false;
    }
    if (!ok) this.awaitDrain();
    return true;
  }

  /**
   * Publishes `p`; resolves once the broker confirmed it (or, for calls, once it is written).
   * Connected, with the channels open, the exchange declared and no `drain` awaited, the message
   * goes to amqplib in this tick with one promise (every reply and cast takes this path); the
   * rest, and every failure, goes through {@link resend}'s loop.
   */
  publish(p: Publication): Promise<void> {
    // The same promise: its number is for publishCall's callers only.
    return this.publishCall(p) as Promise<unknown> as Promise<void>;
  }

  /** {@link publish}, resolving with a call request's number ({@link lastCall}; 0 for a confirmed publish). */
  publishCall(p: Publication): Promise<number> {
    const content = Buffer.from(p.body, 'utf8');
    const chans = this.ready(p);
    if (!chans) return this.resend(p, content, undefined, undefined);
    return this.send(p.confirm ? chans.confirms : chans.calls, p, content).then(undefined, (err: unknown) =>
      this.resend(p, content, err, chans),
    );
  }

  /**
   * The slow path: judges `failed` (the error of an attempt on `failedOn`) when given, then
   * waits for channels, declares, waits for `drain` and sends, until sent or out of budget.
   */
  private async resend(p: Publication, content: Buffer, failed: unknown, failedOn: Channels | undefined): Promise<number> {
    let attempts = 0;
    let err = failed;
    let on = failedOn;
    for (;;) {
      if (on !== undefined) {
        attempts = this.judge(p, err, on, attempts);
        await new Promise((r) => setTimeout(r, 20));
      }
      const chans = this.chans && this.conn.isOpen ? this.chans : await this.channels(p);
      try {
        if (this.undeclared(p)) {
          const declaring = this.declareChannel(chans).then((ch) => this.declare(ch, p));
          await this.beforeDeadline(declaring, p, 'declaring its exchange or queue');
        }
        while (this.drained) await this.beforeDeadline(this.drained, p, 'waiting for the broker to read');
        return await this.send(p.confirm ? chans.confirms : chans.calls, p, content);
      } catch (e) {
        err = e;
        on = chans;
      }
    }
  }

  /**
   * Throws the typed error for a failed attempt when resending cannot help or the budget is
   * spent; returns the attempts counted so far when another one may go.
   */
  private judge(p: Publication, err: unknown, chans: Channels, attempts: number): number {
    // A refused declare (inequivalent flags) is a ConfigError: resending cannot help. A
    // MessagingTimeout is the deadline passing while the broker held the publish.
    if (err instanceof MessageDeliveryFailure || err instanceof ConfigError || err instanceof MessagingTimeout) throw err;
    const msg = (err as Error)?.message ?? String(err);
    if (isRefusal(err)) {
      throw new MessageDeliveryFailure(`${p.what}: the broker refused it: ${msg}`, { cause: err });
    }
    // The channel went with a refusal of this publish's exchange: it was this one, or one like
    // it, which the broker would refuse alike. A refusal of another exchange leaves it innocent.
    const refusal = this.refusedHere(p, chans);
    if (refusal) throw new MessageDeliveryFailure(`${p.what}: the broker refused it: ${refusal.message}`, { cause: refusal });
    // amqplib fails a nacked publish with a bare `Error('message nacked')`: no code to read.
    // A nack while the channel still stands is the broker's answer, not a loss.
    if (p.confirm && /nack/i.test(msg) && this.conn.isOpen && this.chans === chans) {
      throw new MessageDeliveryFailure(`${p.what}: the broker nacked it`, { cause: err });
    }
    // The channel or connection went away before the confirm: resend if allowed. A call
    // request has no confirm to lose; its budget is the connection's (ready()) and the deadline.
    if (p.confirm && p.retry >= 0 && attempts + 1 > p.retry) {
      throw new TransportError(`${p.what}: connection lost before the broker confirmed it (${msg}; retry=${p.retry})`, { cause: err });
    }
    if (Date.now() >= p.deadline) {
      throw new MessagingTimeout(
        `${p.what}: ${p.confirm ? 'not confirmed by the broker' : 'could not be sent'} before the deadline (${msg})`,
      );
    }
    return p.confirm ? attempts + 1 : attempts;
  }

  /**
   * The permission refusal (403) that closed `chans` if it names `p`'s exchange (the default one
   * is `amq.default`). Not a 404: an exchange deleted under us is declared again on the next
   * channel, and the resend gets through.
   */
  private refusedHere(p: Publication, chans: Channels): Error | undefined {
    const refusal = this.refusals.get(chans.confirms) ?? this.refusals.get(chans.calls);
    if (!refusal || (refusal as { code?: unknown }).code !== 403) return undefined;
    // A topic permission refuses one routing key: the exchange's other keys are innocent.
    const route = refusedRoute(refusal);
    return route && refusedAlike(route, p.exchange?.name ?? '', p.key) ? refusal : undefined;
  }

  /** `step` of `p`'s slow path, or MessagingTimeout at `p.deadline` if it has not settled by then. */
  private beforeDeadline<T>(step: Promise<T>, p: Publication, doing: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const entry: DeadlineEntry = {
        deadline: p.deadline,
        expire: () => reject(new MessagingTimeout(`${p.what}: not sent before the deadline (still ${doing}; is the broker blocked?)`)),
      };
      const slot = this.deadlines.add(entry);
      step.then(
        (v) => {
          this.deadlines.remove(slot, entry);
          resolve(v);
        },
        (err: unknown) => {
          this.deadlines.remove(slot, entry);
          reject(err);
        },
      );
    });
  }

  /**
   * One attempt: hands the message to amqplib and, on the confirm channel, settles on the
   * confirm (MessageUndeliverable when the broker returned it first), or with MessagingTimeout
   * at the deadline when no confirm came (a blocked broker holds it). A confirm after that is
   * only cleaned up after: amqplib still calls back once the broker acks. Resolves as
   * {@link publish} does.
   */
  private send(ch: Channel, p: Publication, content: Buffer): Promise<number> {
    const props = publishProps(p.mandatory, expiration(p));
    const exchange = p.exchange?.name ?? '';
    return new Promise<number>((resolve, reject) => {
      let settled = false;
      let waiting: DeadlineEntry | undefined;
      let waitingSlot = -1;
      const fail = (err: unknown) => {
        if (this.returned.size > 0) this.returned.delete(p.uniqueId);
        reject(err);
      };
      let ok: boolean;
      try {
        ok = p.confirm
          ? (ch as ConfirmChannel).publish(exchange, p.key, content, props, (err) => {
              // The return of a message confirmed after its deadline must not stay in the set.
              const returned = this.returned.size > 0 && this.returned.delete(p.uniqueId);
              if (settled) return;
              settled = true;
              if (waiting) this.deadlines.remove(waitingSlot, waiting);
              if (err) return reject(err);
              if (!returned) return resolve(0);
              reject(
                new MessageUndeliverable(
                  `${p.what}: no queue is bound for ${returnedFrom(p.exchange?.name)} routing key '${p.key}' (returned by the broker)`,
                ),
              );
            })
          : ch.publish(exchange, p.key, content, props);
        if (!p.confirm) this.callSeq++;
      } catch (err) {
        // amqplib throws IllegalOperationError on a closing channel: a loss, resent by the loop.
        // Anything else is a message it cannot encode (a routing key over 255 bytes): resending cannot help.
        if ((err as Error | null)?.name === 'IllegalOperationError') fail(err);
        else
          fail(
            new MessageDeliveryFailure(`${p.what}: cannot be published: ${(err as Error | null)?.message ?? String(err)}`, { cause: err }),
          );
        return;
      }
      if (!ok) this.awaitDrain();
      if (!p.confirm) return resolve(this.callSeq);
      if (settled) return;
      waiting = {
        deadline: p.deadline,
        expire: () => {
          settled = true;
          reject(
            new MessagingTimeout(
              `${p.what}: not confirmed by the broker before the deadline (is it blocked? it may still deliver the message once it reads it)`,
            ),
          );
        },
      };
      waitingSlot = this.deadlines.add(waiting);
    });
  }
}
