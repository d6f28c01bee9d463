// The token's type alone, so that errors.ts can name it without a cycle through token.ts.

/**
 * What a deferred call answers instead of its result: a plain dict, so any peer (a Python
 * oslo.messaging client included) can read it and poll the job with server-directed calls
 * `job_status` / `job_result` / `job_cancel` in namespace `hermod` on `exchange`/`topic`/`server`.
 *
 * ```json
 * { "hermod_job": 1, "job_id": "9f1c…", "server": "host1", "topic": "compute",
 *   "exchange": "openstack", "method": "resize", "instance": "c0a8…" }
 * ```
 */
export interface JobToken {
  /** Token format version (1). Its presence marks the dict as a job token. */
  hermod_job: 1;
  /** The job's id on its server: 32 hex digits. */
  job_id: string;
  /** The server holding the job. */
  server: string;
  /** The topic the server serves. */
  topic: string;
  /** The exchange it serves the topic on. */
  exchange: string;
  /** The method the job runs. */
  method: string;
  /** Identifies the server's run: a restarted server tells a lost job from an unknown one. */
  instance: string;
}
