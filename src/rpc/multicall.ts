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
 */
export class MultiCall {
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

  /** Queues a call of `method`; chainable. */
  call(method: string, args?: Record<string, unknown>, options: MultiCallOptions = {}): this {
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
    this.queued.push({ via: via ?? this.client, method, args, options: callOptions });
    return this;
  }

  /** Sends every queued call at once and resolves when all have an outcome; never rejects for a call's failure. */
  async run(): Promise<MultiCallResults> {
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
    return new MultiCallResults(
      this.queued.map((q) => q.method),
      await Promise.allSettled(pending),
    );
  }
}

/**
 * The outcomes of a {@link MultiCall}, in the order the calls were queued. Reading a result
 * ({@link get}, iteration, destructuring) throws that call's error if it failed.
 */
export class MultiCallResults implements Iterable<unknown> {
  constructor(
    private readonly methods: readonly string[],
    private readonly outcomes: readonly PromiseSettledResult<unknown>[],
  ) {}

  /** Number of calls. */
  get length(): number {
    return this.outcomes.length;
  }

  /** The result of call `index`; throws the error of that call if it failed. */
  get<R = unknown>(index: number): R {
    const o = this.outcomes[index];
    if (!o) throw new InvalidArgument(`no call #${index} in this MultiCall (it had ${this.outcomes.length})`);
    if (o.status === 'rejected') throw o.reason;
    return o.value as R;
  }

  /** Whether call `index` succeeded. */
  ok(index: number): boolean {
    return this.outcomes[index]?.status === 'fulfilled';
  }

  /** Every outcome without throwing: `{ method, ok, value | error }` per call. */
  settled(): Array<{ method: string; ok: true; value: unknown } | { method: string; ok: false; error: Error }> {
    return this.outcomes.map((o, i) =>
      o.status === 'fulfilled'
        ? { method: this.methods[i]!, ok: true as const, value: o.value }
        : { method: this.methods[i]!, ok: false as const, error: o.reason as Error },
    );
  }

  /** Results in order; throws at the first call that failed (xmlrpclib's MultiCallIterator). */
  *[Symbol.iterator](): Iterator<unknown> {
    for (let i = 0; i < this.outcomes.length; i++) yield this.get(i);
  }
}
