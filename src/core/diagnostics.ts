import * as diagnostics_channel from 'node:diagnostics_channel';

/**
 * hermod's lifecycle events on `node:diagnostics_channel`. Logging, metrics and tracing
 * subscribe here; nothing in the hot path formats a log line unless somebody listens.
 *
 * ```ts
 * import diagnostics_channel from 'node:diagnostics_channel';
 * diagnostics_channel.subscribe('hermod:rpc:server:request', (e) => console.log(e));
 * ```
 */
export const channels = {
  /** {@link CallStartEvent} when a client call or cast starts. */
  clientCallStart: diagnostics_channel.channel('hermod:rpc:client:start'),
  /** {@link CallEvent} when a client call or cast finishes (either way). */
  clientCall: diagnostics_channel.channel('hermod:rpc:client:call'),
  /** {@link ServerRequestStartEvent} when a server has parsed a request and starts on it. */
  serverRequestStart: diagnostics_channel.channel('hermod:rpc:server:start'),
  /** {@link ServerRequestEvent} when a server finishes a request. */
  serverRequest: diagnostics_channel.channel('hermod:rpc:server:request'),
  /** {@link InvalidMessageEvent} when a listener drops a message it cannot decode. */
  invalidMessage: diagnostics_channel.channel('hermod:message:invalid'),
  /** {@link DuplicateMessageEvent} when a listener drops a copy of a message it already received. */
  duplicateMessage: diagnostics_channel.channel('hermod:message:duplicate'),
  /** {@link ConnectionStateEvent} on connection state changes of any driver. */
  connection: diagnostics_channel.channel('hermod:connection:state'),
  /** {@link NotificationEvent} when a listener endpoint fails or a notification is dropped. */
  notification: diagnostics_channel.channel('hermod:notify:listener'),
  /** {@link GatewayRequestEvent} when the HTTP gateway has answered a request. */
  gatewayRequest: diagnostics_channel.channel('hermod:gateway:request'),
  /** {@link GatewayRefusedEvent} when the HTTP gateway closes a connection at one of its limits. */
  gatewayRefused: diagnostics_channel.channel('hermod:gateway:refused'),
} as const;

/**
 * Published on `hermod:gateway:request` once a response is sent. `route` is the route's pattern
 * (`/v1/:topic/:method`, `/users/:id`, `/jsonrpc`), never the client's path, so the values are
 * bounded by the configuration; a request no route matched has `route` `''`.
 */
export interface GatewayRequestEvent {
  route: string;
  /** The HTTP method. */
  method: string;
  status: number;
  durationMs: number;
  /** The request's target as the client sent it (path and query): unbounded client text. */
  url: string;
  /** The request id (the client's `X-Request-Id` when well-formed, else the gateway's). */
  requestId: string;
  remoteAddress?: string;
  /** The caller's user, when it authenticated with one. */
  user?: string;
}

/** Published on `hermod:gateway:refused`: which limit closed a connection. */
export interface GatewayRefusedEvent {
  limit: 'maxConnections' | 'maxConnectionsPerAddress' | 'maxPipelined';
}

/** Published on `hermod:rpc:client:start`; the matching {@link CallEvent} follows. */
export interface CallStartEvent {
  kind: 'call' | 'cast';
  method: string;
  topic: string;
  server?: string;
  fanout?: boolean;
  /** The target's exchange, when it names one (else the transport's control exchange). */
  exchange?: string;
  namespace?: string;
  version?: string;
}

/** Published on `hermod:rpc:client:call`. */
export interface CallEvent extends CallStartEvent {
  /** From the call's start to its reply (or to the broker's acceptance of a cast). */
  durationMs: number;
  /** Why the call or cast failed; absent when it succeeded. */
  error?: Error;
}

/**
 * Published on `hermod:rpc:server:start` once a request parsed (a malformed one has no start,
 * only its end); the matching {@link ServerRequestEvent} follows. `method`, `namespace` and
 * `version` come from the caller: consumers must bound what they keep per distinct value.
 */
export interface ServerRequestStartEvent {
  server: string;
  topic: string;
  exchange?: string;
  method: string;
  namespace?: string;
  version?: string;
  kind: 'call' | 'cast';
}

/**
 * Published on `hermod:rpc:server:request`. `started` tells whether a start event came before.
 * `expired`: a request whose ttl (AMQP 1.0) ran out while it waited for a slot, settled and not
 * run (never started; its `error` a MessagingTimeout saying so).
 */
export interface ServerRequestEvent extends ServerRequestStartEvent {
  /** From receipt to the reply (or the end of a cast's method). */
  durationMs: number;
  /** `ok`, `error` (the method threw), `invalid` (the request could not be dispatched), `aborted` (a stop cut it short), `expired` (see above). */
  outcome: 'ok' | 'error' | 'invalid' | 'aborted' | 'expired';
  /** Whether a {@link ServerRequestStartEvent} came before this event. */
  started: boolean;
  /** What the method threw, or why the request was not run. */
  error?: Error;
  /** The caller's request id (`request_id` in the context, as oslo's RequestContext), when it sent one. */
  requestId?: string;
}

/** Published on `hermod:message:invalid`. */
export interface InvalidMessageEvent {
  /** Which receiver refused it: `server <name>`, `reply queue`, `reply link` or `notification listener`. */
  where: string;
  /** Why, as a typed error (MalformedMessage, MessageTooLarge, …). */
  error: Error;
  /** The message's size in bytes, when the driver knows it. */
  size?: number;
}

/**
 * Published on `hermod:message:duplicate`: a request or notification carrying the `_unique_id`
 * of one received before (RabbitMQ), acknowledged and not run again, as oslo drops it.
 */
export interface DuplicateMessageEvent {
  /** `rpc server` or `notification listener`. */
  where: string;
  /** The sender's `_unique_id`: peer text, cut to 100 characters. */
  uniqueId: string;
}

/** Connection state changes, emitted as `'state'` events by every driver. */
export type ConnectionState =
  | { state: 'connected'; host: string }
  | { state: 'disconnected'; host: string; error?: Error }
  | {
      state: 'reconnecting';
      host: string;
      attempt: number;
      delayMs: number;
      reason?: string;
      /**
       * The attempt was refused in a way retrying cannot fix (a login or vhost refused, a peer
       * speaking the other protocol): sends and subscriptions waiting for the connection fail at
       * once instead of waiting `delayMs` for the next attempt.
       */
      refused?: boolean;
    }
  | { state: 'blocked'; host: string; reason: string }
  | { state: 'unblocked'; host: string }
  /**
   * Given up for good: retrying cannot help. On RabbitMQ, a reconnect whose declares the broker
   * refuses for other flags (a peer re-declared a queue or exchange differently meanwhile); the
   * error is that ConfigError, naming the option that probably differs. What used the
   * connection (a server's or listener's subscription, calls waiting for it) has ended. On
   * AMQP 1.0, a server's or listener's link the peer refused once it had started (after a
   * reconnect, to a router whose policy changed): AccessRefused or TransportError naming the
   * address; that subscription has ended, the connection serves the rest.
   */
  | { state: 'failed'; host: string; error: Error };

/** Published on `hermod:connection:state`. */
export type ConnectionStateEvent = ConnectionState & { driver: string };

/** Published on `hermod:notify:listener`. */
export interface NotificationEvent {
  /** The notification's `event_type`, when it could be read. */
  eventType?: string;
  /** Its priority (`info`, `error`, …), when it could be read. */
  priority?: string;
  /**
   * What became of the notification, once per delivery: `handled`, `requeue` (given back: its
   * endpoint asked for it or threw, with `notifications.allowRequeue`; or the listener could not
   * settle it), `error` (an endpoint threw and it was acknowledged all the same, requeue not
   * allowed), `dropped` (requeued past `notifications.redeliveryLimit`).
   */
  outcome: 'handled' | 'requeue' | 'error' | 'dropped';
  /** What an endpoint threw, or why the notification was given back or dropped. */
  error?: Error;
  /** An endpoint threw on it (`error` is what it threw, or for `dropped` has it as `cause`). */
  failed?: true;
}

/** Publishes `event` on `channel` only when somebody subscribed. */
export function publish<T extends object>(channel: diagnostics_channel.Channel, event: T | (() => T)): void {
  if (channel.hasSubscribers) channel.publish(typeof event === 'function' ? (event as () => T)() : event);
}
