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

function derive(password: string, salt: Buffer, o: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, KEYLEN, { ...o, maxmem: 64 * 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

/** Encodes `password` as `scrypt$N$r$p$<salt base64>$<hash base64>` with a fresh 16-byte salt. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(password, salt, COST);
  return `scrypt$${COST.N}$${COST.r}$${COST.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** Whether `password` matches an encoded hash from {@link hashPassword} (constant-time compare). */
export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = encoded.split('$');
  if (scheme !== 'scrypt' || !salt || !hash) return false;
  const want = Buffer.from(hash, 'base64');
  const got = await derive(password, Buffer.from(salt, 'base64'), { N: Number(n), r: Number(r), p: Number(p) });
  return got.length === want.length && timingSafeEqual(got, want);
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
    return new UserDb(parse(text, path));
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
