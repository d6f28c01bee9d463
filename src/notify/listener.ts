import { InvalidArgument, InvalidTarget, MalformedMessage } from '../core/errors.js';
import { Target } from '../core/target.js';
import { NoOpSerializer, type Context, type Serializer } from '../core/serializer.js';
import { channels, publish } from '../core/diagnostics.js';
import type { Transport } from '../transport.js';
import type { IncomingMessage, Listener } from '../driver/driver.js';
import { PRIORITIES, type Priority } from './notifier.js';

/** What an endpoint method returns: `handled` (default) or `requeue` (deliver again later). */
export type NotificationResult = 'handled' | 'requeue' | undefined | void;

/** `message_id` and `timestamp` of a notification, as oslo passes them. */
export interface NotificationMetadata { message_id?: string; timestamp?: string }

/** One notification as a batch endpoint receives it (oslo's dict). */
export interface BatchedNotification {
  ctxt: Context;
  publisher_id: string;
  event_type: string;
  payload: unknown;
  metadata: NotificationMetadata;
  priority: Priority;
}

type Regexes = Record<string, string | RegExp>;

/**
 * oslo's NotificationFilter: regular expressions matched from the start of the publisher id,
 * event type, and named fields of the context, metadata and payload. A field that is missing or
 * not a string fails the match.
 */
export class NotificationFilter {
  private readonly publisherId: RegExp | undefined;
  private readonly eventType: RegExp | undefined;
  private readonly ctx: Record<string, RegExp>;
  private readonly metadata: Record<string, RegExp>;
  private readonly payload: Record<string, RegExp>;

  constructor(rules: { publisherId?: string | RegExp; eventType?: string | RegExp; context?: Regexes; metadata?: Regexes; payload?: Regexes }) {
    this.publisherId = NotificationFilter.compile(rules.publisherId);
    this.eventType = NotificationFilter.compile(rules.eventType);
    this.ctx = NotificationFilter.dict(rules.context);
    this.metadata = NotificationFilter.dict(rules.metadata);
    this.payload = NotificationFilter.dict(rules.payload);
  }

  // Python's re.match anchors at the start only: the sticky flag does the same.
  private static compile(p: string | RegExp | undefined): RegExp | undefined {
    if (p === undefined) return undefined;
    try {
      return p instanceof RegExp ? new RegExp(p.source, p.flags.replace(/[gy]/g, '') + 'y') : new RegExp(p, 'y');
    } catch (err) {
      throw new InvalidArgument(`bad filter expression ${String(p)}: ${(err as Error).message}`);
    }
  }

  private static dict(d: Regexes | undefined): Record<string, RegExp> {
    const out: Record<string, RegExp> = {};
    for (const [k, v] of Object.entries(d ?? {})) out[k] = NotificationFilter.compile(v)!;
    return out;
  }

  private static single(value: unknown, re: RegExp | undefined): boolean {
    if (!re) return true;
    if (typeof value !== 'string') return false;
    re.lastIndex = 0;
    return re.test(value);
  }

  private static all(data: unknown, res: Record<string, RegExp>): boolean {
    for (const [k, re] of Object.entries(res)) {
      if (!data || typeof data !== 'object' || !(k in data)) return false;
      if (!NotificationFilter.single((data as Record<string, unknown>)[k], re)) return false;
    }
    return true;
  }

  /** Whether a notification passes. */
  match(ctx: Context, publisherId: unknown, eventType: unknown, metadata: NotificationMetadata, payload: unknown): boolean {
    return NotificationFilter.single(publisherId, this.publisherId) && NotificationFilter.single(eventType, this.eventType)
      && NotificationFilter.all(ctx, this.ctx) && NotificationFilter.all(metadata, this.metadata) && NotificationFilter.all(payload, this.payload);
  }
}

/** Options of {@link NotificationListener}. */
export interface NotificationListenerOptions {
  /** Listeners sharing a pool name share one queue: each pool gets every notification once. */
  pool?: string;
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
  serializer?: Serializer;
}

interface Parsed {
  incoming: IncomingMessage;
  priority: Priority;
  msg: BatchedNotification;
}

type Callback = (...args: unknown[]) => unknown;

/**
 * Receives notifications (oslo's notification listener): endpoints have one method per priority
 * (`info(ctx, publisherId, eventType, payload, metadata)`, or arrays of notifications in batch
 * mode) and an optional `filterRule`. Notifications are acknowledged after the endpoints ran
 * (at-least-once); a method that throws is logged on `hermod:notify:listener` and counts as
 * `requeue`, which is honoured only when requeue is allowed, and at most `redeliveryLimit` times.
 */
export class NotificationListener {
  private readonly callbacks = new Map<Priority, Array<{ filter: NotificationFilter | undefined; fn: Callback }>>();
  private readonly serializer: Serializer;
  private readonly concurrency: number;
  private readonly allowRequeue: boolean;
  private readonly redeliveryLimit: number;
  private listener: Listener | undefined;
  private state: 'new' | 'running' | 'stopped' = 'new';
  private running = 0;
  private readonly backlog: Parsed[] = [];
  private batch: Parsed[] = [];
  private batchTimer: NodeJS.Timeout | undefined;
  private readonly requeues = new Map<string, number>();
  private idleWaiters: Array<() => void> = [];
  /** Counts for tests and monitoring. */
  readonly stats = { handled: 0, requeued: 0, dropped: 0, failed: 0, invalid: 0 };

  constructor(private readonly transport: Transport, private readonly targets: Target[], endpoints: object[],
    private readonly options: NotificationListenerOptions = {}) {
    if (!Array.isArray(targets) || targets.length === 0) throw new InvalidTarget('a notification listener needs at least one target');
    for (const t of targets) if (!t.topic) throw new InvalidTarget('notification targets need a topic');
    const conf = transport.config;
    this.serializer = options.serializer ?? new NoOpSerializer();
    this.concurrency = options.concurrency ?? conf.rpc.serverConcurrency;
    this.allowRequeue = options.allowRequeue ?? conf.notifications.allowRequeue;
    this.redeliveryLimit = options.redeliveryLimit ?? conf.notifications.redeliveryLimit;
    if (options.batchSize !== undefined && !(Number.isInteger(options.batchSize) && options.batchSize >= 1)) {
      throw new InvalidArgument('batchSize must be a positive integer');
    }
    for (const ep of endpoints) {
      const filter = (ep as { filterRule?: unknown; filter_rule?: unknown }).filterRule ?? (ep as { filter_rule?: unknown }).filter_rule;
      if (filter !== undefined && !(filter instanceof NotificationFilter)) throw new InvalidArgument('filterRule must be a NotificationFilter');
      for (const p of PRIORITIES) {
        const fn = (ep as Record<string, unknown>)[p];
        if (typeof fn === 'function') {
          const list = this.callbacks.get(p) ?? [];
          list.push({ filter: filter as NotificationFilter | undefined, fn: (fn as Callback).bind(ep) });
          this.callbacks.set(p, list);
        }
      }
    }
    if (this.callbacks.size === 0) throw new InvalidArgument(`no endpoint has a priority method (${PRIORITIES.join(', ')})`);
  }

  /** The priorities some endpoint handles: the listener subscribes to exactly these. */
  get priorities(): Priority[] {
    return PRIORITIES.filter((p) => this.callbacks.has(p));
  }

  async start(): Promise<void> {
    if (this.state !== 'new') return;
    this.state = 'running';
    const pairs = this.targets.flatMap((target) => this.priorities.map((priority) => ({ target, priority })));
    const batching = this.options.batchSize !== undefined;
    try {
      this.listener = await this.transport.driver.listenForNotifications(pairs, this.options.pool, {
        prefetch: batching ? Math.max(this.concurrency, this.options.batchSize!) : this.concurrency,
        onMessage: (m) => this.onMessage(m),
        onInvalid: (error) => { this.stats.invalid++; publish(channels.notification, { outcome: 'dropped', error }); },
      });
    } catch (err) {
      this.state = 'new';
      throw err;
    }
  }

  /** Stops taking notifications; queued ones go back to the broker. */
  async stop(): Promise<void> {
    if (this.state !== 'running') { this.state = 'stopped'; return; }
    this.state = 'stopped';
    await this.listener?.stop();
    for (const p of this.backlog.splice(0)) { p.incoming.requeue(); p.incoming.done(); }
    if (this.batchTimer) clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    // A partial batch still runs: its messages were taken and acknowledging them is the contract.
    if (this.batch.length > 0) this.flushBatch();
    this.checkIdle();
  }

  /** Waits until the endpoints are done with what they had. */
  async wait(deadlineMs = this.transport.config.rpc.stopTimeout): Promise<void> {
    if (this.running === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((r) => this.idleWaiters.push(r)),
      new Promise<void>((r) => { timer = setTimeout(r, deadlineMs); }),
    ]);
    clearTimeout(timer);
  }

  private checkIdle(): void {
    if (this.running === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  private parse(incoming: IncomingMessage): Parsed | undefined {
    const m = incoming.message;
    const priority = typeof m.priority === 'string' ? m.priority.toLowerCase() : undefined;
    if (!priority || typeof m.event_type !== 'string') {
      incoming.acknowledge();
      incoming.done();
      this.stats.invalid++;
      publish(channels.notification, { outcome: 'dropped', error: new MalformedMessage('notification without priority or event_type') });
      return undefined;
    }
    if (!(PRIORITIES as readonly string[]).includes(priority)) {
      incoming.acknowledge();
      incoming.done();
      this.stats.dropped++;
      publish(channels.notification, { eventType: m.event_type, priority, outcome: 'dropped', error: new InvalidArgument(`unknown priority '${priority}'`) });
      return undefined;
    }
    const ctxt = this.serializer.deserializeContext(incoming.ctx ?? {});
    return {
      incoming,
      priority: priority as Priority,
      msg: {
        ctxt,
        publisher_id: String(m.publisher_id ?? ''),
        event_type: m.event_type,
        payload: this.serializer.deserializeEntity(ctxt, m.payload),
        metadata: { message_id: m.message_id as string | undefined, timestamp: m.timestamp as string | undefined },
        priority: priority as Priority,
      },
    };
  }

  private onMessage(incoming: IncomingMessage): void {
    if (this.state !== 'running') { incoming.requeue(); incoming.done(); return; }
    const parsed = this.parse(incoming);
    if (!parsed) return;
    if (this.options.batchSize !== undefined) {
      this.batch.push(parsed);
      if (this.batch.length >= this.options.batchSize) this.flushBatch();
      else if (!this.batchTimer) this.batchTimer = setTimeout(() => this.flushBatch(), this.options.batchTimeout ?? 1000);
      return;
    }
    if (this.running >= this.concurrency) { this.backlog.push(parsed); return; }
    void this.processOne(parsed);
  }

  private async run(fn: Callback, args: unknown[], what: { eventType?: string; priority: string }): Promise<NotificationResult> {
    try {
      return await fn(...args) as NotificationResult;
    } catch (err) {
      this.stats.failed++;
      publish(channels.notification, { ...what, outcome: 'error', error: err instanceof Error ? err : new Error(String(err)) });
      return 'requeue';
    }
  }

  private async processOne(p: Parsed): Promise<void> {
    this.running++;
    let result: NotificationResult = 'handled';
    for (const { filter, fn } of this.callbacks.get(p.priority) ?? []) {
      const m = p.msg;
      if (filter && !filter.match(m.ctxt, m.publisher_id, m.event_type, m.metadata, m.payload)) continue;
      result = await this.run(fn, [m.ctxt, m.publisher_id, m.event_type, m.payload, m.metadata], { eventType: m.event_type, priority: p.priority });
      if (result === 'requeue') break;
    }
    this.settle(p, result);
    this.running--;
    const next = this.state === 'running' ? this.backlog.shift() : undefined;
    if (next) void this.processOne(next);
    this.checkIdle();
  }

  private flushBatch(): void {
    if (this.batchTimer) clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    const batch = this.batch;
    this.batch = [];
    if (batch.length > 0) void this.processBatch(batch);
  }

  private async processBatch(batch: Parsed[]): Promise<void> {
    this.running++;
    const requeue = new Set<Parsed>();
    for (const priority of PRIORITIES) {
      const group = batch.filter((p) => p.priority === priority);
      if (group.length === 0) continue;
      for (const { filter, fn } of this.callbacks.get(priority) ?? []) {
        const selected = filter ? group.filter((p) => filter.match(p.msg.ctxt, p.msg.publisher_id, p.msg.event_type, p.msg.metadata, p.msg.payload)) : group;
        if (selected.length === 0) continue;
        const r = await this.run(fn, [selected.map((p) => p.msg)], { priority });
        if (r === 'requeue') { for (const p of group) requeue.add(p); break; }
      }
    }
    for (const p of batch) this.settle(p, requeue.has(p) ? 'requeue' : 'handled');
    this.running--;
    this.checkIdle();
  }

  private settle(p: Parsed, result: NotificationResult): void {
    const id = p.msg.metadata.message_id;
    if (result === 'requeue' && this.allowRequeue) {
      const n = (id ? this.requeues.get(id) ?? 0 : 0) + 1;
      if (n <= this.redeliveryLimit) {
        if (id) {
          this.requeues.set(id, n);
          // Bounded memory: forget the oldest counts first.
          if (this.requeues.size > 10_000) this.requeues.delete(this.requeues.keys().next().value!);
        }
        this.stats.requeued++;
        publish(channels.notification, { eventType: p.msg.event_type, priority: p.priority, outcome: 'requeue' });
        p.incoming.requeue();
        p.incoming.done();
        return;
      }
      this.stats.dropped++;
      publish(channels.notification, {
        eventType: p.msg.event_type, priority: p.priority, outcome: 'dropped',
        error: new InvalidArgument(`notification ${id} requeued ${n - 1} times; dropped (notifications.redeliveryLimit=${this.redeliveryLimit})`),
      });
    } else {
      this.stats.handled++;
      publish(channels.notification, { eventType: p.msg.event_type, priority: p.priority, outcome: 'handled' });
    }
    if (id) this.requeues.delete(id);
    p.incoming.acknowledge();
    p.incoming.done();
  }
}
