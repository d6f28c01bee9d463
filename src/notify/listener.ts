import { createHash } from 'node:crypto';
import { deferred } from '../core/deferred.js';
import { channels, publish } from '../core/diagnostics.js';
import {
  assertMs,
  ClosedError,
  InvalidArgument,
  InvalidTarget,
  MalformedMessage,
  ServerStopped,
  TransportError,
  textOf,
} from '../core/errors.js';
import { findPrototypeKey, notPlainError } from '../core/plain.js';
import { NoOpSerializer, type Serializer } from '../core/serializer.js';
import { assertOptions } from '../core/suggest.js';
import { MAX_NAME_BYTES, type Target } from '../core/target.js';
import { ABORT_GRACE_MS, assertDeadline, type WaitResult, type Work, WorkPool } from '../core/work-pool.js';
import type { IncomingMessage, Listener } from '../driver/driver.js';
import { closeLateSubscription, settleStoppedSubscription, untilAborted } from '../driver/driver-base.js';
import type { Transport } from '../transport.js';
import { type BatchedNotification, NotificationDispatcher, type NotificationResult, WIRE_PUBLISHER_ID } from './dispatcher.js';
import { PRIORITIES, type Priority } from './notifier.js';

/** Options of {@link NotificationListener}. */
export interface NotificationListenerOptions {
  /** Listeners sharing a pool name share one queue: each pool gets every notification once. */
  pool?: string;
  /**
   * A tap: a queue of this listener's own, deleted when it stops, so it sees a copy of every
   * notification and takes none from the topic's other listeners (a monitor, a debugging
   * session, a filter that must not swallow what others need). Not with `pool`; RabbitMQ and
   * memory only (a router keeps no queue).
   */
  tap?: boolean;
  /** Notifications handled at once (also the broker prefetch). Default `rpc.serverConcurrency`. */
  concurrency?: number;
  /** Batch mode: endpoints get arrays of up to `batchSize` notifications... */
  batchSize?: number;
  /** ...or whatever arrived within `batchTimeout` ms of the first. */
  batchTimeout?: number;
  /** Endpoints may requeue (default `notifications.allowRequeue`). */
  allowRequeue?: boolean;
  /** Requeues of one notification before it is dropped (default `notifications.redeliveryLimit`). */
  redeliveryLimit?: number;
  /** Converts payloads and contexts from their wire form. @default NoOpSerializer */
  serializer?: Serializer;
}

const LISTENER_OPTIONS: Record<keyof NotificationListenerOptions, true> = {
  pool: true,
  tap: true,
  concurrency: true,
  batchSize: true,
  batchTimeout: true,
  allowRequeue: true,
  redeliveryLimit: true,
  serializer: true,
};

/** Counters of a {@link NotificationListener}, for monitoring and tests. */
export interface NotificationListenerStats {
  /** Acknowledged after the endpoints ran. */
  handled: number;
  /**
   * Given back to the broker: on request, aborted by {@link NotificationListener.wait}, or left
   * to it because the connection they came on dropped before they were acknowledged.
   */
  requeued: number;
  /** Acknowledged without being handled after requeues past `redeliveryLimit`. */
  dropped: number;
  /** Endpoint methods that threw. */
  failed: number;
  /**
   * Malformed, acknowledged and reported on `hermod:message:invalid`: not decodable, without
   * priority or event type, an unknown priority, a prototype key, or what the serializer or a
   * publisher_id could not be read as.
   */
  invalid: number;
  /**
   * Copies of a notification already received (the same `_unique_id`, RabbitMQ), acknowledged
   * and not handed to the endpoints; one arriving while the first copy ran may have run too.
   */
  duplicates: number;
  /** Work running now: notifications, or batches in batch mode. */
  inFlight: number;
  /** Notifications taken but not started: waiting for a slot, or for their batch to fill. */
  queued: number;
  /** Work (notifications, or batches) cut short by a stop deadline or abort() and requeued. */
  aborted: number;
}

interface Parsed {
  incoming: IncomingMessage;
  msg: BatchedNotification;
}

type State = 'new' | 'starting' | 'running' | 'stopped';

/**
 * Receives notifications (oslo's notification listener): endpoints have one method per priority
 * (`info(ctx, publisherId, eventType, payload, metadata)`, or arrays of notifications in batch
 * mode) and an optional `filterRule`. Notifications are acknowledged after the endpoints ran
 * (at-least-once); a method that throws is logged on `hermod:notify:listener` and counts as
 * `requeue`, which is honoured only when requeue is allowed, and at most `redeliveryLimit` times.
 *
 * The lifecycle is the RPC server's: `start()`, `stop()` (no new notifications, at once; queued
 * ones go back to the broker), `wait(deadline)` → `{ completed, aborted }`, `abort()`, `stats()`.
 * A notification still being handled at the deadline is requeued, not acknowledged, whatever
 * `allowRequeue` says, so it is not lost; the endpoint's late result is ignored.
 */
export class NotificationListener {
  private readonly dispatcher: NotificationDispatcher;
  private readonly serializer: Serializer;
  private readonly concurrency: number;
  private readonly allowRequeue: boolean;
  private readonly redeliveryLimit: number;
  private readonly pool: WorkPool;
  private listener: Listener | undefined;
  /** A subscription a stop during start() did not wait for (closed by wait()). */
  private late: Promise<Listener | undefined> | undefined;
  /** Something was delivered before start() had its subscription: `late` may hold its acknowledgements. */
  private deliveredEarly = false;
  /** wait() has closed the subscription, or found none yet: one start() gets from now on is closed at once. */
  private released = false;
  private state: State = 'new';
  /** Settled by the first stop(): wait() called earlier waits for it. */
  private readonly stopCalled = deferred();
  /** Aborted by stop(): a subscription still being made gives up at once. */
  private readonly stopping = new AbortController();
  private batch: Parsed[] = [];
  private batchTimer: NodeJS.Timeout | undefined;
  private readonly requeues = new Map<string, number>();
  private readonly counts = { handled: 0, requeued: 0, dropped: 0, failed: 0, invalid: 0, duplicates: 0 };

  constructor(
    private readonly transport: Transport,
    private readonly targets: Target[],
    endpoints: object[],
    private readonly options: NotificationListenerOptions = {},
  ) {
    if (!Array.isArray(targets) || targets.length === 0) throw new InvalidTarget('a notification listener needs at least one target');
    assertOptions(options, LISTENER_OPTIONS, 'NotificationListener options');
    for (const t of targets) if (!t.topic) throw new InvalidTarget('notification targets need a topic');
    const conf = transport.config;
    this.serializer = options.serializer ?? new NoOpSerializer();
    this.concurrency = options.concurrency ?? conf.rpc.serverConcurrency;
    this.allowRequeue = options.allowRequeue ?? conf.notifications.allowRequeue;
    this.redeliveryLimit = options.redeliveryLimit ?? conf.notifications.redeliveryLimit;
    // A negative limit dropped every requeue at once.
    if (!Number.isInteger(this.redeliveryLimit) || this.redeliveryLimit < 0)
      throw new InvalidArgument(`redeliveryLimit must be an integer of 0 or more, got ${this.redeliveryLimit}`);
    if (options.batchSize !== undefined && !(Number.isInteger(options.batchSize) && options.batchSize >= 1)) {
      throw new InvalidArgument('batchSize must be a positive integer');
    }
    // As RPCServer checks its own: 0 became a prefetch of 0, which RabbitMQ reads as no limit at all.
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) {
      throw new InvalidArgument(`concurrency must be a whole number of at least 1, got ${this.concurrency}`);
    }
    // NaN or a negative delay fired the batch timer at once; a string was handed to setTimeout.
    assertMs('batchTimeout', options.batchTimeout, false);
    // Batching is batchSize's: a batchTimeout alone was taken and ignored, and the endpoints got
    // single notifications where their author expected arrays.
    if (options.batchTimeout !== undefined && options.batchSize === undefined)
      throw new InvalidArgument('batchTimeout needs batchSize: it bounds how long a batch waits to fill (give both to batch)');
    if (options.tap !== undefined && typeof options.tap !== 'boolean')
      throw new InvalidArgument(`tap must be true or false, got ${typeof options.tap}`);
    // The pool names a queue on RabbitMQ (an AMQP shortstr): past 255 bytes the listener's start
    // failed there with amqplib's "Field 'queue' is the wrong type", a TransportError, after
    // working on memory:// and the router. Refused on every driver, as a target's names are.
    if (options.pool !== undefined) {
      if (typeof options.pool !== 'string' || options.pool === '')
        throw new InvalidArgument(`pool must be a non-empty string, got ${JSON.stringify(options.pool)}`);
      const bytes = Buffer.byteLength(options.pool, 'utf8');
      if (bytes > MAX_NAME_BYTES)
        throw new InvalidArgument(
          `pool ${JSON.stringify(`${options.pool.slice(0, 24)}…`)} is ${bytes} bytes long in UTF-8, more than the ${MAX_NAME_BYTES} a RabbitMQ queue name can have`,
        );
    }
    if (options.tap && options.pool !== undefined)
      throw new InvalidArgument(`a tap has a queue of its own: it cannot be in pool '${options.pool}'`);
    // Batches are bounded by the prefetch window alone (max of concurrency and batchSize), as before.
    this.pool = new WorkPool(this.batching ? Infinity : this.concurrency);
    // Counted per endpoint failure; the event comes once per notification, when it is settled
    // (see settle): published here as well, a notification whose endpoint threw was counted
    // twice in hermod_notifications_total, as `error` and as what became of it.
    this.dispatcher = new NotificationDispatcher(endpoints, () => {
      this.counts.failed++;
    });
  }

  private get batching(): boolean {
    return this.options.batchSize !== undefined;
  }

  /** The priorities some endpoint handles: the listener subscribes to exactly these. */
  get priorities(): Priority[] {
    return this.dispatcher.priorities;
  }

  /** Counters since start. */
  stats(): NotificationListenerStats {
    const { inFlight, queued, aborted } = this.pool.stats();
    return { ...this.counts, inFlight, queued: queued + this.batch.length, aborted };
  }

  /**
   * Subscribes to `<topic>.<priority>` of every target for the priorities the endpoints handle.
   * A {@link stop} while this waits for the connection ends the wait: start() then resolves with
   * nothing subscribed (notifications already being handled still finish, see {@link wait}).
   */
  async start(): Promise<void> {
    if (this.state === 'running' || this.state === 'starting') return;
    if (this.state === 'stopped') throw new ClosedError('a stopped NotificationListener cannot be started again; make a new one');
    this.state = 'starting';
    const pairs = this.targets.flatMap((target) => this.priorities.map((priority) => ({ target, priority })));
    let listener: Listener;
    let listening: Promise<Listener> | undefined;
    try {
      listening = this.transport.driver.listenForNotifications(pairs, this.options.pool, {
        prefetch: this.batching ? Math.max(this.concurrency, this.options.batchSize!) : this.concurrency,
        onMessage: (m) => this.onMessage(m),
        onInvalid: (error, raw) => this.invalid(error, raw.size),
        onDuplicate: () => this.counts.duplicates++,
        signal: this.stopping.signal,
        ...(this.options.tap ? { tap: true } : {}),
      });
      listener = await untilAborted(listening, this.stopping.signal);
    } catch (err) {
      // stop() came while subscribing: start() ends quietly; wait() closes the subscription once
      // the notifications it delivered meanwhile are settled.
      if ((this.state as State) === 'stopped') {
        // One that delivered nothing is closed as it arrives (a driver that does not watch the
        // abort, AMQP 1.0's, would otherwise consume for a stopped server until wait()); one
        // that did stops consuming and is closed by wait() after the drain.
        this.late = listening?.then(
          (l) => settleStoppedSubscription(l, this.released || !this.deliveredEarly),
          () => undefined,
        );
        return;
      }
      if (this.state === 'starting') this.state = 'new';
      throw err;
    }
    this.listener = listener;
    // stop() came while subscribing. Closed now when nothing came through it, or wait() is past
    // its close; else it stops consuming and wait() closes it after what it delivered (closed
    // here, their acknowledgements were lost and every one was delivered again).
    if ((this.state as State) === 'stopped') await settleStoppedSubscription(listener, this.released || !this.deliveredEarly);
    else this.state = 'running';
  }

  /**
   * Stops taking notifications, at once: queued ones go back to the broker; running ones go on
   * (see {@link wait}).
   */
  async stop(): Promise<void> {
    this.stopCalled.resolve();
    const wasActive = this.state === 'running' || this.state === 'starting';
    this.state = 'stopped';
    this.stopping.abort();
    // A partial batch still runs: its messages were taken and acknowledging them is the contract.
    this.flushBatch();
    this.pool.close();
    if (wasActive) await this.listener?.stop();
    this.pool.requeueBacklog();
  }

  /**
   * Waits until the endpoints are done with what they had. Past `deadlineMs` (default config
   * `rpc.stopTimeout`) the rest is aborted: requeued, not acknowledged. `completed` and
   * `aborted` count notifications, or batches in batch mode. After a stop() it then releases
   * the subscription; it returns within `deadlineMs` plus about 1 s whatever the broker does (the
   * aborted handlers' grace; a broker that has not answered the consumer cancels of stop() gets no
   * second grace for the close), and at most 2 s (one CI run saw a second grace).
   */
  async wait(deadlineMs: number = this.transport.config.rpc.stopTimeout): Promise<WaitResult> {
    assertDeadline(deadlineMs);
    // As RPCServer.wait(): before stop() it waits for stop(), and never ends a handler of a listener still taking work.
    await this.stopCalled.promise;
    const result = await this.pool.drain(deadlineMs);
    // Only now: the acknowledgements of what finished went over the subscription's channel or links.
    if (this.state === 'stopped') {
      // Before the close: a start() that gets its subscription after this (wait() came first,
      // or with an empty pool overtook start()'s last turns) closes it itself.
      this.released = true;
      if (this.listener) await this.listener.close();
      // A subscription that delivered nothing (one still dialing a silent peer) is not waited for.
      else if (this.late) await closeLateSubscription(this.late, this.deliveredEarly ? ABORT_GRACE_MS : 0);
    }
    return result;
  }

  /** Stops taking notifications and requeues the ones being handled now. */
  async abort(): Promise<WaitResult> {
    await this.stop();
    return this.wait(0);
  }

  /**
   * Counts and reports a message no endpoint could be given. On `hermod:message:invalid`, where
   * RPC servers report theirs: one channel (and one metric, by `where`) for everything a peer
   * sent that could not be read, whoever received it; `hermod:notify:listener` says what became
   * of notifications that could be.
   */
  private invalid(error: Error, size?: number): void {
    this.counts.invalid++;
    publish(channels.invalidMessage, { where: 'notification listener', error, ...(size === undefined ? {} : { size }) });
  }

  private parse(incoming: IncomingMessage): Parsed | undefined {
    const m = incoming.message;
    const priority = typeof m.priority === 'string' ? m.priority.toLowerCase() : undefined;
    if (!priority || typeof m.event_type !== 'string') {
      incoming.acknowledge();
      incoming.done();
      this.invalid(new MalformedMessage('notification without priority or event_type'));
      return undefined;
    }
    // A publisher's mistake, not the listener's: invalid, as a missing priority is (it was
    // counted dropped, beside the notifications given up after redeliveryLimit). oslo logs
    // "Unknown priority" and drops it.
    if (!(PRIORITIES as readonly string[]).includes(priority)) {
      incoming.acknowledge();
      incoming.done();
      this.invalid(new MalformedMessage(`notification ${m.event_type}: unknown priority '${priority}'`));
      return undefined;
    }
    // Checked as it came over the wire, as RPC requests are: what a serializer makes of it (a
    // Date, a context class) is the application's own objects. Before, the check ran after
    // deserializing, and such a serializer had every notification dropped unseen.
    const at =
      findPrototypeKey(incoming.ctx, 'context') ??
      findPrototypeKey(m.payload, 'payload') ??
      findPrototypeKey({ message_id: m.message_id, timestamp: m.timestamp }, 'metadata');
    // Hostile input refused before any endpoint ran: invalid. Counted failed, it read as an
    // endpoint that threw, and sent whoever watched the count to debug their own code.
    if (at !== undefined) {
      incoming.acknowledge();
      incoming.done();
      this.invalid(notPlainError(`notification ${m.event_type}`, at));
      return undefined;
    }
    const ctxt = this.serializer.deserializeContext(incoming.ctx ?? {});
    const msg: BatchedNotification = {
      ctxt,
      publisher_id: publisherId(m.publisher_id),
      event_type: m.event_type,
      payload: this.serializer.deserializeEntity(ctxt, m.payload),
      metadata: { message_id: m.message_id as string | undefined, timestamp: m.timestamp as string | undefined },
      priority: priority as Priority,
    };
    // Not enumerable: a batch endpoint that copies or logs the notification does not see it.
    if (typeof m.publisher_id !== 'string') Object.defineProperty(msg, WIRE_PUBLISHER_ID, { value: m.publisher_id });
    return { incoming, msg };
  }

  private onMessage(incoming: IncomingMessage): void {
    if (this.listener === undefined) this.deliveredEarly = true;
    if (this.state !== 'running' && this.state !== 'starting') {
      incoming.requeue();
      incoming.done();
      return;
    }
    let parsed: Parsed | undefined;
    try {
      parsed = this.parse(incoming);
    } catch (err) {
      // What a peer sent (a publisher_id no string can be made of) or what the serializer made
      // of it threw: settled and reported, as a malformed message. Before, the error escaped
      // into the driver's delivery callback: the process exited (memory driver) or the
      // listener's delivery slot was never freed, and with it the queue behind it stalled.
      incoming.acknowledge();
      incoming.done();
      this.invalid(new MalformedMessage(`notification could not be read: ${textOf(err)}`));
      return;
    }
    if (!parsed) return;
    if (this.batching) {
      this.batch.push(parsed);
      if (this.batch.length >= this.options.batchSize!) this.flushBatch();
      else if (!this.batchTimer) this.batchTimer = setTimeout(() => this.flushBatch(), this.options.batchTimeout ?? 1000);
      return;
    }
    this.pool.submit(
      this.work([parsed], async () => {
        const result = await this.dispatcher.dispatch(parsed.msg);
        return () => result;
      }),
    );
  }

  private flushBatch(): void {
    if (this.batchTimer) clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    const batch = this.batch;
    this.batch = [];
    if (batch.length === 0) return;
    if (this.transport.state.state === 'closed') {
      // The transport was closed under the listener (it is not told): these can be neither
      // acknowledged nor requeued over it, and the broker gives them to another consumer. Before,
      // the batch timer ran the endpoints on them anyway and counted them handled.
      for (const p of batch) {
        this.counts.requeued++;
        p.incoming.done();
      }
      return;
    }
    this.pool.submit(
      this.work(batch, async (live) => {
        const requeue = await this.dispatcher.dispatchBatch(live.map((p) => p.msg));
        return (p) => (requeue.has(p.msg) ? 'requeue' : 'handled');
      }),
    );
  }

  /**
   * Notifications handled together (one, or a batch) as one piece of pool work: settled by the
   * endpoints' verdict, or requeued when aborted first; whichever comes second is dropped.
   */
  private work(items: Parsed[], dispatch: (live: Parsed[]) => Promise<(p: Parsed) => NotificationResult>): Work {
    let over = false;
    return {
      run: async () => {
        // A copy whose connection or channel dropped while it waited (for its batch to fill, for
        // a slot) is being delivered again by the broker: running it too ran every such
        // notification twice. Only the copies still settleable run.
        const live: Parsed[] = [];
        for (const p of items) {
          if (p.incoming.stale()) this.leftToBroker(p);
          else live.push(p);
        }
        if (live.length === 0) {
          over = true;
          return;
        }
        const verdict = await dispatch(live);
        if (over) return;
        over = true;
        for (const p of live) this.settle(p, verdict(p));
      },
      abort: async () => {
        if (over) return;
        over = true;
        for (const p of items) this.giveBack(p);
      },
      requeue: () => {
        for (const p of items) {
          p.incoming.requeue();
          p.incoming.done();
        }
      },
    };
  }

  /** A stale copy, not run: counted as requeued, since the broker delivers it again. */
  private leftToBroker(p: Parsed): void {
    this.counts.requeued++;
    publish(channels.notification, {
      eventType: p.msg.event_type,
      priority: p.msg.priority,
      outcome: 'requeue',
      error: new TransportError(
        `the connection ${p.msg.event_type} came on dropped before its endpoints ran; the broker delivers it again`,
      ),
    });
    p.incoming.done();
  }

  /** Requeues a notification whose endpoints were cut short by a stop deadline. */
  private giveBack(p: Parsed): void {
    this.counts.requeued++;
    publish(channels.notification, {
      eventType: p.msg.event_type,
      priority: p.msg.priority,
      outcome: 'requeue',
      error: new ServerStopped(`listener stopped before the endpoints finished ${p.msg.event_type}; requeued`),
    });
    p.incoming.requeue();
    p.incoming.done();
  }

  private settle(p: Parsed, result: NotificationResult): void {
    const id = p.msg.metadata.message_id;
    const { event_type: eventType, priority } = p.msg;
    // What an endpoint threw on it: the cause of a requeue or drop, or, acknowledged anyway
    // (requeue not allowed), outcome `error` in place of `handled`.
    const threw = this.dispatcher.failureOf(p.msg);
    const failed = threw ? ({ error: threw, failed: true } as const) : {};
    // Redeliveries are counted by message_id; a notification without a string one (a
    // third-party publisher) by its content, or the limit never applied and it looped at once.
    const key = typeof id === 'string' && id !== '' ? id : result === 'requeue' && this.allowRequeue ? contentKey(p) : undefined;
    if (result === 'requeue' && this.allowRequeue) {
      const n = (key ? (this.requeues.get(key) ?? 0) : 0) + 1;
      if (n <= this.redeliveryLimit) {
        if (key) {
          this.requeues.set(key, n);
          // Bounded memory: forget the oldest counts first.
          if (this.requeues.size > 10_000) this.requeues.delete(this.requeues.keys().next().value!);
        }
        this.counts.requeued++;
        publish(channels.notification, { eventType, priority, outcome: 'requeue', ...failed });
        p.incoming.requeue();
        p.incoming.done();
        return;
      }
      this.counts.dropped++;
      publish(channels.notification, {
        eventType,
        priority,
        outcome: 'dropped',
        error: new InvalidArgument(
          `notification ${typeof id === 'string' && id !== '' ? id : '(no message_id)'} requeued ${n - 1} times; dropped (notifications.redeliveryLimit=${this.redeliveryLimit})${threw ? `; its endpoint threw: ${threw.message}` : ''}`,
          threw ? { cause: threw } : undefined,
        ),
        ...(threw ? { failed: true } : {}),
      });
      if (key) this.requeues.delete(key);
      p.incoming.acknowledge();
      p.incoming.done();
      return;
    }
    if (key) this.requeues.delete(key);
    // The connection dropped while the endpoints ran: the broker delivers it again, and the copy
    // that comes back is the one handled (at-least-once). Counting this one too counted every
    // such notification twice.
    if (!p.incoming.acknowledge()) {
      // Another copy (the same _unique_id) was acknowledged first: counted in duplicates by the driver.
      if (!p.incoming.stale()) {
        p.incoming.done();
        return;
      }
      this.counts.requeued++;
      publish(channels.notification, {
        eventType,
        priority,
        outcome: 'requeue',
        error: new TransportError(`the connection ${eventType} came on dropped before it was acknowledged; the broker delivers it again`),
      });
    } else {
      this.counts.handled++;
      publish(
        channels.notification,
        threw ? { eventType, priority, outcome: 'error', ...failed } : { eventType, priority, outcome: 'handled' },
      );
    }
    p.incoming.done();
  }
}

/**
 * The publisher as a string: oslo's publishers send one; a number or a boolean is written out,
 * a missing one is ''. Anything else (an object, a list) is no publisher: refused as malformed.
 */
function publisherId(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v === undefined || v === null) return '';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw new TypeError(`publisher_id is ${Array.isArray(v) ? 'a list' : typeof v}, not a string`);
}

/** A key for a notification's redeliveries when it has no message_id: a digest of what it carries. */
function contentKey(p: Parsed): string {
  const m = p.incoming.message;
  const text = JSON.stringify([p.incoming.ctx, m.event_type, m.priority, m.publisher_id, m.timestamp, m.payload]);
  return `sha1:${createHash('sha1').update(text).digest('base64')}`;
}
