import type { EventEmitter } from 'node:events';
import type { Failure } from '../core/failure.js';
import type { Context } from '../core/serializer.js';
import type { Target } from '../core/target.js';

export type { ConnectionState } from '../core/diagnostics.js';
export type { Failure } from '../core/failure.js';

/** An RPC request as the RPC layer hands it to a driver (oslo's message dict). */
export interface RpcRequest {
  /** The method to run. */
  method: string;
  /** Its named arguments. */
  args: Record<string, unknown>;
  /** The endpoint namespace; undefined: the default one. */
  namespace?: string;
  /** The version the caller asked for; undefined: 1.0. */
  version?: string;
}

/**
 * What a call's reply carries: a result or a failure. `job` marks a result that is the token of
 * a job the answering server started for this very request. It travels beside the result, never
 * in it (as `_hermod_job` in the reply dict, which oslo's reply readers ignore), so a method that
 * returns a dict shaped like a token is never taken for one.
 */
export type Reply = { result: unknown; failure?: undefined; job?: true } | { failure: Failure; result?: undefined; job?: undefined };

/** The reply-dict key of {@link Reply.job} on the oslo wires (RabbitMQ and AMQP 1.0). */
export const JOB_REPLY_KEY = '_hermod_job';

/** Options of one {@link Driver.send}. Durations in milliseconds. */
export interface SendOptions {
  /** A call (true) waits for the reply; a cast (false) resolves once the broker has it. */
  waitForReply: boolean;
  /** Deadline for the reply of a call, and for delivery of a cast. */
  timeout: number;
  /**
   * The call's whole timeout as its caller set it, for timeout messages. `timeout` is what is
   * left of it once the client had a slot; a message saying "after 399 ms" for a call given
   * 400 ms reads as a bug. @default timeout
   */
  callTimeout?: number;
  /** Fail a call when no heartbeat or reply arrives for this long; 0 turns the monitor off. */
  callMonitorTimeout?: number;
  /** Connection-failure retries: -1 forever (until the timeout), 0 none, N attempts. */
  retry?: number;
}

/** Options of one {@link Driver.sendNotification}. */
export interface NotificationSendOptions {
  /** Connection-failure retries: -1 forever (within the send's bound), 0 none, N attempts. */
  retry?: number;
  /** `2.0` wraps the message in oslo's envelope (messagingv2); `1.0` sends it bare (messaging). */
  envelope?: '1.0' | '2.0';
}

/** A received RPC request or notification, with the operations its receiver can apply. */
export interface IncomingMessage {
  /** The request's or notification's context, as decoded from the message. */
  readonly ctx: Context;
  /** The request (method, args, namespace, version) or the notification dict. */
  readonly message: Record<string, unknown>;
  /** The caller expects a reply (a call, not a cast). */
  readonly expectsReply: boolean;
  /** The caller's call-monitor timeout in ms, or 0 when it has none. */
  readonly callMonitorTimeout: number;
  /**
   * The sender's time to live for it in ms, when it came with one: AMQP 1.0's header `ttl` (what
   * was left of the caller's timeout when it left the last router), RabbitMQ's per-message
   * `expiration` of a call request (as published: the time it spent queued is not taken off).
   */
  readonly ttl?: number;
  /**
   * When `ttl` runs out, on `performance.now()`'s clock, counted from when the driver received
   * it: a server does not start a request past it (its caller has stopped waiting). Absent
   * without a ttl: such a request waits for a slot as long as it takes.
   */
  readonly expiresAt?: number;
  /** Sends the final reply of a call. A value that cannot be encoded throws SerializationError. */
  reply(reply: Reply): Promise<void>;
  /** Tells the caller the call is still running (oslo's call-monitor heartbeat). */
  heartbeat(): Promise<void>;
  /**
   * Settles the message: it will not be delivered again. False when it can no longer be: the
   * connection or channel it came on is gone, so the broker delivers it again (to this server
   * or another), or that copy was already taken. Then it must not be processed: a server that
   * ran it anyway ran one request twice (oslo discards it too).
   */
  acknowledge(): boolean;
  /**
   * Whether this copy can no longer be settled because the connection, channel or link it came
   * on is gone, so the broker delivers it again. A receiver that holds messages before it
   * settles them (a notification batch filling up, a notification waiting for a slot) asks
   * before it runs them: acknowledge() answers only afterwards, when the work was done twice.
   */
  stale(): boolean;
  /** Gives the message back to the broker for another delivery. */
  requeue(): void;
  /** Processing is over; frees the slot it held in the listener's prefetch window. */
  done(): void;
}

/** Called by a listener for each message. Must not throw; errors are the receiver's to handle. */
export type MessageHandler = (message: IncomingMessage) => void;

/** What a listener does with messages it could not decode. */
export type InvalidMessageHandler = (error: Error, raw: { address: string; size: number }) => void;

/** Options for {@link Driver.listen} and {@link Driver.listenForNotifications}. */
export interface ListenOptions {
  /** At most this many messages are delivered and not yet `done()` (broker prefetch / link credit). */
  prefetch: number;
  /** Receives each message; it must call `done()` (or one of the other settlements) once. */
  onMessage: MessageHandler;
  /** Malformed input: the listener has already settled it; this only reports. */
  onInvalid?: InvalidMessageHandler;
  /**
   * A copy of a message already received (RabbitMQ's `_unique_id`): the listener has settled
   * it, not handed it over (or, when the first copy was still running, refused its
   * acknowledge()), and published it on `hermod:message:duplicate`; this only counts.
   */
  onDuplicate?: () => void;
  /**
   * Aborting it while the subscription is still being made (connecting, reconnecting, declaring)
   * gives up at once: `listen` rejects with ClosedError and nothing stays open.
   */
  signal?: AbortSignal;
  /**
   * Notification listeners: a tap, i.e. a queue of this subscription's own (no pool), bound like
   * the shared ones and deleted when it stops, so it gets a copy of every notification and takes
   * none from the topic's other listeners. RabbitMQ and memory only.
   */
  tap?: boolean;
  /**
   * RPC servers: a second server name of this subscription's own, served beside
   * `target.server` (the address `<topic>.<alias>` only, no topic or fanout part) and gone with
   * the subscription: on RabbitMQ an exclusive queue, which the broker deletes when the
   * connection drops, so a message to a process that died is returned at once. A job's polls
   * ask there when the server name's shared queue handed them to another process of that name.
   */
  alias?: string;
}

/**
 * A running subscription. Stopping is two steps so that work in flight can still be settled:
 * {@link stop} ends delivery, {@link close} releases the channel or links once the owner has
 * drained. Both are bounded in time in every connection state (connected, connecting,
 * reconnecting, blocked, mid-close) and never wait for a reconnect.
 */
export interface Listener {
  /**
   * Stops taking new messages at once (cancels consumers / drains link credit). Messages already
   * delivered stay valid: they can still be acknowledged, requeued and replied to until
   * {@link close}. A connection of the listener's own that drops from now on is not re-opened.
   */
  stop(): Promise<void>;
  /**
   * Stops (if not yet) and releases the channel, connection or links; whatever was delivered and
   * is not settled by then goes back to the broker. Idempotent.
   */
  close(): Promise<void>;
}

/**
 * The driver contract (oslo's BaseDriver): the RPC and notification layers talk to brokers
 * only through this. A driver owns its connections and reconnect loop and reports broker
 * conditions as the typed errors of `errors.ts`.
 */
export interface Driver extends EventEmitter {
  /** `memory`, `rabbit` or `amqp1`. */
  readonly kind: string;
  /**
   * Replies carry a result's JSON inside a JSON string (RabbitMQ's oslo 2.0 envelope), where each
   * quote and backslash takes two bytes: what a result weighs against `maxMessageSize` as a reply.
   */
  readonly quotesResults: boolean;
  /**
   * Levels of nesting a request's own encoding puts around its arguments object, which the
   * receiving server counts against its `maxJsonDepth` with them: 1 where the arguments are a
   * member of the message object (RabbitMQ: oslo's `{"method", "args"}`), 2 where that object is
   * itself a member (AMQP 1.0's and memory's `request`/`message`). A caller that checks arguments
   * before sending (the gateway) allows for it, so what it lets through is not refused by the server.
   */
  readonly argsDepth: number;
  /** Sends a request; resolves with the reply for calls, with undefined for casts. */
  send(target: Target, ctx: Context, request: RpcRequest, opts: SendOptions): Promise<Reply | undefined>;
  /** Publishes a notification to `target.topic` (`<topic>.<priority>` already applied). */
  sendNotification(target: Target, ctx: Context, message: Record<string, unknown>, opts: NotificationSendOptions): Promise<void>;
  /** Subscribes an RPC server: topic (shared), topic.server and fanout. */
  listen(target: Target, opts: ListenOptions): Promise<Listener>;
  /** Subscribes a notification listener to `<topic>.<priority>` for each pair; a pool shares one queue. */
  listenForNotifications(
    targets: Array<{ target: Target; priority: string }>,
    pool: string | undefined,
    opts: ListenOptions,
  ): Promise<Listener>;
  /**
   * Opens the connection now instead of at first use (memory: nothing to open) and resolves once
   * it is up, or rejects as a send would at `deadline` (TransportError, AccessRefused,
   * WrongProtocol, ClosedError). For a process that must know its broker is reachable before it
   * says it is ready (a gateway's /readyz).
   */
  connect?(deadline: number): Promise<void>;
  /** Closes every connection; pending calls fail with ClosedError. */
  close(): Promise<void>;
}
