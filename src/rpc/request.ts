import { channels, publish, type ServerRequestEvent, type ServerRequestStartEvent } from '../core/diagnostics.js';
import { HermodError, MessageUndeliverable, MessagingTimeout, SerializationError, ServerStopped, textOf } from '../core/errors.js';
import { LazyAbort } from '../core/lazy-abort.js';
import type { Context } from '../core/serializer.js';
import type { Target } from '../core/target.js';
import { serverSpan } from '../core/tracing.js';
import type { Work } from '../core/work-pool.js';
import type { IncomingMessage } from '../driver/driver.js';
import type { JobRunner } from '../jobs/runner.js';
import { type DispatchRequest, parseRequest, type RPCDispatcher } from './dispatcher.js';
import { errorOf, serializeFailure } from './remote-errors.js';

/** Longest interval between two call-monitor heartbeats: a caller monitoring for longer is fed hourly. */
export const MAX_HEARTBEAT_INTERVAL_MS = 3_600_000;

/** Largest call-monitor timeout taken seriously: the longest delay a Node.js timer can hold (~24.8 days). */
export const MAX_CALL_MONITOR_MS = 2 ** 31 - 1;

/**
 * The heartbeat interval for a caller's call-monitor timeout (ms), or undefined for none. As
 * oslo's dispatcher: every int(N)/2 seconds, and none unless that is at least one second. The
 * caller picks N, so it is bounded here: anything that is not a positive finite number or
 * exceeds {@link MAX_CALL_MONITOR_MS} means no monitor, and the interval never exceeds
 * {@link MAX_HEARTBEAT_INTERVAL_MS} (more often than asked is always safe for the caller).
 */
export function heartbeatInterval(callMonitorTimeoutMs: unknown): number | undefined {
  if (typeof callMonitorTimeoutMs !== 'number' || !Number.isFinite(callMonitorTimeoutMs)) return undefined;
  if (callMonitorTimeoutMs <= 0 || callMonitorTimeoutMs > MAX_CALL_MONITOR_MS) return undefined;
  const intervalS = Math.trunc(callMonitorTimeoutMs / 1000) / 2;
  if (intervalS < 1) return undefined;
  return Math.min(intervalS * 1000, MAX_HEARTBEAT_INTERVAL_MS);
}

type ReplyBody = { result: unknown; job?: true } | { failure: ReturnType<typeof serializeFailure> };

/** What a request needs from the server that received it. */
export interface RequestHost {
  readonly target: Target;
  /** The exchange the target is in (the transport's control exchange when it names none). */
  readonly exchange: string;
  readonly dispatcher: RPCDispatcher;
  /**
   * Runs the request on the endpoints current when it is called (a reload swaps them: a request
   * already running keeps the ones it began with), counted against them until it settles.
   */
  dispatch(ctx: Context, req: DispatchRequest): Promise<unknown>;
  readonly sendTraceback: boolean;
  /** Long operations: runs each call, and makes a job of it when it is long or outlives deferAfter. */
  readonly jobs?: JobRunner;
  /** Called once per request when it is over, however it ended. */
  finished(outcome: ServerRequestEvent['outcome']): void;
}

/**
 * One RPC request on a server: dispatches it, keeps the caller's call monitor fed with
 * heartbeats, sends the reply, and reports the outcome on `hermod:rpc:server:request`. Exactly
 * one of "the method finished" and "the server aborted it" settles it; the other is dropped.
 */
export class ServerRequest implements Work {
  private finished = false;
  private started = 0;
  private method: string;
  private namespace: string | undefined;
  private version: string | undefined;
  /** Whether the start event went out (a malformed request has none). */
  private startedEvent = false;
  private heartbeat: NodeJS.Timeout | undefined;
  /** Aborted when the server abandons the request; the method sees it as `ctx.signal`. */
  private readonly abandoned = new LazyAbort();

  constructor(
    private readonly incoming: IncomingMessage,
    private readonly host: RequestHost,
  ) {
    this.method = typeof incoming.message.method === 'string' ? incoming.message.method : '?';
  }

  private get kind(): 'call' | 'cast' {
    return this.incoming.expectsReply ? 'call' : 'cast';
  }

  async run(): Promise<void> {
    const incoming = this.incoming;
    this.started = performance.now();
    // Its caller has had its MessagingTimeout: running it now is work nobody waits for (with its
    // side effects), and the requests behind it wait longer. RabbitMQ drops such a request in
    // the queue; one a server took early, behind its concurrency, is dropped here.
    if (incoming.expiresAt !== undefined && this.started >= incoming.expiresAt) {
      this.finished = true;
      incoming.acknowledge();
      const waited = Math.round(this.started - (incoming.expiresAt - (incoming.ttl ?? 0)));
      this.finish(
        'expired',
        new MessagingTimeout(
          `${this.kind} ${this.method} not run: its ttl of ${incoming.ttl} ms ran out while it waited ${waited} ms for a free slot (concurrency); its caller has stopped waiting`,
        ),
      );
      return;
    }
    // oslo acknowledges a request when it starts on it (at-most-once): a crash never runs it twice.
    // One that can no longer be acknowledged (its connection dropped while it waited for a slot)
    // is delivered again by the broker: this copy is dropped, as oslo drops it.
    if (!incoming.acknowledge()) {
      incoming.done();
      return;
    }
    const every = incoming.expectsReply ? heartbeatInterval(incoming.callMonitorTimeout) : undefined;
    if (every !== undefined) {
      this.heartbeat = setInterval(() => {
        incoming.heartbeat().catch(() => {});
      }, every);
      // A heartbeat timer alone must not keep a stopping process alive.
      this.heartbeat.unref();
    }
    let outcome: ServerRequestEvent['outcome'] = 'ok';
    let error: Error | undefined;
    let reply: ReplyBody;
    try {
      const req = parseRequest(incoming.message);
      this.method = req.method;
      this.namespace = req.namespace;
      this.version = req.version;
      this.startedEvent = channels.serverRequestStart.hasSubscribers;
      publish(channels.serverRequestStart, () => this.event());
      const dispatch = (ctx: typeof incoming.ctx) => this.host.dispatch(ctx, req);
      const jobs = this.host.jobs;
      const result = await serverSpan(
        incoming.ctx,
        () => this.event(),
        () =>
          jobs && incoming.expectsReply
            ? jobs.run(incoming.ctx, req, this.abandoned, dispatch, incoming.expiresAt)
            : dispatch(incoming.ctx),
      );
      reply = jobs?.issued(result) ? { result, job: true } : { result };
    } catch (err) {
      [error, outcome] = classify(err);
      reply = { failure: serializeFailure(err, { includeTraceback: this.host.sendTraceback }) };
    }
    this.stopHeartbeat();
    if (this.finished) return;
    this.finished = true;
    if (incoming.expectsReply) {
      const problem = await this.sendReply(reply);
      if (problem && !error) {
        error = problem;
        outcome = 'error';
      }
    }
    this.finish(outcome, error);
  }

  /** The caller gets a ServerStopped failure now; the method's late result is dropped. */
  async abort(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    this.stopHeartbeat();
    const err = new ServerStopped(`server ${this.host.target.server} stopped before ${this.method} finished`);
    this.abandoned.abort(err);
    await this.sendReply({ failure: serializeFailure(err) });
    this.finish('aborted', err);
  }

  requeue(): void {
    this.incoming.requeue();
  }

  private stopHeartbeat(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  /** Sends a reply; a result that cannot be encoded becomes a failure the caller can read. */
  private async sendReply(reply: ReplyBody): Promise<Error | undefined> {
    if (!this.incoming.expectsReply) return undefined;
    try {
      await this.incoming.reply(reply as never);
      return undefined;
    } catch (err) {
      const e = err instanceof Error ? err : new SerializationError(textOf(err));
      // The caller's queue is gone (the driver already tried again for a while): a failure
      // reply would find none either.
      if (e instanceof MessageUndeliverable) return e;
      try {
        await this.incoming.reply({ failure: serializeFailure(e, { includeTraceback: this.host.sendTraceback }) });
      } catch {
        // The reply path itself is gone (caller vanished, connection lost): nothing to tell.
      }
      return e;
    }
  }

  private finish(outcome: ServerRequestEvent['outcome'], error: Error | undefined): void {
    this.host.finished(outcome);
    this.incoming.done();
    publish(channels.serverRequest, () => {
      const e = this.event() as ServerRequestEvent;
      e.durationMs = performance.now() - this.started;
      e.outcome = outcome;
      e.started = this.startedEvent;
      if (error) e.error = error;
      const requestId = this.incoming.ctx.request_id;
      if (typeof requestId === 'string') e.requestId = requestId;
      return e;
    });
  }

  private event(): ServerRequestStartEvent {
    const target = this.host.target;
    // Built field by field: object spreads showed in the metrics bench.
    const e: ServerRequestStartEvent = {
      server: target.server!,
      topic: target.topic!,
      exchange: this.host.exchange,
      method: this.method,
      kind: this.kind,
    };
    if (this.namespace !== undefined) e.namespace = this.namespace;
    if (this.version !== undefined) e.version = this.version;
    return e;
  }
}

/**
 * What a thrown value means for the request's event. Reading it must not throw: a Proxy whose
 * traps throw would otherwise skip the reply and keep the call's slot forever.
 */
function classify(err: unknown): [Error, ServerRequestEvent['outcome']] {
  try {
    const invalid =
      err instanceof HermodError && (err.code === 'HERMOD_ERR_MALFORMED_MESSAGE' || err.code === 'HERMOD_ERR_INVALID_ARGUMENT');
    // errorOf: named NonErrorThrown, as the caller's reply names it; a plain Error put the
    // metrics' exception label at "Error" while the caller got NonErrorThrown.
    return [errorOf(err), invalid ? 'invalid' : 'error'];
  } catch (e) {
    return [new Error(`an error was thrown that could not be read (${textOf(e)})`), 'error'];
  }
}
