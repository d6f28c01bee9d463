import { errorClassName, InvalidArgument, RemoteError } from '../core/errors.js';
import { uuidHex } from '../core/ids.js';
import { serializeFailure } from '../rpc/remote-errors.js';
import { TooManyJobs } from './errors.js';

/** Where a job is: `pending` (registered, not started), `running`, or one of the three ends. */
export type JobState = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled';

/** The states a job never leaves. */
export const FINAL_STATES: ReadonlySet<JobState> = new Set(['succeeded', 'failed', 'cancelled']);

/** One job held by a server. */
export interface JobRecord {
  readonly id: string;
  readonly method: string;
  state: JobState;
  /** 0..1 as last reported by the method, or null before its first report. */
  progress: number | null;
  message: string | null;
  readonly createdAt: number;
  startedAt: number | null;
  endedAt: number | null;
  cancelRequested: boolean;
  /** The method's result (succeeded) when it came without its JSON; see {@link resultJson}. */
  result?: unknown;
  /**
   * The method's result as JSON, as measured against `maxResultBytes`: held as text, since the
   * parsed value of 15 MB of JSON took about seven times that of heap, past the budget's meaning.
   */
  resultJson?: string;
  /** The job's error (failed) or why it was cancelled. */
  error?: Error;
  /**
   * Cancelling the job aborts this; the method sees it as `ctx.signal`. Dropped when the job
   * ends: the listeners a method put on its signal (a closure over its buffers, a child process)
   * were held for jobs.resultTtl with the record, uncounted by maxResultBytes.
   */
  controller: AbortController | undefined;
  /** A poller has read its outcome (job_result) since it ended. */
  collected: boolean;
  /** When a poller first read its final state with job_status (ms, Date.now()), if it has. */
  finalSeenAt?: number;
  expiry?: NodeJS.Timeout;
  /** Bytes its result counts against the store's `maxResultBytes` (its JSON length), once ended. */
  bytes?: number;
  /** The caller's context (for transition notifications). */
  ctx?: Record<string, unknown>;
  /** Bytes its request counts against the store's `maxPendingBytes` while it is pending. */
  requestBytes?: number;
}

/** A job as `job_status` and `jobs` answer it: plain data, snake_case like oslo's dicts. */
export interface JobStatusDict {
  /** The job's id on its server. */
  job_id: string;
  /** The method the job runs. */
  method: string;
  /** `pending`, `running`, `succeeded`, `failed` or `cancelled`. */
  state: JobState;
  /** 0..1, or null before the method first reported progress. */
  progress: number | null;
  /** The method's last progress message, or null. */
  message: string | null;
  /** When the server took the job (ISO 8601). */
  created_at: string;
  /** When its method began running, or null while it waits for a slot. */
  started_at: string | null;
  /** When it ended, or null while it runs. */
  ended_at: string | null;
  /** A cancel was asked for (the method may still be finishing). */
  cancel_requested: boolean;
  /** For a failed job: the error's class and message. */
  error?: { class: string; message: string };
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/**
 * Longest error message a job keeps: its status and result replies carry it, and a method that
 * failed with a 17 MB message left a job whose status no poller could read (MessageTooLarge).
 */
export const MAX_JOB_ERROR_MESSAGE = 8192;

/** Longest class or module name a failed job keeps (a Python dotted path is far shorter). */
const MAX_JOB_ERROR_NAME = 1024;

/** A non-string message as the failure's serializer sends it: its JSON, else its text. */
function textOf(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    try {
      return String(value);
    } catch {
      return '(unreadable)';
    }
  }
}

/** `text` cut to {@link MAX_JOB_ERROR_MESSAGE} characters, saying how much was cut. */
function cutText(text: string): string {
  if (text.length <= MAX_JOB_ERROR_MESSAGE) return text;
  // The note fits within the bound too.
  const kept = MAX_JOB_ERROR_MESSAGE - 48;
  return `${text.slice(0, kept)}… (${text.length - kept} more characters cut)`;
}

/** Sets a field of an error the method threw; a frozen one keeps it (its replies may then fail as MessageTooLarge). */
function setField(err: Error, key: string, value: unknown): void {
  try {
    const own = Object.getOwnPropertyDescriptor(err, key);
    Object.defineProperty(err, key, { value, writable: true, configurable: true, enumerable: own?.enumerable ?? false });
  } catch {
    // Frozen, or a Proxy that refuses.
  }
}

/** Whether `value` is JSON of more than {@link MAX_JOB_ERROR_MESSAGE} bytes, or no JSON at all. */
function oversized(value: unknown): boolean {
  try {
    return Buffer.byteLength(JSON.stringify(value) ?? '') > MAX_JOB_ERROR_MESSAGE;
  } catch {
    return true;
  }
}

/**
 * `err` bounded in every part a job's status and result replies carry: its message, and what oslo's
 * failure format sends beside it (a thrown non-Error's text in `args`, an error's `kwargs`, a
 * re-raised remote error's value, traceback and kwargs, the stack). Only the message was cut
 * before: a job that threw a 20 MB string or an error with 20 MB of kwargs held all of it outside
 * the jobs budget, and its result reply was refused (MessageTooLarge) to every poller.
 */
function boundError(err: Error): Error {
  const fields = err as unknown as Record<string, unknown>;
  try {
    const m: unknown = err.message;
    if (typeof m === 'string') {
      if (m.length > MAX_JOB_ERROR_MESSAGE) setField(err, 'message', cutText(m));
    } else if (m !== undefined) {
      // Sent as its JSON (or its text): bounded as a string message is.
      setField(err, 'message', cutText(textOf(m)));
    }
    // The failure's class: an error's name, or a re-raised remote error's class and module.
    const name: unknown = err.name;
    if (typeof name === 'string' && name.length > MAX_JOB_ERROR_NAME) setField(err, 'name', name.slice(0, MAX_JOB_ERROR_NAME));
    const stack = fields.stack;
    // A stack starts with the message: a 20 MB message made a 20 MB traceback (rpc.sendTraceback).
    if (typeof stack === 'string' && stack.length > 4 * MAX_JOB_ERROR_MESSAGE) setField(err, 'stack', cutText(stack));
    if (Array.isArray(fields.args) && oversized(fields.args)) setField(err, 'args', [cutText(String(fields.args[0]))]);
    if (fields.kwargs !== undefined && fields.kwargs !== null && oversized(fields.kwargs)) setField(err, 'kwargs', {});
    const origin = fields.remote as { kwargs?: unknown; class?: unknown; module?: unknown } | undefined;
    if (origin && typeof origin === 'object') {
      const long = (v: unknown) => typeof v === 'string' && v.length > MAX_JOB_ERROR_NAME;
      if ((origin.kwargs !== undefined && oversized(origin.kwargs)) || long(origin.class) || long(origin.module)) {
        setField(err, 'remote', {
          ...origin,
          ...(origin.kwargs !== undefined && oversized(origin.kwargs) ? { kwargs: {} } : {}),
          ...(long(origin.class) ? { class: (origin.class as string).slice(0, MAX_JOB_ERROR_NAME) } : {}),
          ...(long(origin.module) ? { module: (origin.module as string).slice(0, MAX_JOB_ERROR_NAME) } : {}),
        });
      }
    }
    if (err instanceof RemoteError) {
      if (err.value.length > MAX_JOB_ERROR_MESSAGE) setField(err, 'value', cutText(err.value));
      if (err.excType.length > MAX_JOB_ERROR_NAME) setField(err, 'excType', err.excType.slice(0, MAX_JOB_ERROR_NAME));
      if (err.module.length > MAX_JOB_ERROR_NAME) setField(err, 'module', err.module.slice(0, MAX_JOB_ERROR_NAME));
      if (oversized(err.traceback)) setField(err, 'traceback', [cutText(err.traceback.join(''))]);
    }
  } catch {
    // A field that cannot be read is one the failure's serializer cannot read either: it sends
    // an UnreadableError in its place.
  }
  return err;
}

/** The status dict of a record; `maxMessage` cuts a failed job's error message further (the `jobs` listing). */
export function statusOf(r: JobRecord, maxMessage = MAX_JOB_ERROR_MESSAGE): JobStatusDict {
  return {
    job_id: r.id,
    method: r.method,
    state: r.state,
    progress: r.progress,
    message: r.message,
    created_at: iso(r.createdAt)!,
    started_at: iso(r.startedAt),
    ended_at: iso(r.endedAt),
    cancel_requested: r.cancelRequested,
    ...(r.state === 'failed' && r.error
      ? {
          error: {
            class: errorClassName(r.error),
            message: r.error.message.length > maxMessage ? `${r.error.message.slice(0, maxMessage)}…` : r.error.message,
          },
        }
      : {}),
  };
}

/**
 * The jobs of one server: at most `max` held (running and finished), finished ones dropped
 * `resultTtl` ms after they ended. At the bound, the oldest finished job is dropped to make room
 * (its poller then gets JobNotFound); only when every held job is unfinished is a new one refused.
 * Finished results are bounded in bytes too (`maxResultBytes`, their JSON length, all together):
 * any caller may start any method as a job, and 1,000 results of 4 MiB nobody collected took a
 * server out of memory. Past the budget the oldest finished jobs go first, as at the count bound.
 * The requests of pending jobs are bounded in bytes as well (`maxPendingBytes`): the server has
 * taken such a request off the broker and holds its arguments until a slot is free, and 100
 * starts of 8 MiB behind busy slots grew a server by a gigabyte. Past it a new pending job is
 * refused (TooManyJobs) unless no other job is pending, so one request of any size still gets in.
 */
export class JobStore {
  private readonly jobs = new Map<string, JobRecord>();
  /** The finished jobs held, in the order they ended: the first is the one to drop first. */
  private readonly finished = new Set<JobRecord>();
  private unfinished = 0;
  private waiting = 0;
  private readonly idleWaiters: Array<() => void> = [];
  private readonly endWaiters = new Map<string, Array<() => void>>();

  /** Bytes of the finished results held now. */
  private resultBytes = 0;
  /** Bytes of the requests of the pending jobs held now. */
  private pendingRequestBytes = 0;

  constructor(
    readonly max: number,
    readonly resultTtl: number,
    readonly maxResultBytes: number = Number.POSITIVE_INFINITY,
    readonly maxPendingBytes: number = Number.POSITIVE_INFINITY,
  ) {
    if (!Number.isInteger(max) || max < 1) throw new InvalidArgument(`jobs.max must be a positive integer, got ${max}`);
  }

  /** Bytes of the finished results held now (their JSON length). */
  get heldResultBytes(): number {
    return this.resultBytes;
  }

  get size(): number {
    return this.jobs.size;
  }

  /** Jobs not ended yet (pending or running). */
  get active(): number {
    return this.unfinished;
  }

  /** Jobs registered whose method has not started yet. */
  get pending(): number {
    return this.waiting;
  }

  /** Bytes of the requests of the pending jobs held now (see {@link create}). */
  get heldPendingBytes(): number {
    return this.pendingRequestBytes;
  }

  /**
   * Registers a new job, cancelled through `controller`: `pending` until {@link start}, or
   * running since `startedAt` when given (a call that was already running). `requestBytes` is
   * what its request weighs while it is pending (its arguments and context as JSON; 0 for a job
   * that gets its slot at once). Throws TooManyJobs at the count bound, and for a pending job
   * past `maxPendingBytes` while another job is pending.
   */
  create(method: string, controller = new AbortController(), startedAt?: number, requestBytes = 0): JobRecord {
    const pending = startedAt === undefined;
    if (pending && requestBytes > 0 && this.waiting > 0 && this.pendingRequestBytes + requestBytes > this.maxPendingBytes) {
      throw new TooManyJobs(
        `server holds ${this.waiting} pending jobs whose requests weigh ${this.pendingRequestBytes} bytes; ${method} of ${requestBytes} more bytes would pass jobs.maxPendingBytes (${this.maxPendingBytes}): refused, try again later`,
        { bound: 'maxPendingBytes' },
      );
    }
    if (this.jobs.size >= this.max && !this.evictOldestFinished()) {
      throw new TooManyJobs(`server holds ${this.max} unfinished jobs (jobs.max): ${method} refused, try again later`, { bound: 'max' });
    }
    const now = Date.now();
    const r: JobRecord = {
      id: uuidHex(),
      method,
      state: startedAt === undefined ? 'pending' : 'running',
      progress: null,
      message: null,
      createdAt: Math.min(now, startedAt ?? now),
      startedAt: startedAt ?? null,
      endedAt: null,
      cancelRequested: false,
      controller,
      collected: false,
    };
    this.jobs.set(r.id, r);
    this.unfinished++;
    if (pending) {
      this.waiting++;
      r.requestBytes = requestBytes;
      this.pendingRequestBytes += requestBytes;
    }
    return r;
  }

  /** A pending job's method starts now. Returns false if it is not pending (ended or forgotten meanwhile). */
  start(r: JobRecord): boolean {
    if (r.state !== 'pending' || this.jobs.get(r.id) !== r) return false;
    r.state = 'running';
    r.startedAt = Date.now();
    this.unpend(r);
    return true;
  }

  /** `r` leaves the pending jobs (started, ended or forgotten): its request no longer counts. */
  private unpend(r: JobRecord): void {
    this.waiting--;
    this.pendingRequestBytes -= r.requestBytes ?? 0;
    r.requestBytes = 0;
  }

  get(id: string): JobRecord | undefined {
    return this.jobs.get(id);
  }

  list(): JobRecord[] {
    return [...this.jobs.values()];
  }

  /** Ends a job once; a later end (a late result after a forced cancel) is ignored. Returns whether it ended it. */
  end(
    r: JobRecord,
    outcome:
      | { state: 'succeeded'; result: unknown; bytes?: number | undefined; json?: string | undefined }
      | { state: 'failed' | 'cancelled'; error: Error },
  ): boolean {
    if (FINAL_STATES.has(r.state) || this.jobs.get(r.id) !== r) return false;
    if (r.state === 'pending') this.unpend(r);
    r.state = outcome.state;
    r.endedAt = Date.now();
    if (outcome.state === 'succeeded') {
      if (outcome.json !== undefined) r.resultJson = outcome.json;
      else r.result = outcome.result;
    } else r.error = boundError(outcome.error);
    r.controller = undefined;
    if (outcome.state === 'succeeded') r.progress = 1;
    this.unfinished--;
    this.finished.add(r);
    this.hold(r, outcome.state === 'succeeded' ? outcome.bytes : undefined);
    r.expiry = setTimeout(() => this.remove(r), this.resultTtl);
    // Expiry alone must not keep a process alive.
    r.expiry.unref();
    for (const w of this.endWaiters.get(r.id) ?? []) w();
    this.endWaiters.delete(r.id);
    if (this.unfinished === 0) for (const w of this.idleWaiters.splice(0)) w();
    return true;
  }

  /**
   * Counts `r`'s outcome against the budget, dropping the oldest other finished jobs past it: its
   * result (`measured` when the caller has its JSON length already), or the failure that
   * `job_result` answers (class, message, arguments, kwargs and traceback, each bounded).
   */
  private hold(r: JobRecord, measured: number | undefined): void {
    r.bytes =
      measured ??
      // Without the traceback, which only a server with rpc.sendTraceback sends (bounded either way).
      (r.state === 'succeeded' ? jsonBytes(r.result) : jsonBytes(serializeFailure(r.error)));
    this.resultBytes += r.bytes;
    while (this.resultBytes > this.maxResultBytes && this.evictOldestFinished(r)) {}
  }

  /** Forgets a job (the caller got its result directly, or it expired). */
  remove(r: JobRecord): void {
    if (this.jobs.get(r.id) !== r) return;
    this.jobs.delete(r.id);
    this.finished.delete(r);
    if (r.bytes !== undefined) this.resultBytes -= r.bytes;
    if (r.expiry) clearTimeout(r.expiry);
    if (r.state === 'pending') this.unpend(r);
    if (!FINAL_STATES.has(r.state)) {
      this.unfinished--;
      if (this.unfinished === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /** Resolves once no job is unfinished. */
  idle(): Promise<void> {
    if (this.unfinished === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Resolves once job `r` has ended. */
  ended(r: JobRecord): Promise<void> {
    if (FINAL_STATES.has(r.state)) return Promise.resolve();
    return new Promise((resolve) => {
      const list = this.endWaiters.get(r.id) ?? [];
      list.push(resolve);
      this.endWaiters.set(r.id, list);
    });
  }

  /** Drops every job and timer. */
  clear(): void {
    for (const r of this.jobs.values()) if (r.expiry) clearTimeout(r.expiry);
    this.jobs.clear();
    this.finished.clear();
    this.resultBytes = 0;
    this.pendingRequestBytes = 0;
    this.unfinished = 0;
    this.waiting = 0;
    for (const w of this.idleWaiters.splice(0)) w();
    for (const ws of this.endWaiters.values()) for (const w of ws) w();
    this.endWaiters.clear();
  }

  /** Drops the finished job that ended first (but `keep`); false when there is none. */
  private evictOldestFinished(keep?: JobRecord): boolean {
    // In the order of their end, so each drop is O(1): a scan of every held job per drop took
    // half a second of event loop when one large result pushed out 10 000 small ones.
    for (const r of this.finished) {
      if (r === keep) continue;
      this.remove(r);
      return true;
    }
    return false;
  }
}

/** The JSON length of a result, as it would travel (0 for what JSON cannot say; a cycle counts as 0 too: it cannot be sent). */
export function jsonBytes(value: unknown): number {
  try {
    return Buffer.byteLength(JSON.stringify(value) ?? '');
  } catch {
    return 0;
  }
}
