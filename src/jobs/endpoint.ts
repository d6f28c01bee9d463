import { InvalidArgument } from '../core/errors.js';
import type { Context } from '../core/serializer.js';
import { Target } from '../core/target.js';
import { InvalidJobToken, JobCancelled, JobFinished, JobLost, JobNotFound, JobPending } from './errors.js';
import { FINAL_STATES, type JobRecord, type JobState, type JobStatusDict, type JobStore, statusOf } from './store.js';
import { HERMOD_NAMESPACE, JOBS_VERSION, parseJobToken } from './token.js';

/** Who the jobs belong to: a poll names this server's run, or it is told the job is lost. */
export interface JobsIdentity {
  readonly server: string;
  readonly topic: string;
  readonly instance: string;
}

/** Arguments of every job method: the token dict, or its `job_id` (and optionally `instance` and `method`, checked when given). */
export interface JobRef {
  token?: unknown;
  job_id?: unknown;
  instance?: unknown;
  method?: unknown;
  /** On job_status: the poller reads the result next if the job has ended (see {@link JobsEndpoint.job_status}). */
  result_follows?: unknown;
}

const HEX32 = /^[0-9a-f]{32}$/;
/** Longest error message of a failed job in the `jobs` listing (job_status has the whole, up to MAX_JOB_ERROR_MESSAGE). */
export const LISTED_ERROR_MESSAGE = 512;
const STATES = new Set<JobState>(['pending', 'running', 'succeeded', 'failed', 'cancelled']);

/**
 * The jobs of a server, served in the reserved namespace `hermod` (version 1.0) and addressed to
 * the server itself: `job_status`, `job_result`, `job_cancel` and `jobs`. An unknown id is
 * JobNotFound (a lost one, from before a restart, JobLost), never a pending job.
 */
export class JobsEndpoint {
  readonly target = new Target({ namespace: HERMOD_NAMESPACE, version: JOBS_VERSION });

  // ECMAScript private members: the dispatcher could otherwise reach a function-valued field or helper by name.
  readonly #store: JobStore;
  readonly #identity: JobsIdentity;
  readonly #cancel: (r: JobRecord, why: string) => void;
  readonly #listBytes: number;

  /**
   * `cancel` cancels a running job (the runner owns how); `listBytes` bounds the `jobs` listing's
   * JSON (a quarter of maxMessageSize: a reply on RabbitMQ quotes it twice over).
   */
  constructor(store: JobStore, identity: JobsIdentity, cancel: (r: JobRecord, why: string) => void, listBytes = Number.POSITIVE_INFINITY) {
    this.#store = store;
    this.#identity = identity;
    this.#cancel = cancel;
    this.#listBytes = listBytes;
  }

  /**
   * The job's state, progress and timestamps. `result_follows: true` says the poller reads
   * job_result next if the job has ended, so a stopping server waits for that read.
   */
  async job_status(_ctx: Context, args: JobRef): Promise<JobStatusDict> {
    const r = this.#find(args);
    // A stopping server lingers for outcomes nobody has read: a status-only poller has read it
    // (see JobRunner.uncollected). A poller that says its job_result follows has not yet: the
    // stop waits for that (within jobs.stopLinger) rather than for a grace it may overrun.
    if (FINAL_STATES.has(r.state) && args?.result_follows !== true) r.finalSeenAt ??= Date.now();
    return statusOf(r);
  }

  /** The job's result; its own error if it failed; JobCancelled; JobPending while it runs. */
  async job_result(_ctx: Context, args: JobRef): Promise<unknown> {
    const r = this.#find(args);
    if (!FINAL_STATES.has(r.state)) {
      throw new JobPending(`job ${r.id} (${r.method}) is ${r.state}${r.progress === null ? '' : ` (${Math.round(r.progress * 100)} %)`}`);
    }
    r.collected = true;
    if (r.state === 'succeeded') return r.resultJson !== undefined ? JSON.parse(r.resultJson) : r.result;
    if (r.state === 'cancelled') throw new JobCancelled(`job ${r.id} (${r.method}) was cancelled: ${r.error?.message ?? ''}`);
    throw r.error;
  }

  /** Asks a running job to stop (cooperatively: its `ctx.signal` aborts); JobFinished once it has ended. */
  async job_cancel(_ctx: Context, args: JobRef): Promise<JobStatusDict> {
    const r = this.#find(args);
    if (FINAL_STATES.has(r.state)) throw new JobFinished(`job ${r.id} (${r.method}) already ended: ${r.state}`);
    this.#cancel(r, 'cancelled by job_cancel');
    return statusOf(r);
  }

  /**
   * Every job held, or those in one state; newest last. The newest that fit in the listing's byte
   * bound, each failed one's message cut to {@link LISTED_ERROR_MESSAGE} characters: 2,000 failed
   * jobs with 10 kB messages made a 20 MB listing that no reply could carry (MessageTooLarge).
   */
  async jobs(_ctx: Context, args: { state?: unknown }): Promise<JobStatusDict[]> {
    const state = args?.state;
    if (state !== undefined && state !== null && !STATES.has(state as JobState)) {
      // A bad filter is a bad argument, not a bad token.
      throw new InvalidArgument(`state must be one of ${[...STATES].join(', ')}, got ${JSON.stringify(state)?.slice(0, 80)}`);
    }
    const held = this.#store.list().filter((r) => !state || r.state === state);
    const listed: JobStatusDict[] = [];
    let bytes = 2;
    for (let i = held.length - 1; i >= 0; i--) {
      const s = statusOf(held[i]!, LISTED_ERROR_MESSAGE);
      bytes += Buffer.byteLength(JSON.stringify(s)) + 1;
      if (bytes > this.#listBytes) break;
      listed.push(s);
    }
    return listed.reverse();
  }

  #find(args: JobRef): JobRecord {
    let id: unknown;
    let instance: unknown;
    let method: unknown;
    if (args?.token !== undefined) {
      const t = parseJobToken(args.token);
      if (t.server !== this.#identity.server || t.topic !== this.#identity.topic) {
        throw new InvalidJobToken(
          `token of job ${t.job_id} belongs to server ${t.server} on topic ${t.topic}; this is ${this.#identity.server} on ${this.#identity.topic}`,
        );
      }
      id = t.job_id;
      instance = t.instance;
      method = t.method;
    } else {
      id = args?.job_id;
      instance = args?.instance;
      method = args?.method;
    }
    if (typeof id !== 'string' || !HEX32.test(id))
      throw new InvalidJobToken(`job_id must be 32 hex digits, got ${JSON.stringify(id)?.slice(0, 80)}`);
    // A malformed instance is a bad reference, not a lost job: JobLost is final for its poller.
    if (instance !== undefined && instance !== null && (typeof instance !== 'string' || !HEX32.test(instance)))
      throw new InvalidJobToken(`instance must be 32 hex digits, got ${JSON.stringify(instance)?.slice(0, 80)}`);
    if (method !== undefined && method !== null && typeof method !== 'string')
      throw new InvalidJobToken(`method must be a string, got ${JSON.stringify(method)?.slice(0, 80)}`);
    if (instance !== undefined && instance !== null && instance !== this.#identity.instance) {
      throw new JobLost(
        `job ${id} was started by an earlier run of server ${this.#identity.server}, which stopped or restarted since: the job is lost`,
        { answeredBy: this.#identity.instance },
      );
    }
    const r = this.#store.get(id);
    if (!r)
      throw new JobNotFound(`server ${this.#identity.server} holds no job ${id} (never started here, or expired after jobs.resultTtl)`);
    // An altered token (or a result that merely looks like one) must not read or cancel
    // another method's job: the id alone is not the whole reference.
    if (typeof method === 'string' && method !== r.method)
      throw new InvalidJobToken(
        `the token says method ${method.slice(0, 80)}, but job ${id} on server ${this.#identity.server} runs another`,
      );
    return r;
  }
}
