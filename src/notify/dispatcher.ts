import { InvalidArgument, textOf } from '../core/errors.js';
import type { Context } from '../core/serializer.js';
import { NotificationFilter } from './filter.js';
import type { NotificationMetadata } from './message.js';
import { PRIORITIES, type Priority } from './notifier.js';

/** What an endpoint method returns: `handled` (default) or `requeue` (deliver again later). */
// biome-ignore lint/suspicious/noConfusingVoidType: endpoint methods that return nothing are typed `void`
export type NotificationResult = 'handled' | 'requeue' | undefined | void;

/** One notification as a batch endpoint receives it (oslo's dict). */
export interface BatchedNotification {
  /** The sender's context. */
  ctxt: Context;
  /** Who sent it (the notifier's `publisherId`). */
  publisher_id: string;
  /** What happened, e.g. `compute.instance.create.end`. */
  event_type: string;
  /** The notification's body. */
  payload: unknown;
  /** Its `message_id` and `timestamp`. */
  metadata: NotificationMetadata;
  /** The priority it was sent at. */
  priority: Priority;
}

/**
 * The `publisher_id` as it came, on a notification whose own was not a string (a number, a
 * boolean, null or none): endpoints get it as text, while filters see what oslo's do, and a
 * publisher id rule refuses a value that is not a string, as oslo's `NotificationFilter` does.
 */
export const WIRE_PUBLISHER_ID: unique symbol = Symbol('hermod.wirePublisherId');

/** Where an endpoint method failed, for the report. */
export interface EndpointFailure {
  eventType?: string;
  priority: Priority;
  error: Error;
}

type Callback = (...args: unknown[]) => unknown;

/**
 * oslo's NotificationDispatcher: finds each endpoint's method per priority and its optional
 * `filterRule` (or `filter_rule`), and calls the methods that want a notification (or a batch).
 * A method that throws counts as `requeue` (oslo's `_exec_callback`); `onFailure` reports it, and
 * {@link failureOf} tells the listener which notifications it threw on.
 */
export class NotificationDispatcher {
  private readonly callbacks = new Map<Priority, Array<{ filter: NotificationFilter | undefined; fn: Callback }>>();
  /** The last error an endpoint threw on a notification (one of a batch for its whole group). */
  private readonly failures = new WeakMap<BatchedNotification, Error>();

  constructor(
    endpoints: object[],
    private readonly onFailure: (failure: EndpointFailure) => void,
  ) {
    for (const ep of endpoints) {
      const filter = (ep as { filterRule?: unknown; filter_rule?: unknown }).filterRule ?? (ep as { filter_rule?: unknown }).filter_rule;
      if (filter !== undefined && !(filter instanceof NotificationFilter))
        throw new InvalidArgument('filterRule must be a NotificationFilter');
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

  /** The priorities some endpoint handles. */
  get priorities(): Priority[] {
    return PRIORITIES.filter((p) => this.callbacks.has(p));
  }

  /**
   * Calls the endpoints that want `m`, in order, until one asks for a requeue. The listener has
   * checked that the notification was plain data as it came (see core/plain.ts) before its
   * serializer made it into the application's objects.
   */
  async dispatch(m: BatchedNotification): Promise<NotificationResult> {
    let result: NotificationResult = 'handled';
    for (const { filter, fn } of this.callbacks.get(m.priority) ?? []) {
      if (filter && !matches(filter, m)) continue;
      result = await this.call(fn, [m.ctxt, m.publisher_id, m.event_type, m.payload, m.metadata], [m], {
        eventType: m.event_type,
        priority: m.priority,
      });
      if (result === 'requeue') break;
    }
    return result;
  }

  /**
   * Batch mode: each endpoint gets the notifications of one priority its filter passes, as one
   * array. Returns the notifications to requeue: all of a priority whose endpoint asked for it.
   */
  async dispatchBatch(batch: BatchedNotification[]): Promise<Set<BatchedNotification>> {
    const requeue = new Set<BatchedNotification>();
    for (const priority of PRIORITIES) {
      const group = batch.filter((m) => m.priority === priority);
      if (group.length === 0) continue;
      for (const { filter, fn } of this.callbacks.get(priority) ?? []) {
        const selected = filter ? group.filter((m) => matches(filter, m)) : group;
        if (selected.length === 0) continue;
        const r = await this.call(fn, [selected], selected, { priority });
        if (r === 'requeue') {
          for (const m of group) requeue.add(m);
          break;
        }
      }
    }
    return requeue;
  }

  /** What an endpoint threw on `m` while it was dispatched, if anything. */
  failureOf(m: BatchedNotification): Error | undefined {
    return this.failures.get(m);
  }

  private async call(
    fn: Callback,
    args: unknown[],
    messages: BatchedNotification[],
    what: { eventType?: string; priority: Priority },
  ): Promise<NotificationResult> {
    try {
      return (await fn(...args)) as NotificationResult;
    } catch (err) {
      const error = err instanceof Error ? err : new Error(textOf(err));
      for (const m of messages) this.failures.set(m, error);
      this.onFailure({ ...what, error });
      return 'requeue';
    }
  }
}

function matches(filter: NotificationFilter, m: BatchedNotification): boolean {
  const publisherId = WIRE_PUBLISHER_ID in m ? (m as { [WIRE_PUBLISHER_ID]: unknown })[WIRE_PUBLISHER_ID] : m.publisher_id;
  return filter.match(m.ctxt, publisherId, m.event_type, m.metadata, m.payload);
}
