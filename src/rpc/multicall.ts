import { assertMs, InvalidArgument } from '../core/errors.js';
import type { Context } from '../core/serializer.js';
import { assertOptions } from '../core/suggest.js';

/** What a {@link MultiCall} needs of a client: its `call`. */
export interface Caller {
  /** Makes one call; a MultiCall hands each of its calls here. */
  call<R = unknown>(
    ctx: Context,
    method: string,
    args?: Record<string, unknown>,
    options?: { timeout?: number; callMonitorTimeout?: number },
  ): Promise<R>;
}

/** Options of one call in a {@link MultiCall}. */
export interface MultiCallOptions {
  /** This call's timeout (ms). @default the client's */
  timeout?: number;
  /** This call's call-monitor timeout (ms). @default the client's */
  callMonitorTimeout?: number;
  /**
   * Another client to send this call with, for another target (`client.prepare({ server })`);
   * it shares nothing with the multicall's client but the moment it is sent.
   */
  via?: Caller;
}

const ENTRY_OPTIONS: Record<keyof MultiCallOptions, true> = { timeout: true, callMonitorTimeout: true, via: true };

declare const untyped: unique symbol;
/**
 * The remote shape of a MultiCall made without an endpoint type (`client.multicall(ctx)`): any
 * method name, named arguments, `unknown` results.
 */
export interface UntypedRemote {
  /** A brand only: no value has it, so no endpoint type is mistaken for this one. */
  readonly [untyped]: true;
}

type AnyRemoteMethod = (...args: never[]) => Promise<unknown>;

/** Method names a MultiCall over the remote shape `S` (an `RpcProxy<T>`) accepts. */
export type MultiCallMethod<S> = [S] extends [UntypedRemote]
  ? string
  : { [K in keyof S]: S[K] extends AnyRemoteMethod ? K : never }[keyof S] & string;

/**
 * What follows the method name in `call()`: the method's arguments (required when the endpoint's
 * method requires them, absent when it takes none), then the entry's options.
 */
export type MultiCallRest<S, K> = [S] extends [UntypedRemote]
  ? [args?: Record<string, unknown>, options?: MultiCallOptions]
  : K extends keyof S
    ? S[K] extends (...args: infer P) => Promise<unknown>
      ? P extends []
        ? [args?: undefined, options?: MultiCallOptions]
        : P extends [infer A, ...unknown[]]
          ? [args: A, options?: MultiCallOptions]
          : P extends [(infer A)?, ...unknown[]]
            ? [args?: A, options?: MultiCallOptions]
            : never
      : never
    : never;

/** The result type of method `K` of the remote shape `S`: `unknown` when untyped. */
export type MultiCallResult<S, K> = [S] extends [UntypedRemote]
  ? unknown
  : K extends keyof S
    ? S[K] extends (...args: never[]) => Promise<infer R>
      ? R
      : unknown
    : unknown;

/**
 * The type of result `I` of the results `R`. A MultiCall whose calls were queued without keeping
 * the returned value (in a loop) has no tuple to read from: its results are `unknown`, as untyped.
 */
export type MultiCallResultAt<R extends unknown[], I extends number> = R extends [] ? unknown : R[I];

/**
 * A MultiCall after queuing a call of `K`: typed, its results grow by that call's; untyped, it
 * stays `MultiCall` (whose results are `unknown`), so that code that keeps one in a `MultiCall`
 * variable and reassigns it in a loop compiles as before.
 */
export type MultiCallAfter<S, R extends unknown[], K> = [S] extends [UntypedRemote]
  ? MultiCall<S, R>
  : MultiCall<S, [...R, MultiCallResult<S, K>]>;

/** One call's outcome, as {@link MultiCallResults.settled} gives it. */
export type MultiCallSettled<R> = { method: string; ok: true; value: R } | { method: string; ok: false; error: Error };

interface Queued {
  via: Caller;
  method: string;
  args: Record<string, unknown> | undefined;
  options: { timeout?: number; callMonitorTimeout?: number };
}

/**
 * Several calls sent together and answered in order, with xmlrpclib's and zerorpc's MultiCall
 * semantics: queue calls with {@link call}, send them with {@link run}, and read the results;
 * a call that failed raises its own error only when its result is read, so one failure does not
 * hide the others' results.
 *
 * ```ts
 * const results = await client.multicall(ctx).call('add', { a: 1, b: 2 }).call('echo', { value: 'x' }).run();
 * const [sum, echoed] = results; // iterating throws at the first call that failed
 * ```
 *
 * All calls are handed to the driver in the same turn of the event loop, so the driver writes
 * them to the socket together (one write on RabbitMQ and AMQP 1.0 where the batch fits its
 * buffers); each is an ordinary oslo call on the wire, so any server (hermod or Python) answers.
 *
 * Made with an endpoint type (`client.multicall<Calc>(ctx)`, as `client.proxy<Calc>()`), each
 * entry's method name and arguments are checked by tsc against `Calc`, and the results are typed
 * in order: `S` is the remote shape (`RpcProxy<Calc>`), `R` the tuple of results queued so far.
 */
export class MultiCall<S = UntypedRemote, R extends unknown[] = []> {
  private readonly queued: Queued[] = [];
  private ran = false;

  constructor(
    private readonly client: Caller,
    private readonly ctx: Context,
  ) {}

  /** Calls queued so far. */
  get size(): number {
    return this.queued.length;
  }

  /**
   * Queues a call of `method`; chainable. Returns this MultiCall, its type extended by the
   * call's result: keep chaining, or keep the returned value, for typed results.
   */
  call<K extends MultiCallMethod<S>>(method: K, ...rest: MultiCallRest<S, K>): MultiCallAfter<S, R, K>;
  call(method: string, args?: unknown, options: MultiCallOptions = {}): unknown {
    if (this.ran) throw new InvalidArgument('this MultiCall already ran: make a new one with client.multicall()');
    if (typeof method !== 'string' || method === '') throw new InvalidArgument('a MultiCall entry needs a method name');
    assertOptions(options, ENTRY_OPTIONS, `MultiCall options of ${method}`);
    const { via, ...callOptions } = options;
    // Checked here: a bad one failed in run() after the calls before it were sent, unhandled.
    if (via !== undefined && typeof (via as Partial<Caller> | null)?.call !== 'function')
      throw new InvalidArgument(
        `MultiCall options of ${method}: via must be a client (client.prepare({ … })), got ${via === null ? 'null' : typeof via}`,
      );
    // A client whose target cannot be called (fanout) failed its entry only in run().
    (via as { target?: { assertCallable?: () => void } } | undefined)?.target?.assertCallable?.();
    // As a client's call checks them, but at queue time: run() would send the calls around it.
    try {
      assertMs('timeout', callOptions.timeout, false);
      assertMs('callMonitorTimeout', callOptions.callMonitorTimeout, true);
    } catch (err) {
      throw new InvalidArgument(`MultiCall options of ${method}: ${(err as Error).message}`);
    }
    // Arguments that are no object are the client's to refuse, as that entry's failure in run().
    this.queued.push({ via: via ?? this.client, method, args: args as Record<string, unknown> | undefined, options: callOptions });
    // The same object: only its type grows by the call queued.
    return this;
  }

  /** Sends every queued call at once and resolves when all have an outcome; never rejects for a call's failure. */
  async run(): Promise<MultiCallResults<R>> {
    if (this.ran) throw new InvalidArgument('this MultiCall already ran: make a new one with client.multicall()');
    this.ran = true;
    // Started in one synchronous loop: no await between them, so they reach the driver together.
    // A call that throws at once (bad arguments) is that call's failure, not run()'s: the others
    // are sent and read as usual.
    const pending = this.queued.map((q) => {
      try {
        return q.via.call(this.ctx, q.method, q.args, q.options);
      } catch (err) {
        return Promise.reject(err);
      }
    });
    return new MultiCallResults<R>(
      this.queued.map((q) => q.method),
      await Promise.allSettled(pending),
    );
  }
}

/**
 * The outcomes of a {@link MultiCall}, in the order the calls were queued. Reading a result
 * ({@link get}, {@link all}, iteration, destructuring) throws that call's error if it failed.
 * `R` is the tuple of the calls' result types (all `unknown` without an endpoint type).
 */
export class MultiCallResults<R extends unknown[] = unknown[]> implements Iterable<MultiCallResultAt<R, number>> {
  constructor(
    private readonly methods: readonly string[],
    private readonly outcomes: readonly PromiseSettledResult<unknown>[],
  ) {}

  /** Number of calls. */
  get length(): number {
    return this.outcomes.length;
  }

  /**
   * The result of call `index`, typed as that call's result; throws the error of that call if it
   * failed. `get<T>(i)` states the type of an untyped MultiCall's result.
   */
  // NoInfer: else tsc takes T from the variable the result is assigned to, and any type passes.
  get<T = never, I extends number = number>(index: I): [NoInfer<T>] extends [never] ? MultiCallResultAt<R, I> : NoInfer<T> {
    const o = this.outcomes[index];
    if (!o) throw new InvalidArgument(`no call #${index} in this MultiCall (it had ${this.outcomes.length})`);
    if (o.status === 'rejected') throw o.reason;
    return o.value as [NoInfer<T>] extends [never] ? MultiCallResultAt<R, I> : NoInfer<T>;
  }

  /**
   * Every result in order, as a tuple typed call by call (`const [sum, user] = results.all()`);
   * throws the error of the first call that failed.
   */
  all(): R extends [] ? unknown[] : R {
    const values: unknown[] = [];
    for (let i = 0; i < this.outcomes.length; i++) values.push(this.get(i));
    return values as R extends [] ? unknown[] : R;
  }

  /** Whether call `index` succeeded. */
  ok(index: number): boolean {
    return this.outcomes[index]?.status === 'fulfilled';
  }

  /** Every outcome without throwing: `{ method, ok, value | error }` per call, typed call by call. */
  settled(): R extends [] ? MultiCallSettled<unknown>[] : { [I in keyof R]: MultiCallSettled<R[I]> } {
    return this.outcomes.map((o, i) =>
      o.status === 'fulfilled'
        ? { method: this.methods[i]!, ok: true as const, value: o.value }
        : { method: this.methods[i]!, ok: false as const, error: o.reason as Error },
    ) as R extends [] ? MultiCallSettled<unknown>[] : { [I in keyof R]: MultiCallSettled<R[I]> };
  }

  /** Results in order; throws at the first call that failed (xmlrpclib's MultiCallIterator). */
  *[Symbol.iterator](): Iterator<MultiCallResultAt<R, number>> {
    for (let i = 0; i < this.outcomes.length; i++) yield this.get(i) as MultiCallResultAt<R, number>;
  }
}
