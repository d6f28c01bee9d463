import { HermodError, MessagingTimeout } from '../core/errors.js';
import { peerText } from '../core/plain.js';
import { registerHermodError } from '../rpc/remote-errors.js';
import type { JobToken } from './job-token.js';

// Same branding as core/errors.ts: `code` comes from the class's CODE.
function define(cls: abstract new (...args: never[]) => HermodError, code: string): void {
  Object.defineProperty(cls, 'CODE', { value: code });
}

/** The server holds no job of that id: never started there, or expired after `jobs.resultTtl`. */
export class JobNotFound extends HermodError {}
define(JobNotFound, 'HERMOD_ERR_JOB_NOT_FOUND');

/** The token names a job of an earlier run of the server: it restarted since, and the job is gone. */
export class JobLost extends JobNotFound {
  /**
   * The run (instance) of the server that answered, when it said: the processes sharing one
   * server name each answer for their own jobs only, so a poller asks again until the run the
   * token names has answered, or every run it met has said the job is not theirs.
   */
  readonly answeredBy: string | undefined;
  /** Sent as the failure's kwargs, so the poller can tell which run answered. */
  readonly kwargs: { instance?: string };
  constructor(message: string, options?: { cause?: unknown; answeredBy?: string }) {
    super(message, options);
    this.answeredBy = options?.answeredBy;
    this.kwargs = this.answeredBy === undefined ? {} : { instance: this.answeredBy };
  }
}
define(JobLost, 'HERMOD_ERR_JOB_LOST');

/** A job token is not a job token (wrong shape, wrong types, not JSON). */
export class InvalidJobToken extends HermodError {
  /**
   * Set by `client.start()` when the answer was this call's own token but its reply was not
   * marked (a hermod server older than the marker): the job runs, and `client.job(err.token)`
   * follows it.
   */
  readonly token: JobToken | undefined;
  constructor(message: string, options?: { cause?: unknown; token?: JobToken }) {
    super(message, options);
    this.token = options?.token;
  }
}
define(InvalidJobToken, 'HERMOD_ERR_INVALID_JOB_TOKEN');

/**
 * The server already holds `jobs.max` jobs, or a new long call would wait for a slot past
 * `jobs.maxPendingBytes` of pending requests: it is refused before it starts; try again later.
 */
export class TooManyJobs extends HermodError {
  /**
   * Which bound refused the job: `max` (`jobs.max`) or `maxPendingBytes`; undefined when the
   * answering server did not say (one older than the field).
   */
  readonly bound: TooManyJobsBound | undefined;
  /** Sent as the failure's kwargs, so that a caller (the gateway) can name the bound without the server's message. */
  readonly kwargs: { bound?: TooManyJobsBound };
  constructor(message: string, options?: { cause?: unknown; bound?: TooManyJobsBound }) {
    super(message, options);
    this.bound = options?.bound;
    this.kwargs = this.bound === undefined ? {} : { bound: this.bound };
  }
}
define(TooManyJobs, 'HERMOD_ERR_TOO_MANY_JOBS');

/** The server bounds a {@link TooManyJobs} names: `jobs.max` or `jobs.maxPendingBytes`. */
export type TooManyJobsBound = 'max' | 'maxPendingBytes';

/** `job_result` of a job that has not ended yet. */
export class JobPending extends HermodError {}
define(JobPending, 'HERMOD_ERR_JOB_PENDING');

/** The job was cancelled (`job_cancel`, or a server stopping with the abort strategy). */
export class JobCancelled extends HermodError {}
define(JobCancelled, 'HERMOD_ERR_JOB_CANCELLED');

/** `job_cancel` of a job that has already ended: nothing to cancel, its outcome stands. */
export class JobFinished extends HermodError {}
define(JobFinished, 'HERMOD_ERR_JOB_FINISHED');

/** The job did not end within the caller's `jobTimeout`; it may still be running on the server. */
export class JobTimeout extends MessagingTimeout {}
define(JobTimeout, 'HERMOD_ERR_JOB_TIMEOUT');

/**
 * The server holding a job did not answer a poll within the poll's timeout (stopped, crashed,
 * unreachable). The job's fate is unknown to the caller; the token stays valid if the server
 * comes back without restarting.
 */
export class ServerUnavailable extends HermodError {}
define(ServerUnavailable, 'HERMOD_ERR_SERVER_UNAVAILABLE');

const msg = (f: { message?: unknown }) => peerText(f.message);
registerHermodError('JobLost', (f) => {
  const instance = f.kwargs?.instance;
  return new JobLost(msg(f), typeof instance === 'string' && /^[0-9a-f]{32}$/.test(instance) ? { answeredBy: instance } : undefined);
});
registerHermodError('TooManyJobs', (f) => {
  const bound = f.kwargs?.bound;
  return new TooManyJobs(msg(f), bound === 'max' || bound === 'maxPendingBytes' ? { bound } : undefined);
});
for (const [name, cls] of [
  ['JobNotFound', JobNotFound],
  ['InvalidJobToken', InvalidJobToken],
  ['JobPending', JobPending],
  ['JobCancelled', JobCancelled],
  ['JobFinished', JobFinished],
] as const) {
  registerHermodError(name, (f) => new cls(msg(f)));
}
