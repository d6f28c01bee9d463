import { type ContractProxy, type Contracts, contractsOf } from '../contracts/contract.js';
import { checkArgs, compileContracts } from '../contracts/validator.js';
import { ContractViolation } from '../contracts/violation.js';
import { type CallEvent, channels, publish } from '../core/diagnostics.js';
import {
  AccessRefused,
  assertMs,
  ClosedError,
  InvalidArgument,
  MessageUndeliverable,
  MessagingTimeout,
  RPCVersionCapError,
  ServerStopped,
  TooManyInFlight,
  TransportError,
  UnsupportedVersion,
} from '../core/errors.js';
import { setOwn } from '../core/plain.js';
import { Semaphore } from '../core/semaphore.js';
import { type Context, NoOpSerializer, type Serializer } from '../core/serializer.js';
import { assertOptions } from '../core/suggest.js';
import { Target, type TargetOverrides, versionIsCompatible } from '../core/target.js';
import { clientSpan } from '../core/tracing.js';
import type { Reply, RpcRequest } from '../driver/driver.js';
import { START_HINT } from '../jobs/context.js';
import { InvalidJobToken } from '../jobs/errors.js';
import { Job } from '../jobs/job.js';
import { JobPoller, type PollOptions } from '../jobs/poller.js';
import { type JobToken, ownJobToken, parseJobToken } from '../jobs/token.js';
import type { Transport } from '../transport.js';
import { QUIET_DESCRIBE } from './introspection.js';
import { MultiCall, type UntypedRemote } from './multicall.js';
import { deserializeFailure, isRemote, registerHermodError } from './remote-errors.js';

// A server's ContractViolation comes back as one, with its violations.
registerHermodError('ContractViolation', ContractViolation.fromFailure);

/** Options of {@link RPCClient.proxy} given a contracts map. */
export interface ContractProxyOptions<C extends Contracts> {
  /** The endpoint's contracts (its class's static `contracts`): the proxy's types come from them. */
  contracts: C;
  /** Check arguments before sending: a bad call fails with ContractViolation and is not sent. @default false */
  check?: boolean;
}

/** Options of an {@link RPCClient}; durations in milliseconds. */
export interface RPCClientOptions {
  /** Call timeout. @default config `rpc.responseTimeout` (60 000) */
  timeout?: number;
  /** Fail a call after this long without a server heartbeat; 0 = off. @default config `rpc.callMonitorTimeout` */
  callMonitorTimeout?: number;
  /** Connection-failure retries: -1 forever (within the timeout), 0 none, N attempts. @default config `rpc.retry` */
  retry?: number;
  /** Highest version this client may send, `X.Y` (or `X.Y.Z`). */
  versionCap?: string;
  /** Converts arguments and results. @default NoOpSerializer */
  serializer?: Serializer;
  /** Calls in flight before callers wait or fail. @default config `rpc.maxInFlight` */
  maxInFlight?: number;
  /** Beyond `maxInFlight`: `wait` for a slot (within the call timeout) or `fail`. @default config */
  inFlightOverflow?: 'wait' | 'fail';
  /** Remote modules whose errors are rebuilt as registered classes. @default config `rpc.allowedRemoteExmods` */
  allowedRemoteExmods?: string[];
  /** How long `call()` follows a job a server answered with, in ms; 0 = no bound. @default config `jobs.jobTimeout` */
  jobTimeout?: number;
  /** `call()` polls a job token to its result (true) or returns the token dict (false). @default true */
  followJobs?: boolean;
}

/** Overrides accepted by {@link RPCClient.prepare}: target fields plus per-call options. */
export type PrepareOptions = TargetOverrides &
  Pick<RPCClientOptions, 'timeout' | 'callMonitorTimeout' | 'retry' | 'jobTimeout' | 'followJobs'> & {
    /** Highest version the copy may send; `null` clears the cap (oslo's `prepare(version_cap=None)`). */
    versionCap?: string | null;
  };

/** Per-call options of {@link RPCClient.call}. */
export interface CallOptions {
  /** This call's timeout (ms). @default the client's */
  timeout?: number;
  /** This call's call-monitor timeout (ms); 0 turns it off. @default the client's */
  callMonitorTimeout?: number;
  /** Bound of following a job (when the server answers with a job token); 0 = none. */
  jobTimeout?: number;
}

// Every option name of each options type: the compiler keeps these complete, and misspelt
// options are refused (see assertOptions).
const CLIENT_OPTIONS: Record<keyof RPCClientOptions, true> = {
  timeout: true,
  callMonitorTimeout: true,
  retry: true,
  versionCap: true,
  serializer: true,
  maxInFlight: true,
  inFlightOverflow: true,
  allowedRemoteExmods: true,
  jobTimeout: true,
  followJobs: true,
};
const PREPARE_OPTIONS: Record<keyof PrepareOptions, true> = {
  exchange: true,
  topic: true,
  namespace: true,
  version: true,
  server: true,
  fanout: true,
  timeout: true,
  callMonitorTimeout: true,
  retry: true,
  versionCap: true,
  jobTimeout: true,
  followJobs: true,
};
const CALL_OPTIONS: Record<keyof CallOptions, true> = { timeout: true, callMonitorTimeout: true, jobTimeout: true };
const WAIT_OPTIONS: Record<keyof WaitForServerOptions, true> = { timeout: true, interval: true };

/** Options of {@link RPCClient.waitForServer}, in ms. */
export interface WaitForServerOptions {
  /** How long to wait in all. @default the client's timeout */
  timeout?: number;
  /** The pause after an attempt that failed at once (no queue yet, broker not reachable). @default 500 */
  interval?: number;
}

/** What {@link RPCClient.waitForServer} resolves with. */
export interface ServerFound {
  /** The server that answered; undefined when it did not say (an oslo.messaging server, or introspection off). */
  server: string | undefined;
  /** How long the wait took, in whole ms. */
  waitedMs: number;
}

/**
 * How long one attempt of waitForServer waits for its answer: a request that sits in a queue (or
 * at a router) with no consumer yet is answered as soon as a server takes it, so a long attempt
 * costs nothing; a fresh one now and then covers a request lost with a server that died holding it.
 */
const PROBE_MS = 5_000;

/**
 * Whether an attempt of waitForServer failed for want of a server (or of the broker) worth waiting
 * for: no queue bound yet, no connection yet, a server stopping, servers there that serve another
 * version or namespace (a rolling upgrade), the client's slots all taken, or no answer in time.
 * A refused login, vhost or permission is not: no wait mends it (the connect gives up on it too).
 */
function noServerYet(err: unknown): boolean {
  if (err instanceof AccessRefused) return false;
  return (
    err instanceof MessagingTimeout ||
    err instanceof MessageUndeliverable ||
    err instanceof TransportError ||
    err instanceof ServerStopped ||
    err instanceof UnsupportedVersion ||
    err instanceof TooManyInFlight
  );
}
const PROXY_OPTIONS: Record<keyof ContractProxyOptions<Contracts>, true> = { contracts: true, check: true };

/** The durations a client and each call take: a timeout above 0, the others 0 (off) or more. */
function checkDurations(o: CallOptions): void {
  assertMs('timeout', o.timeout, false);
  assertMs('callMonitorTimeout', o.callMonitorTimeout, true);
  assertMs('jobTimeout', o.jobTimeout, true);
}

/** A call's or start's options: known names, valid durations. */
function checkCallOptions(options: CallOptions, what: string): void {
  assertOptions(options, CALL_OPTIONS, what);
  checkDurations(options);
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
  jobTimeout: number;
  followJobs: boolean;
}

/**
 * Sends calls (with a reply) and casts (without) to a target. `prepare()` returns a copy
 * with some target fields or options changed; copies share the in-flight bound.
 */
export class RPCClient {
  /** Where the client sends: its calls go to this target, or to one made with `prepare()`. */
  readonly target: Target;
  private readonly opts: Resolved;
  private readonly slots: Semaphore;

  constructor(
    /** The transport the client sends over. */
    readonly transport: Transport,
    target: Target,
    options: RPCClientOptions = {},
    slots?: Semaphore,
  ) {
    if (!(target instanceof Target)) throw new InvalidArgument('RPCClient needs a Target');
    assertOptions(options, CLIENT_OPTIONS, 'RPCClient options');
    const conf = transport.config.rpc;
    checkDurations(options);
    if (options.versionCap !== undefined && !/^\d+\.\d+(\.\d+)?$/.test(options.versionCap)) {
      throw new InvalidArgument(`versionCap must look like 'X.Y' or 'X.Y.Z', got ${JSON.stringify(options.versionCap)}`);
    }
    if (options.retry !== undefined && (!Number.isInteger(options.retry) || options.retry < -1)) {
      throw new InvalidArgument(`retry must be -1 (forever), 0 (none) or a number of attempts, got ${options.retry}`);
    }
    // As the config keys are checked: 0 or NaN made every call wait forever (or fail), 1.5 two.
    if (options.maxInFlight !== undefined && (!Number.isInteger(options.maxInFlight) || options.maxInFlight < 1)) {
      throw new InvalidArgument(`maxInFlight must be a whole number of calls, at least 1, got ${options.maxInFlight}`);
    }
    if (options.inFlightOverflow !== undefined && options.inFlightOverflow !== 'wait' && options.inFlightOverflow !== 'fail') {
      throw new InvalidArgument(`inFlightOverflow must be 'wait' or 'fail', got ${JSON.stringify(options.inFlightOverflow)}`);
    }
    this.target = target;
    this.opts = {
      timeout: options.timeout ?? conf.responseTimeout,
      callMonitorTimeout: options.callMonitorTimeout ?? conf.callMonitorTimeout,
      retry: options.retry ?? conf.retry,
      versionCap: options.versionCap,
      serializer: options.serializer ?? new NoOpSerializer(),
      allowed: options.allowedRemoteExmods ?? conf.allowedRemoteExmods,
      jobTimeout: options.jobTimeout ?? transport.config.jobs.jobTimeout,
      followJobs: options.followJobs ?? true,
    };
    this.slots = slots ?? new Semaphore(options.maxInFlight ?? conf.maxInFlight, options.inFlightOverflow ?? conf.inFlightOverflow);
  }

  /** Calls in flight now (shared with prepared copies). */
  get inFlight(): number {
    return this.slots.inUse;
  }

  /** A copy with target fields and options overridden (`null` clears a target field). */
  prepare(overrides: PrepareOptions = {}): RPCClient {
    assertOptions(overrides, PREPARE_OPTIONS, 'prepare()');
    const { timeout, callMonitorTimeout, retry, versionCap, jobTimeout, followJobs, ...targetFields } = overrides;
    const target = this.target.merge(targetFields);
    const cap = versionCap === null ? undefined : (versionCap ?? this.opts.versionCap);
    return new RPCClient(
      this.transport,
      target,
      {
        timeout: timeout ?? this.opts.timeout,
        callMonitorTimeout: callMonitorTimeout ?? this.opts.callMonitorTimeout,
        retry: retry ?? this.opts.retry,
        ...(cap !== undefined ? { versionCap: cap } : {}),
        serializer: this.opts.serializer,
        allowedRemoteExmods: this.opts.allowed,
        jobTimeout: jobTimeout ?? this.opts.jobTimeout,
        followJobs: followJobs ?? this.opts.followJobs,
      },
      this.slots,
    );
  }

  /**
   * Whether `version` (default: the target's) is within the version cap. As oslo's, with a cap
   * set a request that names no version is not: what it would call cannot be bounded.
   */
  canSendVersion(version: string | undefined = this.target.version): boolean {
    if (!this.opts.versionCap) return true;
    if (version === undefined) return false;
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
    if (typeof method !== 'string' || method.length === 0) {
      // call('users.get', { id: 1 }), Moleculer's and NestJS's shape: the method went where the context goes.
      const shifted =
        typeof ctx === 'string' && ctx !== ''
          ? `; the request context comes first: (ctx, method, args), e.g. ({}, ${JSON.stringify(ctx).slice(0, 100)}, { ... })`
          : '';
      const got = method === '' ? 'an empty string' : method === null ? 'null' : Array.isArray(method) ? 'an array' : typeof method;
      throw new InvalidArgument(`method must be a non-empty string, got ${got}${shifted}`);
    }
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
    if (!this.canSendVersion(version)) throw new RPCVersionCapError(version, this.opts.versionCap!);
    const s = this.opts.serializer;
    const wireCtx = s.serializeContext(ctx);
    const wireArgs: Record<string, unknown> = {};
    // setOwn: a `__proto__` argument (from JSON.parse) stays an argument, which a hermod server
    // refuses as MalformedMessage; `wireArgs[k] =` made it the prototype and the call ran without it.
    // for-in with an own check, not Object.entries: no pair array per argument (half the time on
    // a gateway body of many keys, and no garbage per call).
    const a = args as Record<string, unknown>;
    for (const k in a) if (Object.hasOwn(a, k)) setOwn(wireArgs, k, s.serializeEntity(ctx, a[k]));
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
    checkCallOptions(options, 'call options');
    const reply = await this.callOnce(ctx, method, args, options);
    // A marked reply is the server's word that this is the token of the job it made of this very
    // request: no shape check on top (the token's exchange is the server's, which a call routed
    // by queue name need not have named).
    const token = reply.job && this.opts.followJobs ? parseJobToken(reply.result) : undefined;
    if (!token) return this.opts.serializer.deserializeEntity(ctx, reply.result) as R;
    return this.jobOf<R>(token, ctx).result({ timeout: options.jobTimeout ?? this.opts.jobTimeout });
  }

  /**
   * {@link call} that does not follow a job: resolves with `{ result, token }`, where `token` is
   * set (and `result` is that token) only when the server made this call a job and marked its
   * reply so. For callers that decide themselves whether to wait (the gateway does). Unlike
   * `call()` with `followJobs: false`, a result that merely looks like a token is told apart.
   */
  async callOrJob(
    ctx: Context,
    method: string,
    args?: Record<string, unknown>,
    options: CallOptions = {},
  ): Promise<{ result: unknown; token: JobToken | undefined }> {
    this.target.assertCallable();
    checkCallOptions(options, 'call options');
    const reply = await this.callOnce(ctx, method, args, options);
    const token = reply.job ? parseJobToken(reply.result) : undefined;
    return { result: token ?? this.opts.serializer.deserializeEntity(ctx, reply.result), token };
  }

  /** The token of this call's own job when `reply` is shaped as one (see {@link ownJobToken}). */
  private ownJob(reply: unknown, method: string): JobToken | undefined {
    const t = this.target;
    return ownJobToken(reply, { topic: t.topic, method, exchange: t.exchange ?? this.transport.config.controlExchange, server: t.server });
  }

  /**
   * Starts `method` as a job and returns its handle at once, whatever the method: a hermod
   * server makes a job of it (bounded by its `jobs.max`) and answers with the token. Rejects with
   * InvalidJobToken when the server answered with a plain result (not a hermod server).
   */
  async start<R = unknown>(ctx: Context, method: string, args?: Record<string, unknown>, options: CallOptions = {}): Promise<Job<R>> {
    this.target.assertCallable();
    checkCallOptions(options, 'start options');
    const reply = await this.callOnce({ ...ctx, [START_HINT]: 'start' }, method, args, options);
    // Only a reply the server marked: a server that does not run jobs (oslo's) answers with the
    // method's result, which may look like a token.
    if (reply.job) return this.jobOf<R>(parseJobToken(reply.result), ctx);
    const unmarked = this.ownJob(reply.result, method);
    if (unmarked) {
      // The token of this very call, unmarked: a hermod server older than the marker made a job
      // of it, which runs. The error says so and carries the token, so the job is not lost.
      throw new InvalidJobToken(
        `${method} answered with a job token its reply does not mark: a hermod server older than this client made a job of it, which runs (upgrade servers before clients; err.token re-attaches to it), or the method returned a dict shaped like one`,
        { token: unmarked },
      );
    }
    throw new InvalidJobToken(`${method} answered with a plain result, not a job token: the server does not run jobs`);
  }

  /**
   * Re-attaches to a job from its token (the dict, or its JSON text as `job.serialized`), e.g.
   * after this process restarted. Throws InvalidJobToken on a malformed token; polls go to the
   * token's server, whatever this client's target.
   */
  job<R = unknown>(token: JobToken | string | Record<string, unknown>, ctx: Context = {}): Job<R> {
    return this.jobOf<R>(parseJobToken(token), ctx);
  }

  private jobOf<R>(token: JobToken, ctx: Context): Job<R> {
    const jc = this.transport.config.jobs;
    const options: PollOptions = {
      pollInterval: jc.pollInterval,
      pollMax: jc.pollMax,
      pollTimeout: jc.pollTimeout,
      jobTimeout: this.opts.jobTimeout,
    };
    // Polls bypass the version cap (the jobs endpoint has its own version) and the in-flight bound.
    const poll = (target: Target, c: Context, m: string, a: Record<string, unknown>, timeout: number) =>
      new RPCClient(this.transport, target, {
        timeout,
        retry: this.opts.retry,
        allowedRemoteExmods: this.opts.allowed,
        followJobs: false,
      })
        .callOnce(c, m, a, {})
        .then((r) => r.result);
    return new Job<R>(new JobPoller(token, poll, ctx, options), (v) => this.opts.serializer.deserializeEntity(ctx, v));
  }

  /** One request and its reply (the wire result, not deserialized). */
  private async callOnce(ctx: Context, method: string, args: Record<string, unknown> | undefined, options: CallOptions): Promise<Reply> {
    const { request, ctx: wireCtx } = this.build(ctx, method, args);
    const timeout = options.timeout ?? this.opts.timeout;
    const started = performance.now();
    let error: Error | undefined;
    try {
      const acquired = this.slots.acquire(timeout, `call ${method}`);
      if (acquired) await acquired;
    } catch (err) {
      // Refused (TooManyInFlight) or timed out waiting for a slot: still a call that failed, in
      // the client metrics and events, since overload is when an operator looks at them.
      publish(channels.clientCallStart, () => this.event('call', method));
      publish(channels.clientCall, () => this.event('call', method, { started, error: err as Error }));
      throw err;
    }
    publish(channels.clientCallStart, () => this.event('call', method));
    const span = clientSpan(() => this.event('call', method), wireCtx);
    try {
      const remaining = Math.max(1, timeout - (performance.now() - started));
      const reply = await this.transport.driver.send(this.target, span?.ctx ?? wireCtx, request, {
        waitForReply: true,
        timeout: remaining,
        callTimeout: timeout,
        callMonitorTimeout: options.callMonitorTimeout ?? this.opts.callMonitorTimeout,
        retry: this.opts.retry,
      });
      if (!reply) throw new InvalidArgument('driver returned no reply for a call');
      // Any failure a peer sent, falsy ones too (`"0"`, `"false"`): a falsy test made those calls succeed.
      if (reply.failure !== undefined && reply.failure !== null) throw deserializeFailure(reply.failure, this.opts.allowed);
      return reply;
    } catch (err) {
      error = err as Error;
      throw err;
    } finally {
      this.slots.release();
      span?.end(error);
      publish(channels.clientCall, () => this.event('call', method, { started, error }));
    }
  }

  /**
   * Waits until a server of this client's target answers, for a process that starts before the
   * services it calls (Moleculer's `waitForServices`). Each attempt asks `hermod_describe_ignore_errors`
   * (QUIET_DESCRIBE) in the target's namespace and version; an answer from a server that serves
   * them is a server, whatever it says: an oslo.messaging server's NoSuchMethod too (logged at
   * DEBUG there), or a refusal of its access policy. An attempt that failed for want of one (no
   * queue yet, the broker not reachable, a server stopping, only servers of another version or
   * namespace, the attempt's own timeout) is made again, after `interval` when it failed at once,
   * until `timeout` (at least one attempt); then MessagingTimeout, naming the last failure. What no
   * wait mends is thrown at once: a refused login or vhost (AccessRefused), a refused request, the
   * client's own errors (ClosedError, also when the transport closes during the wait; a version
   * cap; a fanout target). The attempts are calls in the client's events and metrics, under that
   * method name.
   */
  async waitForServer(options: WaitForServerOptions = {}): Promise<ServerFound> {
    this.target.assertCallable();
    assertOptions(options, WAIT_OPTIONS, 'waitForServer()');
    assertMs('timeout', options.timeout, false);
    assertMs('interval', options.interval, true);
    const timeout = options.timeout ?? this.opts.timeout;
    const interval = options.interval ?? 500;
    const started = performance.now();
    let last: unknown;
    for (let attempts = 0; ; attempts++) {
      const left = timeout - (performance.now() - started);
      // At least one attempt, however small the timeout: a server already there is found.
      if (left <= 0 && attempts > 0) {
        const t = this.target;
        const why = last instanceof Error ? `; the last attempt: ${last.message}` : '';
        throw new MessagingTimeout(
          `no server of topic ${t.topic}${t.server ? ` server ${t.server}` : ''} answered within ${timeout} ms${why}`,
          { cause: last },
        );
      }
      const attempt = performance.now();
      try {
        const described = await this.callOnce(
          {},
          QUIET_DESCRIBE,
          {},
          { timeout: Math.max(1, Math.min(left, PROBE_MS)), callMonitorTimeout: 0 },
        );
        const d = described.result as { server?: unknown } | null;
        return { server: typeof d?.server === 'string' ? d.server : undefined, waitedMs: Math.round(performance.now() - started) };
      } catch (err) {
        if (!noServerYet(err)) {
          // Any other answer from a server (an oslo server's NoSuchMethod, an access policy's
          // refusal) is a server; the client's own errors are thrown.
          if (isRemote(err)) return { server: undefined, waitedMs: Math.round(performance.now() - started) };
          throw err;
        }
        last = err;
      }
      // An attempt that failed at once waits out the interval; one that waited for its answer did.
      const pause = Math.min(interval - (performance.now() - attempt), timeout - (performance.now() - started));
      if (pause > 0) await this.pause(pause);
    }
  }

  /** Waits `ms`, or less when the transport closes meanwhile (the next attempt then says so). */
  private pause(ms: number): Promise<void> {
    if (this.transport.state.state === 'closed') return Promise.reject(new ClosedError('the transport was closed'));
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.transport.off('close', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.transport.once('close', done);
    });
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
   * Several calls sent together, results read in order, each failure raised only when its
   * result is read: `await client.multicall(ctx).call('a', {...}).call('b', {...}).run()`.
   * With an endpoint type, `client.multicall<Calc>(ctx)`, tsc checks each call's method and
   * arguments against `Calc` (as {@link proxy} does) and the results are typed in order.
   */
  multicall<T extends object = never>(ctx: Context = {}): MultiCall<[T] extends [never] ? UntypedRemote : RpcProxy<T>> {
    this.target.assertCallable();
    // Here, not in run(): each call there failed alike with it, one by one.
    if (ctx === null || typeof ctx !== 'object' || Array.isArray(ctx)) {
      throw new InvalidArgument(
        `the context of a MultiCall must be a plain object, got ${Array.isArray(ctx) ? 'an array' : ctx === null ? 'null' : typeof ctx}`,
      );
    }
    return new MultiCall<[T] extends [never] ? UntypedRemote : RpcProxy<T>>(this, ctx);
  }

  /**
   * A typed stand-in for a remote endpoint: `client.proxy<Compute>(ctx).resize({...})` is a
   * call checked by tsc against `Compute.resize(ctx, args)`. Given the endpoint's contracts
   * (`client.proxy(ctx, { contracts: Calculator.contracts, check: true })`), argument and result
   * types come from their TypeBox schemas, and `check` fails a bad call before it is sent.
   */
  proxy<T extends object>(ctx?: Context): RpcProxy<T>;
  proxy<const C extends Contracts>(ctx: Context, options: ContractProxyOptions<C>): ContractProxy<C>;
  proxy(ctx: Context = {}, options?: ContractProxyOptions<Contracts>): unknown {
    assertOptions(options, PROXY_OPTIONS, 'proxy() options');
    const checks =
      options?.check && options.contracts
        ? compileContracts(contractsOf({ contracts: options.contracts }, 'proxy') ?? {}, 'proxy')
        : undefined;
    return new Proxy(
      {},
      {
        get: (_t, prop) => {
          if (typeof prop !== 'string' || prop === 'then') return undefined;
          const contract = checks?.get(prop);
          return (args?: Record<string, unknown>) => {
            if (contract) {
              try {
                checkArgs(contract, prop, args ?? {});
              } catch (err) {
                return Promise.reject(err);
              }
            }
            return this.call(ctx, prop, args);
          };
        },
      },
    );
  }
}
