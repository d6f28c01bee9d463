import { MessageTooLarge, SerializationError } from '../core/errors.js';
import { uuidHex } from '../core/ids.js';
import type { SignalSource } from '../core/lazy-abort.js';
import type { Context } from '../core/serializer.js';
import { ABORT_GRACE_MS, deadlineTimer, type WaitResult } from '../core/work-pool.js';
import type { DispatchRequest } from '../rpc/dispatcher.js';
import { errorOf } from '../rpc/remote-errors.js';
import { START_HINT, withHooks } from './context.js';
import { JobsEndpoint } from './endpoint.js';
import { JobCancelled, TooManyJobs } from './errors.js';
import { JobSlots } from './slots.js';
import { FINAL_STATES, type JobRecord, JobStore, jsonBytes, statusOf } from './store.js';
import { HERMOD_NAMESPACE, type JobToken } from './token.js';

/**
 * Receives a notification per job transition, nova-style: `<method>.start` (info) when a job's
 * method runs (a call that became a job, or a pending job that got its slot), `<method>.end`
 * (info) when it succeeds, `<method>.error` (error) when it fails or is cancelled; the payload is the job's status dict plus `server`. A hermod `Notifier` is one.
 */
export interface JobNotifier {
  /** Sends `<method>.start` and `<method>.end`. */
  info(ctx: Context, eventType: string, payload: unknown): Promise<void>;
  /** Sends `<method>.error`. */
  error(ctx: Context, eventType: string, payload: unknown): Promise<void>;
}

/**
 * Bytes a reply carries besides its result, at most: ids, the 2.0 envelope's keys, AMQP 1.0's
 * sections and addresses (the driver's own room is 512 plus the addresses).
 */
const REPLY_ROOM = 2048;

/**
 * How long after a poller read a job's final state by job_status, without saying its job_result
 * follows, that job_result may still come (see uncollected): a poller older than `result_follows`
 * reads the result at once too. A status-only poller holds the stop this much longer.
 */
// 1.5 s: a gateway long poll that read a cancelled job's status at load sent its job_result more
// than 500 ms later, when the stopping server had counted the job read and gone (503 after
// pollTimeout instead of `cancelled`). Pollers that say `result_follows` no longer depend on it.
const STATUS_READ_GRACE_MS = 1500;

/**
 * Past a poller's longest pause between polls (`jobs.pollMax`), what a stopping server allows for
 * the poll's round trip and the job_result that follows it (see {@link lingerPastDeadline}).
 */
export const POLL_MARGIN_MS = 1000;

/**
 * How long past its stop deadline a server keeps answering polls of the jobs it ended there
 * (`cancelled`), while some are unread: a poller that polled just before the deadline asks again
 * up to `pollMax` later, so less (it was 1 s) left a poller with the default backoff timing out
 * on a gone server (ServerUnavailable after `pollTimeout`) instead of reading `cancelled`. At
 * least the 1 s it was; at most `jobs.stopLinger`. 3 s with the defaults.
 */
export function lingerPastDeadline(jobs: { stopLinger: number; pollMax: number }): number {
  return Math.min(jobs.stopLinger, Math.max(ABORT_GRACE_MS, jobs.pollMax + POLL_MARGIN_MS));
}

/** What a stopping server does with running jobs. */
export type JobStopStrategy = 'wait' | 'abort';

/** Options of a {@link JobRunner}; durations in ms. */
export interface JobRunnerOptions {
  server: string;
  topic: string;
  exchange: string;
  max: number;
  /** Job methods run at once (the server's concurrency); jobs beyond it wait `pending`. */
  concurrency: number;
  resultTtl: number;
  /** Bytes of finished results held at most (see JobStore). */
  maxResultBytes: number;
  /** Bytes of pending jobs' requests held at most (see JobStore). */
  maxPendingBytes: number;
  /** The transport's `maxMessageSize`: a result whose reply would pass it fails its job (MessageTooLarge). */
  maxMessageSize: number;
  /**
   * The transport's replies carry the result's JSON inside a JSON string (RabbitMQ's oslo 2.0
   * envelope), where each quote and backslash takes two bytes: the result is measured so.
   */
  quotedReplies: boolean;
  /** Bound for methods marked long. */
  longDeferAfter: number;
  /** Bound for every method (the server's `deferAfter` option); undefined: only long methods become jobs. */
  deferAfter: number | undefined;
  /** Method names marked long on top of each endpoint class's `static long`. */
  long: readonly string[];
  stopStrategy: JobStopStrategy;
  stopLinger: number;
  /** The longest pause between a poller's polls (config `jobs.pollMax`): the stop lingers for it (see {@link lingerPastDeadline}). */
  pollMax: number;
  /** Sent a notification per transition; a failed notification never affects the job. */
  notifier?: JobNotifier | undefined;
}

const noop = () => {};

/**
 * The server side of long operations: runs each call, and turns it into a job when it is marked
 * long or outlives `deferAfter`: the caller then gets a {@link JobToken} and the method runs on,
 * with its state, progress and outcome in a {@link JobStore} served by {@link JobsEndpoint}.
 */
export class JobRunner {
  readonly store: JobStore;
  readonly endpoint: JobsEndpoint;
  private readonly slots: JobSlots;
  /** This run of the server: tokens of an earlier run are answered JobLost. */
  readonly instance = uuidHex();
  private stopping: JobStopStrategy | undefined;
  private readonly endedDuringStop = new Set<JobRecord>();
  /** The tokens handed to callers, until their reply objects are collected. */
  private readonly tokens = new WeakSet<object>();

  constructor(
    private readonly o: JobRunnerOptions,
    /** Finds the endpoint of a request (the server's dispatcher), to read its class's `static long`. */
    private readonly resolve: (req: DispatchRequest) => { endpoint: object; long: boolean },
  ) {
    this.store = new JobStore(o.max, o.resultTtl, o.maxResultBytes, o.maxPendingBytes);
    this.slots = new JobSlots(o.concurrency);
    this.endpoint = new JobsEndpoint(
      this.store,
      { server: o.server, topic: o.topic, instance: this.instance },
      (r, why) => this.cancel(r, why),
      Math.floor(o.maxMessageSize / 4),
    );
  }

  /** Jobs not ended yet (pending or running). */
  get active(): number {
    return this.store.active;
  }

  /** Jobs waiting for a slot: registered, their method not started. */
  get pending(): number {
    return this.store.pending;
  }

  /** Jobs that ended during a stop and whose outcome no poller has read yet (the stop lingers for them). */
  get uncollected(): number {
    let n = 0;
    const now = Date.now();
    for (const r of this.endedDuringStop) {
      // A final state read by job_status counts once the job_result that may follow it had its
      // moment: a poller that reads the status alone (`rpc-client job <token>`, a Python script)
      // held the stop for all of jobs.stopLinger. One that said its job_result follows
      // (`result_follows`, Job.result()) left finalSeenAt unset: only that job_result counts.
      const read = r.collected || (r.finalSeenAt !== undefined && now - r.finalSeenAt >= STATUS_READ_GRACE_MS);
      if (!read && this.store.get(r.id) === r) n++;
    }
    return n;
  }

  /**
   * Runs one call. Resolves with its result, or with a job token when it became a job; rejects
   * with its error, or TooManyJobs for a long method beyond `jobs.max` or, when it would wait
   * for a slot, `jobs.maxPendingBytes` (it then never starts).
   * A long method is a job from the start: `pending` until one of the `concurrency` job slots is
   * free, then `running`; its caller gets the token at the bound either way. `request`'s signal
   * aborts when the server abandons the request (stop deadline) before it is a job.
   * `expiresAt` (on `performance.now()`'s clock) is when the caller stops waiting, when the
   * request said (its ttl): a call still running then at its bound is cancelled, not made a job.
   */
  run(
    wireCtx: Context,
    req: DispatchRequest,
    request: SignalSource,
    dispatch: (ctx: Context) => Promise<unknown>,
    expiresAt?: number,
  ): Promise<unknown> {
    if (req.namespace === HERMOD_NAMESPACE) return dispatch(wireCtx);
    const startNow = wireCtx[START_HINT] === 'start';
    let long: boolean;
    try {
      // isLong() first: it throws NoSuchMethod / UnsupportedVersion, so start() of a method that
      // is not there is refused rather than made a job that fails.
      long = this.isLong(req) || startNow;
    } catch (err) {
      return Promise.reject(err);
    }
    const bound = startNow ? 0 : long ? (this.o.deferAfter ?? this.o.longDeferAfter) : this.o.deferAfter;
    // A plain call (most of them) is dispatched without another async frame around it.
    if (bound === undefined) return dispatch(withHooks(wireCtx, request, noop));
    return this.runBounded(wireCtx, req, request, dispatch, long, bound, expiresAt);
  }

  /** {@link run} for a call that becomes a job when it is long or outlives `bound` ms. */
  private async runBounded(
    wireCtx: Context,
    req: DispatchRequest,
    request: SignalSource,
    dispatch: (ctx: Context) => Promise<unknown>,
    long: boolean,
    bound: number,
    expiresAt: number | undefined,
  ): Promise<unknown> {
    const started = Date.now();
    // A job that will wait for a slot keeps its request until then: it is weighed (its arguments
    // and context as JSON) against jobs.maxPendingBytes. One that starts at once (in this tick,
    // begin() below) holds no more than a plain call and costs no measuring.
    const weight = long && !this.slots.free ? jsonBytes(req.args) + jsonBytes(wireCtx) : 0;
    let rec: JobRecord | undefined = long ? this.store.create(req.method, undefined, undefined, weight) : undefined;
    // Whether this call holds a job slot (given back when the method ends).
    let slot = false;
    // Once its caller got a token, the slot is given back after the job's end is recorded, so
    // that the next job starts after it (by the timestamps too).
    let published = false;
    const controller = rec?.controller ?? new AbortController();
    const requestSignal = request.signal;
    const onRequestAbort = () => controller.abort(requestSignal.reason);
    requestSignal.addEventListener('abort', onRequestAbort, { once: true });
    let early: { fraction: number; message: string | null } | undefined;
    const progress = (fraction: number, message?: string) => {
      if (typeof fraction !== 'number' || !Number.isFinite(fraction)) return;
      const f = Math.min(1, Math.max(0, fraction));
      const m = typeof message === 'string' ? message.slice(0, 1000) : null;
      if (!rec) early = { fraction: f, message: m };
      else if (!FINAL_STATES.has(rec.state)) {
        rec.progress = f;
        rec.message = m;
      }
    };
    const ctx = withHooks(wireCtx, controller, progress);
    let outcome: { ok: true; value: unknown } | { ok: false; error: unknown } | undefined;
    const begin = async () => {
      if (rec) {
        // Synchronous when a slot is free: the method starts in this tick, as a plain call does.
        const waiting = this.slots.acquire(controller.signal);
        if (waiting) await waiting;
        slot = true;
        // Granted and cancelled in the same tick: the method must not start.
        if (controller.signal.aborted) throw controller.signal.reason;
        if (this.store.start(rec) && rec.ctx) this.notify(rec);
      }
      return dispatch(ctx);
    };
    const ended = () => {
      if (slot) this.slots.release();
      slot = false;
    };
    const work = begin().then(
      (value) => {
        outcome = { ok: true, value };
        if (!published) ended();
      },
      (error) => {
        outcome = { ok: false, error };
        if (!published) ended();
      },
    );
    let timer: NodeJS.Timeout | undefined;
    // A zero bound is a token at once: no timer (it would cost a millisecond per call).
    const expired = bound === 0 ? Promise.resolve() : new Promise<void>((resolve) => (timer = setTimeout(resolve, bound)));
    await Promise.race([work, expired]);
    clearTimeout(timer);

    // The caller's timeout ran out before the call reached its bound (a gateway request of 800 ms
    // to a method deferred at 1 s): the reply with its token goes to nobody, so nobody could
    // poll or cancel the job, which ran on for nobody and held a jobs.max place. It is cancelled
    // instead (cooperatively, through ctx.signal, as job_cancel would). Decided here, from the
    // request's own ttl, because the caller cannot: its reply waiter drops the late token. Only
    // a caller that gave up is concerned (oslo callers send their timeout as the ttl too); an
    // oslo method that ignores the signal still runs to its end, as it would under oslo.
    const callerGone = !outcome && expiresAt !== undefined && performance.now() >= expiresAt;
    if (callerGone) {
      const why = 'its caller stopped waiting (its timeout) before the call became a job: nobody holds its token';
      if (rec) this.cancel(rec, why);
      else controller.abort(new JobCancelled(why));
    }

    // Once a stop has begun no call becomes a job: the stop would cancel it at once (its caller
    // holding a token for a job already gone), or, past an abort, never cancel it at all. It
    // stays a plain call that the stop's deadline bounds, as past `jobs.max`.
    if (!outcome && !rec && !this.stopping && !callerGone) {
      try {
        rec = this.store.create(req.method, controller, started);
        this.slots.take();
        slot = true;
      } catch (err) {
        // Past deferAfter with the store full: the call stays a plain call, its caller waits on.
        if (!(err instanceof TooManyJobs)) throw err;
      }
    }
    if (outcome || !rec) {
      // A call that stays plain still sees the stop deadline on its ctx.signal.
      try {
        await work;
      } finally {
        requestSignal.removeEventListener('abort', onRequestAbort);
      }
      if (rec) this.store.remove(rec);
      const o = outcome!;
      if (o.ok) return o.value;
      throw o.error;
    }
    requestSignal.removeEventListener('abort', onRequestAbort);
    const job = rec;
    if (early) {
      job.progress = early.fraction;
      job.message = early.message;
    }
    job.ctx = { ...wireCtx };
    delete job.ctx[START_HINT];
    // A pending job is announced when it gets its slot (begin above).
    if (job.state === 'running') this.notify(job);
    published = true;
    void work.then(() => {
      try {
        this.finish(job, outcome!);
      } finally {
        ended();
      }
    });
    return this.tokenOf(job);
  }

  /** Asks a running job to stop: its `ctx.signal` aborts; the method decides when. */
  cancel(r: JobRecord, why: string): void {
    if (FINAL_STATES.has(r.state)) return;
    r.cancelRequested = true;
    r.controller?.abort(new JobCancelled(why));
  }

  /**
   * Stop, phase one: no new jobs come (the server takes only polls now); with `abort`, every
   * running job is cancelled.
   */
  beginStop(strategy: JobStopStrategy = this.o.stopStrategy): void {
    this.stopping = strategy;
    if (strategy === 'abort') for (const r of this.store.list()) this.cancel(r, `server ${this.o.server} is stopping (abort strategy)`);
  }

  /** Whether a stop has begun. */
  get isStopping(): boolean {
    return this.stopping !== undefined;
  }

  /**
   * Stop, phase two: waits for running jobs until the deadline and then cancels what is left
   * (their late results are dropped); then keeps answering polls until every job that ended
   * during the stop was read by a poller, at most `jobs.stopLinger` and never past the deadline
   * plus {@link lingerPastDeadline}. `completed` counts jobs that ended on their own meanwhile, `aborted` the rest.
   */
  async settle(deadlineMs: number): Promise<WaitResult> {
    if (!this.stopping) this.beginStop();
    const end = Date.now() + deadlineMs;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.store.idle(), new Promise<void>((resolve) => (timer = deadlineTimer(deadlineMs, resolve)))]);
    clearTimeout(timer);
    const completed = this.endedDuringStop.size;
    const aborted = this.forceEnd(`server ${this.o.server} stopped before the job finished`);
    const lingerEnd = Math.min(Date.now() + this.o.stopLinger, Math.max(end, Date.now()) + lingerPastDeadline(this.o));
    while (Date.now() < lingerEnd && this.uncollected > 0) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return { completed, aborted };
  }

  /** Cancels every running job now and forgets all jobs: the server is gone. */
  close(): number {
    const aborted = this.forceEnd(`server ${this.o.server} stopped before the job finished`);
    this.store.clear();
    this.endedDuringStop.clear();
    return aborted;
  }

  private forceEnd(why: string): number {
    let n = 0;
    for (const r of this.store.list()) {
      if (FINAL_STATES.has(r.state)) continue;
      this.cancel(r, why);
      if (this.store.end(r, { state: 'cancelled', error: new JobCancelled(why) })) {
        n++;
        this.notify(r);
        delete r.ctx;
      }
      if (this.stopping) this.endedDuringStop.add(r);
    }
    return n;
  }

  private finish(r: JobRecord, o: { ok: true; value: unknown } | { ok: false; error: unknown }): void {
    const error = o.ok ? undefined : errorOf(o.error);
    const size = o.ok ? this.measure(r, o.value) : undefined;
    const ended = size?.unreadable
      ? this.store.end(r, { state: 'failed', error: size.unreadable })
      : o.ok
        ? this.store.end(r, { state: 'succeeded', result: o.value, bytes: size?.bytes, json: size?.json })
        : this.store.end(r, { state: r.cancelRequested ? 'cancelled' : 'failed', error: error! });
    if (ended && this.stopping) this.endedDuringStop.add(r);
    if (ended) {
      this.notify(r);
      // The caller's context served the notifications; a finished job holds only its status and
      // its counted result (a context of any size, up to maxMessageSize, was kept for resultTtl).
      delete r.ctx;
    }
  }

  /**
   * The JSON length of a job's result (what it counts against maxResultBytes; 0 when it cannot
   * be encoded), and the MessageTooLarge that every `job_result` reply of it would meet, if it
   * would. Such a job used to end `succeeded` with a result no poller could ever read, held for
   * jobs.resultTtl against maxResultBytes; it fails now, as a plain call with that result does.
   */
  private measure(r: JobRecord, value: unknown): { bytes: number; json?: string; unreadable?: Error } {
    const max = this.o.maxMessageSize;
    let json: string | undefined;
    try {
      json = JSON.stringify(value);
    } catch (err) {
      // Not encodable at all (a cycle, a BigInt): it ended `succeeded`, counted as 0 bytes against
      // maxResultBytes, held whole, and every job_result failed with SerializationError.
      const e = new SerializationError(
        `the result of ${r.method} cannot be encoded as JSON (${String((err as Error).message).split('\n')[0]}): no poller could read it, so it was dropped and the job failed`,
      );
      return { bytes: 0, unreadable: e };
    }
    if (json === undefined) return { bytes: 0 };
    const bytes = Buffer.byteLength(json);
    // Quoted, a unit of the JSON takes at most 3 bytes as well (a quote or backslash 2, one
    // beyond ASCII 3 as before): most results need no second pass.
    if (json.length * 3 + REPLY_ROOM <= max) return { bytes, json };
    const size = (this.o.quotedReplies ? Buffer.byteLength(JSON.stringify(json)) : bytes) + REPLY_ROOM;
    if (size <= max) return { bytes, json };
    const tooLarge = new MessageTooLarge(size, max);
    tooLarge.message += ` (the result of ${r.method} as a reply: no poller could read it, so it was dropped and the job failed)`;
    return { bytes, unreadable: tooLarge };
  }

  private notify(r: JobRecord): void {
    const n = this.o.notifier;
    if (!n) return;
    const payload = { ...statusOf(r), server: this.o.server };
    const ctx = r.ctx ?? {};
    // A notifier of the application's own may throw, or return no promise: either once crashed
    // the process (an unhandled rejection at the job's end) or failed the call that started it.
    try {
      const sent =
        r.state === 'running'
          ? n.info(ctx, `${r.method}.start`, payload)
          : r.state === 'succeeded'
            ? n.info(ctx, `${r.method}.end`, payload)
            : n.error(ctx, `${r.method}.error`, payload);
      Promise.resolve(sent).catch(() => {});
    } catch {
      /* a failed notification never affects the job */
    }
  }

  private isLong(req: DispatchRequest): boolean {
    // resolve() throws NoSuchMethod / UnsupportedVersion exactly as the dispatch would.
    return this.resolve(req).long || this.o.long.includes(req.method);
  }

  /**
   * Whether `value` is a token this runner answered a call with: the server marks that reply
   * (`Reply.job`), so that only such tokens are followed, never a result shaped like one.
   */
  issued(value: unknown): boolean {
    return value !== null && typeof value === 'object' && this.tokens.has(value);
  }

  private tokenOf(r: JobRecord): JobToken {
    const token: JobToken = {
      hermod_job: 1,
      job_id: r.id,
      server: this.o.server,
      topic: this.o.topic,
      exchange: this.o.exchange,
      method: r.method,
      instance: this.instance,
    };
    this.tokens.add(token);
    return token;
  }
}
