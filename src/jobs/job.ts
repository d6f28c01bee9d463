import { assertMs, InvalidArgument } from '../core/errors.js';
import { assertOptions } from '../core/suggest.js';
import { isFinal, type JobPoller, type JobStatus, toStatus } from './poller.js';
import type { JobStatusDict } from './store.js';
import { type JobToken, serializeJobToken } from './token.js';

/** A progress report of a job, as its async iteration yields them. */
export interface JobProgress {
  /** The job's state at this report. */
  state: JobStatus['state'];
  /** 0..1, or null before the method first reported progress. */
  progress: number | null;
  /** The method's last progress message, or null. */
  message: string | null;
}

const RESULT_OPTIONS = { timeout: true, onProgress: true, onStatus: true, signal: true } as const;
const POLL_OPTIONS = { timeout: true } as const;

/**
 * A handle on a job running on a server: what `RPCClient.start()` and `RPCClient.job(token)`
 * return. It holds no connection of its own: every method is one or more short polls, so a
 * handle can be dropped and re-made from its {@link token} (e.g. after the client restarted).
 * Iterating it (`for await (const p of job)`) yields each change of state or progress until
 * the job ends.
 */
export class Job<R = unknown> implements AsyncIterable<JobProgress> {
  constructor(
    private readonly poller: JobPoller,
    private readonly deserialize: (value: unknown) => unknown,
  ) {}

  /** The job's id on its server. */
  get id(): string {
    return this.poller.token.job_id;
  }

  /** The token: keep `JSON.stringify(job.token)` (or {@link serialized}) to re-attach with `client.job(...)`. */
  get token(): JobToken {
    return this.poller.token;
  }

  /** The token as one line of JSON. */
  get serialized(): string {
    return serializeJobToken(this.poller.token);
  }

  /**
   * The job's state now (one poll). Rejects with JobNotFound / JobLost / ServerUnavailable, the
   * latter when no answer came within `timeout` ms (default config `jobs.pollTimeout`).
   */
  status(options: { timeout?: number } = {}): Promise<JobStatus> {
    assertOptions(options, POLL_OPTIONS, 'Job.status() options');
    assertMs('timeout', options.timeout, false);
    return this.poller.status(options.timeout);
  }

  /**
   * The outcome of a job that has ended, in one poll (no waiting): resolves with its result or
   * rejects with its error or JobCancelled; JobPending while it runs; ServerUnavailable when no
   * answer came within `timeout` ms (default config `jobs.pollTimeout`), a bound of its own
   * whatever an earlier wait used up (a large result takes its time to come).
   */
  async readResult(options: { timeout?: number } = {}): Promise<R> {
    assertOptions(options, POLL_OPTIONS, 'Job.readResult() options');
    assertMs('timeout', options.timeout, false);
    return this.deserialize(await this.poller.fetchResult(options.timeout)) as R;
  }

  /**
   * Waits for the job's end and resolves with its result, or rejects with its error,
   * JobCancelled, ServerUnavailable, or JobTimeout after `timeout` ms (default config `jobs.jobTimeout`).
   * `onProgress` sees each change of state or progress on the way, as iterating the job would;
   * `onStatus` every status read, whole, the final one included (what ended the wait, without a
   * further poll: a stopping server may be gone once its result was read).
   * Aborting `signal` gives the wait up (rejecting with the signal's reason); the job runs on.
   */
  async result(
    options: { timeout?: number; onProgress?: (p: JobProgress) => void; onStatus?: (s: JobStatus) => void; signal?: AbortSignal } = {},
  ): Promise<R> {
    // Checked as call options are: a NaN or negative timeout made the wait unbounded, a typo silently so.
    assertOptions(options, RESULT_OPTIONS, 'Job.result() options');
    assertMs('timeout', options.timeout, true);
    for (const key of ['onProgress', 'onStatus'] as const) {
      if (options[key] !== undefined && typeof options[key] !== 'function') {
        throw new InvalidArgument(`${key} must be a function, got ${typeof options[key]}`);
      }
    }
    if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
      throw new InvalidArgument('signal must be an AbortSignal');
    }
    const { onProgress, onStatus: onWhole } = options;
    let last = '';
    const onStatus =
      onProgress || onWhole
        ? (s: JobStatus) => {
            onWhole?.(s);
            if (!onProgress) return;
            const p: JobProgress = { state: s.state, progress: s.progress, message: s.message };
            const key = JSON.stringify(p);
            if (key === last) return;
            last = key;
            onProgress(p);
          }
        : undefined;
    return this.deserialize(await this.poller.result(options.timeout, onStatus, options.signal)) as R;
  }

  /** Asks the server to cancel the job (cooperative); resolves with its status. JobFinished if it had ended. */
  async cancel(): Promise<JobStatus> {
    return toStatus((await this.poller.poll('job_cancel')) as JobStatusDict);
  }

  /** Yields each new progress report until the job ends; polls with the handle's backoff. */
  async *[Symbol.asyncIterator](): AsyncIterator<JobProgress> {
    let last = '';
    let delay = this.poller.options.pollInterval;
    for (;;) {
      const s = await this.poller.status();
      const p: JobProgress = { state: s.state, progress: s.progress, message: s.message };
      const key = JSON.stringify(p);
      if (key !== last) {
        last = key;
        yield p;
      }
      if (isFinal(s)) return;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(this.poller.options.pollMax, delay * 1.5);
    }
  }
}
