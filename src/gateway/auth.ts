/**
 * Who is calling: API keys / bearer tokens from a file of SHA-256 hashes, or the library's own
 * `authenticate(request)` hook.
 *
 * Why SHA-256 and not scrypt: the keys are random tokens of at least 128 bits that the operator
 * generates (`openssl rand -base64 32`), not passwords a person chose, so a fast hash of one is
 * as hard to invert as guessing the key itself; a deliberately slow hash (scrypt, ~50 ms of CPU)
 * would add nothing against inversion and would hand anyone who sends bad tokens a way to burn
 * the gateway's CPU. The file never holds a usable key, and a lookup by hash does not compare
 * secrets byte by byte.
 */

import { createHash } from 'node:crypto';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { FastifyRequest } from 'fastify';
import { ConfigError } from '../core/errors.js';
import { parseConfigJson, readUtf8File } from '../core/json.js';

/** What the gateway knows about a caller; it becomes part of the RPC context. */
export interface Identity {
  /** User id (`user_id` in the context). */
  user?: string;
  /** Project id (`project_id` in the context). */
  project?: string;
  /**
   * Roles, checked against each route's `roles` and passed on as `roles`. @default none (an
   * array of strings when given: anything else is the hook's mistake, answered 500)
   */
  roles?: string[];
  /** Further context fields the hook vouches for (never taken from the client as such). */
  context?: Record<string, unknown>;
}

/** The library hook: return the caller's identity, or null/undefined when the request carries none or bad credentials. */
export type Authenticate = (request: FastifyRequest) => Identity | null | undefined | Promise<Identity | null | undefined>;

/** An entry of the keys file. */
export interface KeyEntry {
  /** A name for logs; never a secret. */
  id: string;
  /** Hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`). */
  sha256: string;
  /** Roles the key grants, checked against a route's `roles`. */
  roles?: string[];
  /** The RPC context's `user`. */
  user?: string;
  /** The RPC context's `project`. */
  project?: string;
}

const KEYS_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['keys'],
  properties: {
    keys: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'sha256'],
        properties: {
          id: { type: 'string', minLength: 1 },
          sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
          roles: { type: 'array', items: { type: 'string', minLength: 1 } },
          user: { type: 'string' },
          project: { type: 'string' },
        },
      },
    },
  },
};
const validateKeys = new Ajv2020({ strict: true }).compile(KEYS_SCHEMA);

/** Hex SHA-256 of a key, as the keys file stores it. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** The credential a request presents: `Authorization: Bearer <key>` or `X-API-Key: <key>`. */
export function presentedKey(request: FastifyRequest): string | undefined {
  const auth = request.headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    return m ? m[1] : undefined;
  }
  const key = request.headers['x-api-key'];
  return typeof key === 'string' && key.length > 0 ? key : undefined;
}

/** An `authenticate` hook over a keys file, read once. */
export function keysFileAuthenticator(file: string): Authenticate {
  let text: string;
  try {
    text = readUtf8File(file);
  } catch (err) {
    throw new ConfigError(`cannot read keys file ${file}: ${(err as Error).message}`, { cause: err, key: 'auth.keysFile' });
  }
  return keysAuthenticator(text, file);
}

/**
 * An `authenticate` hook over the text of a keys file (`file` names it in errors): what the
 * workers of `hermod-gateway --workers` use, given the text their primary read, so that every
 * worker, a restarted one too, holds the keys the run started with.
 */
export function keysAuthenticator(text: string, file: string): Authenticate {
  let data: unknown;
  try {
    data = parseConfigJson(text);
  } catch (err) {
    throw new ConfigError(`cannot read keys file ${file}: ${(err as Error).message}`, { cause: err, key: 'auth.keysFile' });
  }
  if (!validateKeys(data)) {
    const e = validateKeys.errors![0]!;
    const extra = (e.params as { additionalProperty?: string }).additionalProperty;
    throw new ConfigError(`keys file ${file}: ${extra ? `unknown key '${extra}'` : e.message} at '${e.instancePath || '(top)'}'`, {
      key: 'auth.keysFile',
    });
  }
  const byHash = new Map<string, Identity>();
  for (const k of (data as { keys: KeyEntry[] }).keys) {
    if (byHash.has(k.sha256)) throw new ConfigError(`keys file ${file}: key ${k.id} repeats another key's hash`, { key: 'auth.keysFile' });
    byHash.set(k.sha256, {
      roles: k.roles ?? [],
      user: k.user ?? k.id,
      ...(k.project ? { project: k.project } : {}),
    });
  }
  return (request) => {
    const key = presentedKey(request);
    // Bounded before hashing: a key is a short token, not a body.
    if (!key || key.length > 512) return null;
    return byHash.get(hashApiKey(key)) ?? null;
  };
}
