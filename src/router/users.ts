import { randomBytes, type ScryptOptions, scrypt, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { ConfigError } from '../core/errors.js';

/**
 * One user of the router's users file. `password` is an encoded scrypt hash (written by
 * `hermod-router passwd`); `send` and `receive`, when present, are the address prefixes the
 * user may send to and receive from (Qpid Dispatch's policy, by prefix). Without them the user
 * may use every address.
 */
export interface UserEntry {
  password?: string;
  send?: string[];
  receive?: string[];
}

/** The users file: `{ "users": { "<name>": UserEntry } }`. */
export interface UsersFile {
  users: Record<string, UserEntry>;
}

// scrypt's cost: N=2^14, r=8 is node's default and OWASP's minimum (about 16 MiB and 40-60 ms
// per check), so a guessing client pays per attempt and the router's thread pool bounds it.
const COST = { N: 16384, r: 8, p: 1 };
const KEYLEN = 32;
const MAXMEM = 64 * 1024 * 1024;

function derive(password: string, salt: Buffer, o: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, KEYLEN, { ...o, maxmem: MAXMEM }, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

const BASE64 = '[A-Za-z0-9+/]+={0,2}';
const ENCODED = new RegExp(`^scrypt\\$(\\d{1,10})\\$(\\d{1,10})\\$(\\d{1,10})\\$(${BASE64})\\$(${BASE64})$`);

/**
 * An encoded hash's parts, or undefined when it is not one `hashPassword` could have written:
 * scrypt's cost a power of two ≥ 2, r and p ≥ 1 within the memory `derive` allows, a salt, and
 * a hash of KEYLEN bytes (any other length can never match).
 */
function decodeHash(encoded: string): { salt: Buffer; hash: Buffer; cost: ScryptOptions } | undefined {
  const m = ENCODED.exec(encoded);
  if (!m) return undefined;
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (N < 2 || (N & (N - 1)) !== 0 || r < 1 || p < 1 || 128 * N * r > MAXMEM) return undefined;
  const salt = Buffer.from(m[4]!, 'base64');
  const hash = Buffer.from(m[5]!, 'base64');
  if (salt.length === 0 || hash.length !== KEYLEN) return undefined;
  return { salt, hash, cost: { N, r, p } };
}

/** Encodes `password` as `scrypt$N$r$p$<salt base64>$<hash base64>` with a fresh 16-byte salt. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(password, salt, COST);
  return `scrypt$${COST.N}$${COST.r}$${COST.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/**
 * Whether `password` matches an encoded hash from {@link hashPassword} (constant-time compare).
 * False, never a rejection, for anything else: a throw inside rhea's SASL callback became the
 * outcome `sys` and no log line.
 */
export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const h = decodeHash(encoded);
  if (!h) return false;
  try {
    const got = await derive(password, h.salt, h.cost);
    return timingSafeEqual(got, h.hash);
  } catch {
    return false;
  }
}

function parse(text: string, file: string): UsersFile {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`users file ${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const users = (data as { users?: unknown } | null)?.users;
  if (!users || typeof users !== 'object' || Array.isArray(users)) throw new ConfigError(`users file ${file} needs a "users" object`);
  for (const [name, e] of Object.entries(users as Record<string, unknown>)) {
    const entry = e as Record<string, unknown>;
    const bad = (what: string) => new ConfigError(`users file ${file}: user "${name}": ${what}`);
    if (!entry || typeof entry !== 'object') throw bad('must be an object');
    if (entry.password !== undefined && typeof entry.password !== 'string') throw bad('"password" must be a string');
    for (const k of ['send', 'receive']) {
      const v = entry[k];
      if (v !== undefined && !(Array.isArray(v) && v.every((x) => typeof x === 'string')))
        throw bad(`"${k}" must be a list of address prefixes`);
    }
    for (const k of Object.keys(entry)) if (!['password', 'send', 'receive'].includes(k)) throw bad(`unknown key "${k}"`);
  }
  return { users: users as Record<string, UserEntry> };
}

// A hash checked for unknown users too, so a wrong name takes as long as a wrong password.
const DUMMY = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

/** The router's users: PLAIN credentials and per-user address rules. */
export class UserDb {
  constructor(private readonly file: UsersFile) {}

  /** Reads and validates a users file; throws ConfigError naming the problem. */
  static load(path: string): UserDb {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read users file ${path}: ${(err as Error).message}`, { cause: err });
    }
    const file = parse(text, path);
    // Checked here, not in parse(): `passwd` must still be able to fix such an entry.
    for (const [name, entry] of Object.entries(file.users)) {
      if (entry.password !== undefined && !decodeHash(entry.password)) {
        throw new ConfigError(
          `users file ${path}: user "${name}": "password" is not a hash written by \`hermod-router passwd\` (set it with: hermod-router passwd ${path} ${name})`,
        );
      }
    }
    return new UserDb(file);
  }

  /** Users that can log in with a password. */
  get size(): number {
    return Object.values(this.file.users).filter((u) => u.password).length;
  }

  /** Whether `username` exists with a password and `password` matches it. */
  async check(username: string, password: string): Promise<boolean> {
    const entry = Object.hasOwn(this.file.users, username) ? this.file.users[username] : undefined;
    const ok = await verifyPassword(password, entry?.password ?? DUMMY);
    return ok && entry?.password !== undefined;
  }

  /** The address rules of `identity` (a user name, `anonymous`, or a certificate's CN); undefined: no rules. */
  rules(identity: string): UserEntry | undefined {
    const e = Object.hasOwn(this.file.users, identity) ? this.file.users[identity] : undefined;
    return e && (e.send || e.receive) ? e : undefined;
  }
}

/**
 * Sets `username`'s password in the users file at `path` (created when missing), keeping the
 * user's rules and every other entry. Written to a temporary file and renamed, mode 0600.
 */
export async function setPassword(path: string, username: string, password: string): Promise<void> {
  let file: UsersFile = { users: {} };
  try {
    file = parse(await readFile(path, 'utf8'), path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  file.users[username] = { ...file.users[username], password: await hashPassword(password) };
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    await writeFile(tmp, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
    await rename(tmp, path);
  } catch (err) {
    // Named by the file asked for, not the temporary one (ENOENT for a missing directory).
    throw new Error(`cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}

/** Whether `address` starts with one of `prefixes` (undefined: no rule, everything allowed). */
export function allowed(prefixes: string[] | undefined, address: string): boolean {
  return prefixes === undefined || prefixes.some((p) => address.startsWith(p));
}
