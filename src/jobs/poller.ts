import { MessageUndeliverable, MessagingTimeout } from '../core/errors.js';
import type { Context } from '../core/serializer.js';
import { Target } from '../core/target.js';
import { isRemote } from '../rpc/remote-errors.js';
import { InvalidJobToken, JobLost, JobTimeout, ServerUnavailable } from './errors.js';
import { FINAL_STATES, type JobState, type JobStatusDict } from './store.js';
import { HERMOD_NAMESPACE, JOBS_VERSION, type JobToken, runAlias } from './token.js';

/**
 * The least a poll sent near the end of a bounded wait gets for its answer. Given only what was
 * left (1 ms after the last sleep), it always timed out, so a job that ended within the wait's
 * last poll interval (up to pollMax) was reported as still running; at the gateway, cancelled
 * with its result lost. A server that does not answer stretches the wait by this much at most.
 */
const LAST_POLL_MS = 250;

/**
 * The argument of a job_status poll whose poller reads the result next if the job has ended.
 * A stopping server counts a final state read by a status-only poll as collected after a short
 * grace, and could exit before a stalled poller's job_result came; told the result follows, it
 * waits for the job_result itself (within jobs.stopLinger). A server without it ignores the key.
 */
export const RESULT_FOLLOWS = 'result_follows';

/** Makes one short call (a poll) to a target; the RPC client provides it. */
export type PollCall = (target: Target, ctx: Context, method: string, args: Record<string, unknown>, timeoutMs: number) => Promise<unknown>;

/** How a client polls; durations in ms (config `jobs.*`). */
export interface PollOptions {
  /** First delay between polls; grows by 1.5 per poll. */
  pollInterval: number;
  /** Cap of the delay. */
  pollMax: number;
  /** Timeout of each poll: past it the server is taken for gone (ServerUnavailable). */
  pollTimeout: number;
  /** Overall bound of a wait for the result; 0 = none. */
  jobTimeout: number;
}

/** A job's state as a client sees it. */
export interface JobStatus {
  /** The job's id on its server. */
  id: string;
  /** The method the job runs. */
  method: string;
  /** `pending`, `running`, `succeeded`, `failed` or `cancelled`. */
  state: JobState;
  /** 0..1, or null before the method first reported progress. */
  progress: number | null;
  /** The method's last progress message, or null. */
  message: string | null;
  /** When the server took the job (ISO 8601). */
  createdAt: string;
  /** When its method began running, or null while it waits for a slot. */
  startedAt: string | null;
  /** When it ended, or null while it runs. */
  endedAt: string | null;
  /** A cancel was asked for (the method may still be finishing). */
  cancelRequested: boolean;
  /** For a failed job: the error's class and message (`result()` rejects with the error itself). */
  error?: { class: string; message: string };
}

/** Converts the wire dict. */
export function toStatus(d: JobStatusDict): JobStatus {
  return {
    id: d.job_id,
    method: d.method,
    state: d.state,
    progress: d.progress,
    message: d.message,
    createdAt: d.created_at,
    startedAt: d.started_at,
    endedAt: d.ended_at,
    cancelRequested: d.cancel_requested,
    ...(d.error ? { error: d.error } : {}),
  };
}

/** Whether a job will not change any more. */
export const isFinal = (s: JobStatus) => FINAL_STATES.has(s.state);

/** The server-directed target of a token's jobs endpoint. */
export function jobsTarget(token: JobToken, server = token.server): Target {
  return new Target({
    exchange: token.exchange,
    topic: token.topic,
    server,
    namespace: HERMOD_NAMESPACE,
    version: JOBS_VERSION,
  });
}

/** Sleeps `ms`; an abort of `signal` ends the sleep early, rejecting with the signal's reason. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (!signal) return new Promise<void>((resolve) => setTimeout(resolve, ms));
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Talks to one job's server: each poll is a short server-directed call whose timeout (or an
 * undeliverable message) means the server is gone: ServerUnavailable, never an endless wait.
 */
export class JobPoller {
  private readonly target: Target;
  /** The token's own run (see runAlias), asked when another run of the server name answered. */
  private readonly runTarget: Target;

  constructor(
    readonly token: JobToken,
    private readonly call: PollCall,
    private readonly ctx: Context,
    readonly options: PollOptions,
  ) {
    this.target = jobsTarget(token);
    this.runTarget = jobsTarget(token, runAlias(token.instance));
  }

  /**
   * One poll of `method` (job_status, job_result, job_cancel). Several processes may serve one
   * server name (oslo services run workers under one `host`, sharing its queue; a rolling
   * restart overlaps two runs), and each holds only its own jobs. A poll goes to the server
   * name, which a lone process answers at once; when another run answered it (JobLost naming
   * that run), it is asked again at the token's run's own address, which only that process
   * serves. There it is answered, or refused because the process is gone (RabbitMQ and memory
   * return it at once; over AMQP 1.0 the router releases it until the poll's timeout): then the
   * job is lost. Before, the poll was repeated at the shared name, and pollers that took turns
   * with each other were handed to the same wrong process every time (a false JobLost for most
   * jobs of four workers).
   */
  async poll(method: string, timeoutMs = this.options.pollTimeout, resultFollows = false): Promise<unknown> {
    try {
      return await this.pollOnce(this.target, method, timeoutMs, resultFollows);
    } catch (err) {
      if (!(err instanceof JobLost) || err.answeredBy === this.token.instance) throw err;
      try {
        return await this.pollOnce(this.runTarget, method, timeoutMs, resultFollows);
      } catch (again) {
        // The run's address is gone with its process: the first answer stands.
        if (again instanceof ServerUnavailable) throw err;
        throw again;
      }
    }
  }

  private async pollOnce(target: Target, method: string, timeoutMs: number, resultFollows: boolean): Promise<unknown> {
    const t = this.token;
    const args: Record<string, unknown> = { job_id: t.job_id, instance: t.instance, method: t.method };
    if (resultFollows) args[RESULT_FOLLOWS] = true;
    try {
      return await this.call(target, this.ctx, method, args, Math.max(1, timeoutMs));
    } catch (err) {
      // Only this poll's own timeout: a job that failed with a MessagingTimeout of its own (its
      // call elsewhere timed out) is answered as that error, rebuilt, and is the job's outcome.
      if ((err instanceof MessagingTimeout || err instanceof MessageUndeliverable) && !isRemote(err)) {
        // Undeliverable comes at once (the broker returned the poll: nothing receives that server's
        // messages), so no timeout was waited out.
        const what =
          err instanceof MessageUndeliverable
            ? `could not be sent a poll of job ${t.job_id} (${t.method}): nothing receives its messages`
            : `did not answer a poll of job ${t.job_id} (${t.method}) within ${Math.round(timeoutMs)} ms`;
        throw new ServerUnavailable(
          `server ${t.server} (topic ${t.topic}) ${what}: it is stopped, restarting or unreachable; the job's outcome is unknown`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  /** One job_status poll, answered within `timeoutMs` (default `pollTimeout`) or ServerUnavailable. */
  async status(timeoutMs = this.options.pollTimeout): Promise<JobStatus> {
    return this.checked(toStatus((await this.poll('job_status', timeoutMs)) as JobStatusDict));
  }

  /**
   * One job_result poll with a timeout of its own (default `pollTimeout`): the result, or the
   * job's error, JobPending while it runs, ServerUnavailable when no answer came in time.
   */
  fetchResult(timeoutMs = this.options.pollTimeout): Promise<unknown> {
    return this.poll('job_result', timeoutMs);
  }

  /**
   * `s`, when it is the status of the token's job: a token whose method was changed (forged, or a
   * result that merely looks like a token) names someone else's job, which it must not read.
   */
  private checked(s: JobStatus): JobStatus {
    if (s.method !== this.token.method) {
      throw new InvalidJobToken(`the token says method ${this.token.method}, but its job on server ${this.token.server} runs another`);
    }
    return s;
  }

  /**
   * One poll within what is left of a bounded wait (`deadline`): a server that does not answer
   * must not stretch a 1 s bound to a poll's 10 s, and a poll that times out so is the wait's
   * JobTimeout. `what` ends its message. The `job_result` after the final status is bounded too:
   * a server that answered the status and then stalled once stretched the wait to 10 s.
   */
  private async within(method: string, timeoutMs: number, deadline: number, what: string, resultFollows = false): Promise<unknown> {
    const left = deadline - Date.now();
    const bounded = left < this.options.pollTimeout;
    const pollFor = bounded ? Math.max(Math.min(LAST_POLL_MS, this.options.pollTimeout), left) : this.options.pollTimeout;
    try {
      return await this.poll(method, pollFor, resultFollows);
    } catch (err) {
      if (bounded && err instanceof ServerUnavailable && err.cause instanceof MessagingTimeout) {
        // The cause tells a caller that the server was silent, not merely the job still running.
        throw new JobTimeout(
          `job ${this.token.job_id} (${this.token.method}) on server ${this.token.server} ${what} within ${timeoutMs} ms (the wait ran out while a poll was on its way); its token stays valid`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  /**
   * Polls with backoff until the job ends, then returns its result (or rejects with its error,
   * JobCancelled, ServerUnavailable, or JobTimeout past `timeoutMs`). `onStatus` sees every status
   * read. An abort of `signal` ends the wait (not the job) with the signal's reason, at once
   * between polls, else when the poll on its way is answered.
   */
  async result(timeoutMs = this.options.jobTimeout, onStatus?: (s: JobStatus) => void, signal?: AbortSignal): Promise<unknown> {
    const deadline = timeoutMs > 0 ? Date.now() + timeoutMs : Infinity;
    let delay = this.options.pollInterval;
    for (;;) {
      signal?.throwIfAborted();
      const s = this.checked(toStatus((await this.within('job_status', timeoutMs, deadline, 'did not end', true)) as JobStatusDict));
      onStatus?.(s);
      if (isFinal(s)) return this.within('job_result', timeoutMs, deadline, 'ended, but its result did not come');
      signal?.throwIfAborted();
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new JobTimeout(
          `job ${s.id} (${s.method}) on server ${this.token.server} did not end within ${timeoutMs} ms (state ${s.state}); it may still be running: its token stays valid`,
        );
      }
      await sleep(Math.min(delay, remaining), signal);
      delay = Math.min(this.options.pollMax, Math.max(1, delay * 1.5));
    }
  }
}
