import { type CallEvent, channels, publish } from '../core/diagnostics.js';
import { InvalidArgument, RPCVersionCapError } from '../core/errors.js';
import { Semaphore } from '../core/semaphore.js';
import { type Context, NoOpSerializer, type Serializer } from '../core/serializer.js';
import { Target, type TargetOverrides, versionIsCompatible } from '../core/target.js';
import { clientSpan } from '../core/tracing.js';
import type { RpcRequest } from '../driver/driver.js';
import type { Transport } from '../transport.js';
import { deserializeFailure } from './remote-errors.js';

/** Options of an {@link RPCClient}; durations in milliseconds. */
export interface RPCClientOptions {
  /** Call timeout. @default config `rpc.responseTimeout` (60 000) */
  timeout?: number;
  /** Fail a call after this long without a server heartbeat; 0 = off. @default config `rpc.callMonitorTimeout` */
  callMonitorTimeout?: number;
  /** Connection-failure retries: -1 forever (within the timeout), 0 none, N attempts. @default config `rpc.retry` */
  retry?: number;
  /** Highest version this client may send, `X.Y`. */
  versionCap?: string;
  /** Converts arguments and results. @default NoOpSerializer */
  serializer?: Serializer;
  /** Calls in flight before callers wait or fail. @default config `rpc.maxInFlight` */
  maxInFlight?: number;
  /** Beyond `maxInFlight`: `wait` for a slot (within the call timeout) or `fail`. @default config */
  inFlightOverflow?: 'wait' | 'fail';
  /** Remote modules whose errors are rebuilt as registered classes. @default config `rpc.allowedRemoteExmods` */
  allowedRemoteExmods?: string[];
}

/** Overrides accepted by {@link RPCClient.prepare}: target fields plus per-call options. */
export type PrepareOptions = TargetOverrides & Pick<RPCClientOptions, 'timeout' | 'callMonitorTimeout' | 'retry' | 'versionCap'>;

/** Per-call options of {@link RPCClient.call}. */
export interface CallOptions {
  timeout?: number;
  callMonitorTimeout?: number;
}

type AnyMethod = (ctx: Context, ...rest: never[]) => unknown;

/**
 * Typed remote calls for an endpoint type `T`: every method `m(ctx, args)` of `T` becomes
 * `m(args)` returning a promise of its result. Non-method members and `_private` names drop out.
 */
export type RpcProxy<T> = {
  [K in keyof T as K extends `_${string}` ? never : T[K] extends AnyMethod ? K : never]: T[K] extends (
    ctx: Context,
    ...rest: infer P
  ) => infer R
    ? (...args: P) => Promise<Awaited<R>>
    : never;
};

interface Resolved {
  timeout: number;
  callMonitorTimeout: number;
  retry: number;
  versionCap: string | undefined;
  serializer: Serializer;
  allowed: string[];
}

function checkMs(name: string, value: number | undefined, allowZero: boolean): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new InvalidArgument(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} number of milliseconds, got ${value}`);
  }
}

/**
 * Sends calls (with a reply) and casts (without) to a target. `prepare()` returns a copy
 * with some target fields or options changed; copies share the in-flight bound.
 */
export class RPCClient {
  readonly target: Target;
  private readonly opts: Resolved;
  private readonly slots: Semaphore;

  constructor(
    readonly transport: Transport,
    target: Target,
    options: RPCClientOptions = {},
    slots?: Semaphore,
  ) {
    if (!(target instanceof Target)) throw new InvalidArgument('RPCClient needs a Target');
    const conf = transport.config.rpc;
    checkMs('timeout', options.timeout, false);
    checkMs('callMonitorTimeout', options.callMonitorTimeout, true);
    if (options.versionCap !== undefined && !/^\d+\.\d+(\.\d+)?$/.test(options.versionCap)) {
      throw new InvalidArgument(`versionCap must look like 'X.Y', got ${JSON.stringify(options.versionCap)}`);
    }
    if (options.retry !== undefined && (!Number.isInteger(options.retry) || options.retry < -1)) {
      throw new InvalidArgument(`retry must be -1 (forever), 0 (none) or a number of attempts, got ${options.retry}`);
    }
    this.target = target;
    this.opts = {
      timeout: options.timeout ?? conf.responseTimeout,
      callMonitorTimeout: options.callMonitorTimeout ?? conf.callMonitorTimeout,
      retry: options.retry ?? conf.retry,
      versionCap: options.versionCap,
      serializer: options.serializer ?? new NoOpSerializer(),
      allowed: options.allowedRemoteExmods ?? conf.allowedRemoteExmods,
    };
    this.slots = slots ?? new Semaphore(options.maxInFlight ?? conf.maxInFlight, options.inFlightOverflow ?? conf.inFlightOverflow);
  }

  /** Calls in flight now (shared with prepared copies). */
  get inFlight(): number {
    return this.slots.inUse;
  }

  /** A copy with target fields and options overridden (`null` clears a target field). */
  prepare(overrides: PrepareOptions = {}): RPCClient {
    const { timeout, callMonitorTimeout, retry, versionCap, ...targetFields } = overrides;
    const target = this.target.merge(targetFields);
    return new RPCClient(
      this.transport,
      target,
      {
        timeout: timeout ?? this.opts.timeout,
        callMonitorTimeout: callMonitorTimeout ?? this.opts.callMonitorTimeout,
        retry: retry ?? this.opts.retry,
        ...((versionCap ?? this.opts.versionCap) !== undefined ? { versionCap: (versionCap ?? this.opts.versionCap)! } : {}),
        serializer: this.opts.serializer,
        allowedRemoteExmods: this.opts.allowed,
      },
      this.slots,
    );
  }

  /** Whether `version` (default: the target's) is within the version cap. */
  canSendVersion(version: string | undefined = this.target.version): boolean {
    if (!this.opts.versionCap || version === undefined) return true;
    return versionIsCompatible(this.opts.versionCap, version);
  }

  /** The fields of this client's diagnostics events for one call or cast of `method`. */
  private event(kind: 'call' | 'cast', method: string, end?: { started: number; error: Error | undefined }): CallEvent {
    const t = this.target;
    // Built field by field: object spreads showed in the metrics bench.
    const e = { kind, method, topic: t.topic!, exchange: t.exchange ?? this.transport.config.controlExchange } as CallEvent;
    if (t.server) e.server = t.server;
    if (t.fanout) e.fanout = true;
    if (t.namespace !== undefined) e.namespace = t.namespace;
    if (t.version !== undefined) e.version = t.version;
    if (end) {
      e.durationMs = performance.now() - end.started;
      if (end.error) e.error = end.error;
    }
    return e;
  }

  private build(ctx: Context, method: string, args: unknown): { request: RpcRequest; ctx: Context } {
    if (typeof method !== 'string' || method.length === 0) throw new InvalidArgument('method must be a non-empty string');
    if (ctx === null || typeof ctx !== 'object' || Array.isArray(ctx)) {
      throw new InvalidArgument(
        `the context of ${method} must be a plain object, got ${Array.isArray(ctx) ? 'an array' : ctx === null ? 'null' : typeof ctx}`,
      );
    }
    if (args === undefined) args = {};
    if (args === null || typeof args !== 'object' || Array.isArray(args)) {
      throw new InvalidArgument(
        `arguments of ${method} must be an object of named arguments, got ${Array.isArray(args) ? 'an array' : args === null ? 'null' : typeof args}`,
      );
    }
    const version = this.target.version;
    if (version !== undefined && !this.canSendVersion(version)) throw new RPCVersionCapError(version, this.opts.versionCap!);
    const s = this.opts.serializer;
    const wireCtx = s.serializeContext(ctx);
    const wireArgs: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(args as Record<string, unknown>)) wireArgs[k] = s.serializeEntity(ctx, v);
    const request: RpcRequest = { method, args: wireArgs };
    if (this.target.namespace !== undefined) request.namespace = this.target.namespace;
    if (version !== undefined) request.version = version;
    return { request, ctx: wireCtx };
  }

  /**
   * Calls `method` and resolves with its result. Rejects with MessagingTimeout, the rebuilt
   * remote error (NoSuchMethod, UnsupportedVersion, registered classes) or RemoteError.
   */
  async call<R = unknown>(ctx: Context, method: string, args?: Record<string, unknown>, options: CallOptions = {}): Promise<R> {
    this.target.assertCallable();
    checkMs('timeout', options.timeout, false);
    checkMs('callMonitorTimeout', options.callMonitorTimeout, true);
    const { request, ctx: wireCtx } = this.build(ctx, method, args);
    const timeout = options.timeout ?? this.opts.timeout;
    const started = performance.now();
    let error: Error | undefined;
    const acquired = this.slots.acquire(timeout, `call ${method}`);
    if (acquired) await acquired;
    publish(channels.clientCallStart, () => this.event('call', method));
    const span = clientSpan(() => this.event('call', method), wireCtx);
    try {
      const remaining = Math.max(1, timeout - (performance.now() - started));
      const reply = await this.transport.driver.send(this.target, span?.ctx ?? wireCtx, request, {
        waitForReply: true,
        timeout: remaining,
        callMonitorTimeout: options.callMonitorTimeout ?? this.opts.callMonitorTimeout,
        retry: this.opts.retry,
      });
      if (!reply) throw new InvalidArgument('driver returned no reply for a call');
      if (reply.failure) throw deserializeFailure(reply.failure, this.opts.allowed);
      return this.opts.serializer.deserializeEntity(ctx, reply.result) as R;
    } catch (err) {
      error = err as Error;
      throw err;
    } finally {
      this.slots.release();
      span?.end(error);
      publish(channels.clientCall, () => this.event('call', method, { started, error }));
    }
  }

  /** Sends `method` without waiting for a result; resolves once the transport has accepted it. */
  async cast(ctx: Context, method: string, args?: Record<string, unknown>): Promise<void> {
    this.target.assertCastable();
    const { request, ctx: wireCtx } = this.build(ctx, method, args);
    const started = performance.now();
    let error: Error | undefined;
    publish(channels.clientCallStart, () => this.event('cast', method));
    const span = clientSpan(() => this.event('cast', method), wireCtx);
    try {
      await this.transport.driver.send(this.target, span?.ctx ?? wireCtx, request, {
        waitForReply: false,
        timeout: this.opts.timeout,
        retry: this.opts.retry,
      });
    } catch (err) {
      error = err as Error;
      throw err;
    } finally {
      span?.end(error);
      publish(channels.clientCall, () => this.event('cast', method, { started, error }));
    }
  }

  /**
   * A typed stand-in for a remote endpoint: `client.proxy<Compute>(ctx).resize({...})` is a
   * call checked by tsc against `Compute.resize(ctx, args)`.
   */
  proxy<T extends object>(ctx: Context = {}): RpcProxy<T> {
    return new Proxy(
      {},
      {
        get: (_t, prop) => {
          if (typeof prop !== 'string' || prop === 'then') return undefined;
          return (args?: Record<string, unknown>) => this.call(ctx, prop, args);
        },
      },
    ) as RpcProxy<T>;
  }
}
