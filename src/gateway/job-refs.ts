/**
 * Job references: what an HTTP client holds for a job the gateway started (`/v1/jobs/{ref}`).
 *
 * A reference is the server's job token, the route it was started on and the identity that
 * started it, sealed with AES-256-GCM under the gateway's key. Sealed rather than signed: the
 * token names the server holding the job (often a host name) and its exchange, which a public
 * client has no business reading. Authenticated: a client cannot point a poll at a server, topic
 * or job of its choosing, nor poll another caller's job with its own credentials. Stateless: any
 * gateway holding the same key (the workers of `--workers`, a restarted gateway given
 * `jobs.keyFile`) reads it, and the gateway keeps nothing per job.
 */

import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../core/errors.js';
import { JobNotFound } from '../jobs/errors.js';
import { type JobToken, parseJobToken } from '../jobs/token.js';
import type { Identity } from './auth.js';

/** The environment variable a gateway without `jobs.keyFile` takes its key from (the workers of `--workers` get one so). */
export const JOBS_KEY_ENV = 'HERMOD_GATEWAY_JOBS_KEY';

/** Key material shorter than this is refused: it would be guessable. */
const MIN_KEY_CHARS = 32;
/** References longer than this are not ones this gateway made (its own are ~300 characters). */
export const MAX_REF_CHARS = 2048;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Bound to each reference, so a ciphertext made for anything else under the same key never opens as one. */
const AAD = Buffer.from('hermod-gateway job reference v1');

/**
 * Who may use a reference: a digest of the identity that started the job (its user, project and
 * the context fields an `authenticate` hook vouches for), or null for anyone holding it (a job
 * started without credentials).
 */
export type JobOwner = string | null;

/** JSON with every object's keys in order, so that one identity always gives one text. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** The owner a request's identity makes. Roles are not part of it: they change, the caller does not. */
export function ownerOf(identity: Identity | undefined): JobOwner {
  if (!identity) return null;
  const who = canonical([identity.user ?? null, identity.project ?? null, identity.context ?? {}]);
  return createHash('sha256').update(who).digest('base64url').slice(0, 22);
}

/** What a reference holds. */
export interface OpenedRef {
  token: JobToken;
  /** The route it was started on (`topic.method`): polls need that route's roles. */
  route: string;
  owner: JobOwner;
}

/**
 * The 32-byte key references are sealed with, from (first found) `text` (the library's
 * `jobsKey` option), `keyFile`, the {@link JOBS_KEY_ENV} variable, or random (references then die
 * with the process). The text is hashed, so any text of at least 32 characters will do
 * (`openssl rand -base64 32`).
 */
export function jobsKey(from: { text?: string; keyFile?: string; env?: NodeJS.ProcessEnv }): Buffer {
  let text: string | undefined;
  let source: string;
  let key: string;
  if (from.text !== undefined) {
    text = from.text.trim();
    source = 'the jobsKey option';
    key = 'jobsKey';
  } else if (from.keyFile) {
    source = `jobs.keyFile ${from.keyFile}`;
    key = 'jobs.keyFile';
    try {
      text = readFileSync(from.keyFile, 'utf8').trim();
    } catch (err) {
      throw new ConfigError(`cannot read ${source}: ${(err as Error).message}`, { cause: err, key });
    }
  } else {
    text = (from.env ?? process.env)[JOBS_KEY_ENV]?.trim() || undefined;
    source = `the ${JOBS_KEY_ENV} variable`;
    key = JOBS_KEY_ENV;
    if (text === undefined) return randomBytes(32);
  }
  if (text.length < MIN_KEY_CHARS)
    throw new ConfigError(
      `${source} holds ${text.length} characters; a jobs key needs at least ${MIN_KEY_CHARS} (openssl rand -base64 32)`,
      {
        key,
      },
    );
  return createHash('sha256').update('hermod-gateway jobs key\0').update(text, 'utf8').digest();
}

/** Seals and opens job references under one key. */
export class JobRefs {
  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new ConfigError('a jobs key is 32 bytes');
  }

  /** The reference of `token`, started on `route` by `owner`. */
  seal(token: JobToken, route: string, owner: JobOwner): string {
    const plain = Buffer.from(
      JSON.stringify([token.job_id, token.server, token.topic, token.exchange, token.method, token.instance, route, owner]),
      'utf8',
    );
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(AAD);
    const sealed = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    return sealed.toString('base64url');
  }

  /**
   * What `ref` holds, when this key sealed it and `owner` may use it; else JobNotFound, the
   * same for a forged, damaged, foreign or another caller's reference (which of them it was is
   * nothing a client needs, and telling would confirm that someone else's job exists).
   */
  open(ref: string, owner: JobOwner): OpenedRef {
    const gone = () => new JobNotFound('no such job (the reference is unknown here, or not yours)');
    if (ref.length > MAX_REF_CHARS || !/^[A-Za-z0-9_-]+$/.test(ref)) throw gone();
    const bytes = Buffer.from(ref, 'base64url');
    // Only the one spelling seal() wrote: base64 text with spare bits or characters past the
    // last byte decodes to the same bytes, and would make one job many URLs.
    if (bytes.length <= IV_BYTES + TAG_BYTES || bytes.toString('base64url') !== ref) throw gone();
    let fields: unknown;
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, bytes.subarray(0, IV_BYTES));
      decipher.setAAD(AAD);
      decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
      const plain = Buffer.concat([decipher.update(bytes.subarray(IV_BYTES, bytes.length - TAG_BYTES)), decipher.final()]);
      fields = JSON.parse(plain.toString('utf8'));
    } catch {
      throw gone();
    }
    // Sealed by this key, so written by seal(); checked anyway rather than trusted blindly.
    if (!Array.isArray(fields) || fields.length !== 8) throw gone();
    const [job_id, server, topic, exchange, method, instance, route, sealedOwner] = fields as unknown[];
    if (typeof route !== 'string' || !sameOwner(sealedOwner, owner)) throw gone();
    let token: JobToken;
    try {
      token = parseJobToken({ hermod_job: 1, job_id, server, topic, exchange, method, instance });
    } catch {
      throw gone();
    }
    return { token, route, owner: sealedOwner as JobOwner };
  }
}

function sameOwner(sealed: unknown, owner: JobOwner): boolean {
  return sealed === null || (typeof sealed === 'string' && sealed === owner);
}
