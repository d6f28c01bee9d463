import { Target } from '../core/target.js';
import { InvalidJobToken } from './errors.js';
import type { JobToken } from './job-token.js';

/** The key that marks a reply as a job token; its value is the token format version. */
export const JOB_TOKEN_MARKER = 'hermod_job';

/** The namespace and version of the jobs endpoint (and of hermod's other reserved methods). */
export const HERMOD_NAMESPACE = 'hermod';
export const JOBS_VERSION = '1.0';

export type { JobToken } from './job-token.js';

const HEX32 = /^[0-9a-f]{32}$/;

/**
 * The server name a run of a server answers on beside its own (see the driver's
 * `ListenOptions.alias`): where a job's polls reach the very process that holds the job.
 */
export function runAlias(instance: string): string {
  return `run-${instance}`;
}

/** Whether a call's result is a job token (only the marker is looked at; {@link parseJobToken} checks the rest). */
export function isJobToken(value: unknown): boolean {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && Object.hasOwn(value, JOB_TOKEN_MARKER);
}

function name(t: Record<string, unknown>, key: string): string {
  const v = t[key];
  if (typeof v !== 'string' || v.length === 0 || v.length > 255) {
    throw new InvalidJobToken(
      `job token: ${key} must be a non-empty string of at most 255 characters, got ${JSON.stringify(v)?.slice(0, 80)}`,
    );
  }
  return v;
}

/**
 * Checks a token (the dict, or its JSON text as {@link serializeJobToken} writes it) and returns
 * it with only its known fields; throws InvalidJobToken naming what is wrong.
 */
export function parseJobToken(value: unknown): JobToken {
  let t = value;
  if (typeof t === 'string') {
    if (t.length > 4096) throw new InvalidJobToken(`job token text of ${t.length} characters is too long to be one`);
    try {
      t = JSON.parse(t);
    } catch {
      throw new InvalidJobToken('job token text is not JSON');
    }
  }
  if (t === null || typeof t !== 'object' || Array.isArray(t)) throw new InvalidJobToken('a job token must be an object');
  const o = t as Record<string, unknown>;
  if (o[JOB_TOKEN_MARKER] !== 1)
    throw new InvalidJobToken(`not a job token: ${JOB_TOKEN_MARKER} must be 1, got ${JSON.stringify(o[JOB_TOKEN_MARKER])}`);
  const jobId = o.job_id;
  if (typeof jobId !== 'string' || !HEX32.test(jobId)) throw new InvalidJobToken('job token: job_id must be 32 hex digits');
  const instance = o.instance;
  if (typeof instance !== 'string' || !HEX32.test(instance)) throw new InvalidJobToken('job token: instance must be 32 hex digits');
  const token: JobToken = {
    hermod_job: 1,
    job_id: jobId,
    server: name(o, 'server'),
    topic: name(o, 'topic'),
    exchange: name(o, 'exchange'),
    method: name(o, 'method'),
    instance,
  };
  // Names a target may carry (no `#` or `*` word, no whitespace): polls go to this topic and
  // server, and client.job() of a token naming `#` threw InvalidTarget when it made the poller.
  try {
    new Target({ exchange: token.exchange, topic: token.topic, server: token.server });
  } catch (err) {
    throw new InvalidJobToken(`job token: ${(err as Error).message}`);
  }
  return token;
}

/** The token as one line of JSON: what a client stores to re-attach later ({@link parseJobToken} reads it back). */
export function serializeJobToken(token: JobToken): string {
  return JSON.stringify(token);
}

/**
 * The token of a call's own job when `answer` is one: a job of that call's topic, exchange and
 * method (and server, when the call named one). Anything else is the method's result, whatever
 * its shape: a method that returns what it was sent (an echo, a stored record) must not make a
 * client or the gateway follow, cancel or hand out a job of the caller's choosing.
 */
export function ownJobToken(
  answer: unknown,
  call: { topic: string | undefined; exchange: string; method: string; server?: string | null | undefined },
): JobToken | undefined {
  if (!isJobToken(answer)) return undefined;
  let token: JobToken;
  try {
    token = parseJobToken(answer);
  } catch {
    return undefined;
  }
  if (token.topic !== call.topic || token.method !== call.method || token.exchange !== call.exchange) return undefined;
  if (call.server != null && token.server !== call.server) return undefined;
  return token;
}
