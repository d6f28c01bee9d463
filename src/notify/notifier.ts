import { readFileSync } from 'node:fs';
import { ConfigError, InvalidArgument } from '../core/errors.js';
import { uuid } from '../core/ids.js';
import { type Context, NoOpSerializer, type Serializer } from '../core/serializer.js';
import { assertOptions } from '../core/suggest.js';
import { Target } from '../core/target.js';
import type { Transport } from '../transport.js';
import { osloTimestamp, sanitizeContext } from './message.js';

/** oslo's notification priorities, lower-case as in routing keys and endpoint method names. */
export const PRIORITIES = ['audit', 'debug', 'info', 'warn', 'error', 'critical', 'sample'] as const;
/** One of {@link PRIORITIES}. */
export type Priority = (typeof PRIORITIES)[number];

/** What a notifier puts on the wire (before `_context_*` and `_unique_id`), as oslo builds it. */
export interface NotificationMessage {
  /** A fresh uuid per notification. */
  message_id: string;
  /** The notifier's `publisherId`. */
  publisher_id: string;
  /** What happened, e.g. `compute.instance.create.end`. */
  event_type: string;
  /** Upper-case priority (`INFO`), as oslo sends it. */
  priority: string;
  /** The notification's body, after the serializer. */
  payload: unknown;
  /** When it was sent: oslo's `YYYY-MM-DD HH:MM:SS.ffffff`, UTC. */
  timestamp: string;
}

/**
 * oslo's routing driver configuration: groups of `driver → rules`; a notification goes to every
 * driver whose rules all match (`accepted_events` / `accepted_priorities`, shell-style globs).
 */
export type RoutingConfig = Record<string, Record<string, { accepted_events?: string[]; accepted_priorities?: string[] }>>;

/**
 * `value` as a {@link RoutingConfig}, or a ConfigError naming the place that is wrong (keyed
 * `key`). A string where a list belongs threw `rules.accepted_events.some is not a function` at
 * the first send, and a group given as a list read as drivers named '0', '1'.
 */
export function checkRoutingConfig(value: unknown, from: string, key: string): RoutingConfig {
  const fail = (where: string, what: string): never => {
    throw new ConfigError(`routing config (${from}): ${where} ${what}`, { key });
  };
  const isObject = (v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObject(value)) fail('the whole', 'must be an object of groups');
  for (const [group, drivers] of Object.entries(value as Record<string, unknown>)) {
    if (!isObject(drivers)) fail(`group '${group}'`, 'must be an object of driver → rules');
    for (const [driver, rules] of Object.entries(drivers as Record<string, unknown>)) {
      const where = `${group}.${driver}`;
      if (!DRIVERS.has(driver)) fail(where, `names no notification driver (use one of ${[...DRIVERS].join(', ')})`);
      if (!isObject(rules)) fail(where, 'must be an object with accepted_events and/or accepted_priorities');
      for (const [k, v] of Object.entries(rules as Record<string, unknown>)) {
        if (k !== 'accepted_events' && k !== 'accepted_priorities')
          fail(`${where}.${k}`, 'is not a rule (accepted_events, accepted_priorities)');
        if (!Array.isArray(v) || !v.every((p) => typeof p === 'string')) fail(`${where}.${k}`, 'must be a list of glob strings');
      }
    }
  }
  return value as RoutingConfig;
}

/** Options of {@link Notifier}. Unset ones come from the transport's `notifications.*` config. */
export interface NotifierOptions {
  /** Sender of the notifications, e.g. `compute.host1`. */
  publisherId: string;
  /** `messagingv2` (default), `messaging` (1.0 bodies), `log`, `noop`, `routing`; several allowed. */
  driver?: string | string[];
  /** Topics (default `notifications`); each notification goes to `<topic>.<priority>` on each. */
  topics?: string[];
  /** Exchange (default: the control exchange). */
  exchange?: string;
  /** Converts payloads and contexts to their wire form. @default NoOpSerializer */
  serializer?: Serializer;
  /**
   * Connection-failure retries: -1 as many as fit in `rpc.responseTimeout` (a send waits that
   * long for a broker that is away, then fails: `TransportError` when it stayed unreachable,
   * `MessagingTimeout` when it was there and did not confirm; a caller awaiting a notification
   * is never held forever), 0 none, N at most N within it.
   */
  retry?: number;
  /** For the `routing` driver; default: the JSON file named by `notifications.routingConfig`. */
  routing?: RoutingConfig;
  /** Where the `log` driver writes; default one JSON line on stderr. */
  log?: (loggerName: string, priority: Priority, line: string) => void;
}

const NOTIFIER_OPTIONS: Record<keyof NotifierOptions, true> = {
  publisherId: true,
  driver: true,
  topics: true,
  exchange: true,
  serializer: true,
  retry: true,
  routing: true,
  log: true,
};

const PREPARE_OPTIONS = { publisherId: true, retry: true } as const;

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');

/**
 * A shell-style glob as Python's `fnmatch` (what oslo's routing driver matches with): `*`, `?`,
 * `[abc]`, `[!abc]`, `[a-c]`; a `[` that opens no class is a literal `[`, as is every other
 * character; a reversed range (`[c-ax]`) is dropped and the rest of its class kept, as Python does.
 */
export function glob(pattern: string): { test(text: string): boolean } {
  // Each piece matches one character; STAR between them. Matched without a regular expression's
  // backtracking over the stars (see matchPieces): `*a*a*a*a*a*a*a*a*a*a*a*a*b` took a second
  // on a 32-character event type, as Python's fnmatch takes none.
  const pieces: string[] = [];
  const push = (piece: string) => pieces.push(piece);
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i++]!;
    if (c === '*') {
      if (pieces.at(-1) !== STAR) push(STAR);
    } else if (c === '?') push('.');
    else if (c === '[') {
      let j = i;
      if (pattern[j] === '!') j++;
      if (pattern[j] === ']') j++;
      while (j < pattern.length && pattern[j] !== ']') j++;
      if (j >= pattern.length) {
        push('\\[');
        continue;
      }
      // Python's fnmatch.translate, step for step: ranges split into chunks, reversed ranges
      // (`c-a`) dropped and the rest of the class kept, backslashes and lone hyphens literal.
      let stuff: string;
      if (!pattern.slice(i, j).includes('-')) stuff = pattern.slice(i, j).replace(/\\/g, '\\\\');
      else {
        const chunks: string[] = [];
        let from = i;
        let k = pattern[i] === '!' ? i + 2 : i + 1;
        for (;;) {
          k = pattern.indexOf('-', k);
          if (k < 0 || k >= j) break;
          chunks.push(pattern.slice(from, k));
          from = k + 1;
          k += 3;
        }
        const last = pattern.slice(from, j);
        if (last) chunks.push(last);
        else chunks[chunks.length - 1] += '-';
        for (let m = chunks.length - 1; m > 0; m--) {
          if (chunks[m - 1]!.at(-1)! > chunks[m]![0]!) {
            chunks[m - 1] = chunks[m - 1]!.slice(0, -1) + chunks[m]!.slice(1);
            chunks.splice(m, 1);
          }
        }
        stuff = chunks.map((c) => c.replace(/\\/g, '\\\\').replace(/-/g, '\\-')).join('-');
      }
      i = j + 1;
      if (stuff === '') push('(?!)');
      else if (stuff === '!') push('.');
      else {
        if (stuff[0] === '!') stuff = `^${stuff.slice(1)}`;
        else if (stuff[0] === '^' || stuff[0] === '[') stuff = `\\${stuff}`;
        // JavaScript, unlike Python, reads a `]` first in a class as its end.
        push(`[${stuff.replace(/^(\^?)\]/, '$1\\]')}]`);
      }
    } else push(escapeRegExp(c));
  }
  return matchPieces(pieces);
}

const STAR = '*';

/** The routing config's globs, compiled once: they came from configuration, and each send matched them anew. */
const globs = new Map<string, { test(text: string): boolean }>();
function compiledGlob(pattern: string): { test(text: string): boolean } {
  let g = globs.get(pattern);
  if (!g) {
    // Patterns come from configuration, not peers; the bound only guards a program making them up.
    if (globs.size >= 1024) globs.clear();
    g = glob(pattern);
    globs.set(pattern, g);
  }
  return g;
}

/**
 * A matcher of one-character pieces with stars between: the parts between stars are
 * fixed-length, so the first is matched at the start, the last at the end, and each in between
 * at its leftmost place after the one before; leftmost is always right for a glob, and the
 * whole costs at most the text's length times the pattern's.
 */
function matchPieces(pieces: string[]): { test(text: string): boolean } {
  const parts: string[][] = [[]];
  for (const p of pieces) {
    if (p === STAR) parts.push([]);
    else parts.at(-1)!.push(p);
  }
  const at = parts.map((part) => ({ length: part.length, re: new RegExp(part.join(''), 'sy') }));
  const matchesAt = (part: { length: number; re: RegExp }, text: string, pos: number) => {
    if (part.length === 0) return true;
    if (pos + part.length > text.length) return false;
    part.re.lastIndex = pos;
    return part.re.test(text);
  };
  return {
    test(text: string): boolean {
      // Code units, as Python's str indexing is code points: only characters past U+FFFF differ.
      const first = at[0]!;
      if (at.length === 1) return first.length === text.length && matchesAt(first, text, 0);
      if (!matchesAt(first, text, 0)) return false;
      let pos = first.length;
      const last = at.at(-1)!;
      const end = text.length - last.length;
      if (end < pos || !matchesAt(last, text, end)) return false;
      for (let k = 1; k < at.length - 1; k++) {
        const part = at[k]!;
        let p = pos;
        while (p + part.length <= end && !matchesAt(part, text, p)) p++;
        if (p + part.length > end) return false;
        pos = p + part.length;
      }
      return true;
    },
  };
}

/** The notifier drivers (`notifications.driver`), as oslo names them. */
export const NOTIFICATION_DRIVERS = ['messagingv2', 'messaging', 'log', 'noop', 'routing'] as const;
const DRIVERS = new Set<string>(NOTIFICATION_DRIVERS);

/**
 * Sends notifications (oslo.messaging's Notifier): one method per priority, each building
 * oslo's message (uuid `message_id`, `publisher_id`, `event_type`, upper-case `priority`,
 * `payload`, `timestamp`) and handing it to the configured drivers. The messaging drivers
 * publish to `<topic>.<priority>` for each topic; the returned promise settles once the broker
 * has it (and rejects with the typed error if it could not be sent).
 */
export class Notifier {
  /** Who sends the notifications (oslo's `publisher_id`, e.g. `compute.host1`). */
  readonly publisherId: string;
  private readonly drivers: string[];
  private readonly topics: string[];
  private readonly serializer: Serializer;
  private readonly retry: number;
  private routing: RoutingConfig | undefined;

  constructor(
    private readonly transport: Transport,
    private readonly options: NotifierOptions,
  ) {
    // Unknown names first: a misspelt `publisherID` gets its suggestion, not "needs a publisherId".
    assertOptions(options, NOTIFIER_OPTIONS, 'Notifier options');
    if (!options || typeof options.publisherId !== 'string' || options.publisherId === '') {
      throw new InvalidArgument('Notifier needs a publisherId');
    }
    const conf = transport.config.notifications;
    this.publisherId = options.publisherId;
    this.drivers = options.driver === undefined ? conf.driver : Array.isArray(options.driver) ? options.driver : [options.driver];
    // Named as the user set it: the option, or the config key (its value may come from a file,
    // the environment or --config).
    const driverFrom = options.driver === undefined ? 'config notifications.driver' : "the Notifier's driver option";
    for (const d of this.drivers) {
      if (!DRIVERS.has(d))
        throw new ConfigError(`unknown notification driver '${d}' (from ${driverFrom}); use one of ${[...DRIVERS].join(', ')}`, {
          key: 'notifications.driver',
        });
    }
    this.topics = options.topics ?? conf.topics;
    if (this.topics.length === 0 || this.topics.some((t) => typeof t !== 'string' || t === '')) {
      const from = options.topics === undefined ? 'config notifications.topics' : "the Notifier's topics option";
      throw new ConfigError(`a notifier needs one topic or more, none empty (from ${from}), got ${JSON.stringify(this.topics)}`, {
        key: 'notifications.topics',
      });
    }
    this.serializer = options.serializer ?? new NoOpSerializer();
    this.retry = options.retry ?? conf.retry;
    if (!Number.isInteger(this.retry) || this.retry < -1)
      throw new InvalidArgument(`retry must be -1 (until rpc.responseTimeout), 0 (none) or a number of attempts, got ${this.retry}`);
    this.routing = options.routing === undefined ? undefined : checkRoutingConfig(options.routing, 'the routing option', 'routing');
  }

  /** A notifier with another publisher id or retry, sharing everything else (oslo's `prepare`). */
  prepare(overrides: { publisherId?: string; retry?: number }): Notifier {
    assertOptions(overrides, PREPARE_OPTIONS, 'Notifier.prepare()');
    return new Notifier(this.transport, {
      ...this.options,
      publisherId: overrides.publisherId ?? this.publisherId,
      retry: overrides.retry ?? this.retry,
      ...(this.routing ? { routing: this.routing } : {}),
    });
  }

  /** False when the only driver is `noop`: callers may skip building payloads. */
  isEnabled(): boolean {
    return this.drivers.some((d) => d !== 'noop');
  }

  /** Sends `eventType` at priority `audit`; settles once the broker has it. */
  audit(ctx: Context, eventType: string, payload: unknown): Promise<void> {
    return this.notify(ctx, eventType, payload, 'audit');
  }
  /** Sends `eventType` at priority `debug`; settles once the broker has it. */
  debug(ctx: Context, eventType: string, payload: unknown): Promise<void> {
    return this.notify(ctx, eventType, payload, 'debug');
  }
  /** Sends `eventType` at priority `info`; settles once the broker has it. */
  info(ctx: Context, eventType: string, payload: unknown): Promise<void> {
    return this.notify(ctx, eventType, payload, 'info');
  }
  /** Sends `eventType` at priority `warn`; settles once the broker has it. */
  warn(ctx: Context, eventType: string, payload: unknown): Promise<void> {
    return this.notify(ctx, eventType, payload, 'warn');
  }
  /** Alias of {@link warn}, as oslo has. */
  warning(ctx: Context, eventType: string, payload: unknown): Promise<void> {
    return this.notify(ctx, eventType, payload, 'warn');
  }
  /** Sends `eventType` at priority `error`; settles once the broker has it. */
  error(ctx: Context, eventType: string, payload: unknown): Promise<void> {
    return this.notify(ctx, eventType, payload, 'error');
  }
  /** Sends `eventType` at priority `critical`; settles once the broker has it. */
  critical(ctx: Context, eventType: string, payload: unknown): Promise<void> {
    return this.notify(ctx, eventType, payload, 'critical');
  }
  /** Sends `eventType` at priority `sample`; settles once the broker has it. */
  sample(ctx: Context, eventType: string, payload: unknown): Promise<void> {
    return this.notify(ctx, eventType, payload, 'sample');
  }

  /** Sends one notification at `priority`. */
  async notify(ctx: Context, eventType: string, payload: unknown, priority: Priority): Promise<void> {
    if (!PRIORITIES.includes(priority)) {
      throw new InvalidArgument(`unknown priority '${String(priority)}'; use one of ${PRIORITIES.join(', ')}`);
    }
    if (typeof eventType !== 'string' || eventType === '') throw new InvalidArgument('a notification needs an event type');
    const serializedPayload = this.serializer.serializeEntity(ctx ?? {}, payload);
    const safeCtx = this.serializer.serializeContext(sanitizeContext(ctx ?? {}));
    const message: NotificationMessage = {
      message_id: uuid(),
      publisher_id: this.publisherId,
      event_type: eventType,
      priority: priority.toUpperCase(),
      payload: serializedPayload,
      timestamp: osloTimestamp(),
    };
    await Promise.all(this.driversFor(eventType, priority).map((d) => this.emit(d, safeCtx, message, priority)));
  }

  /**
   * The drivers a notification of `eventType` at `priority` goes to: the configured ones, with
   * `routing` replaced by the drivers its rules select (none when no rule matches: oslo then
   * drops the notification silently). `noop` is listed when configured; it sends nothing.
   */
  driversFor(eventType: string, priority: Priority): string[] {
    const out = new Set<string>();
    for (const d of this.drivers) {
      if (d !== 'routing') {
        out.add(d);
        continue;
      }
      for (const group of Object.values(this.routingConfig())) {
        for (const [driver, rules] of Object.entries(group)) {
          const checks: boolean[] = [];
          if (rules.accepted_events) checks.push(rules.accepted_events.some((p) => compiledGlob(p).test(eventType)));
          if (rules.accepted_priorities) checks.push(rules.accepted_priorities.some((p) => compiledGlob(p.toLowerCase()).test(priority)));
          if (checks.every(Boolean) && driver !== 'routing') out.add(driver);
        }
      }
    }
    return [...out];
  }

  private routingConfig(): RoutingConfig {
    if (this.routing) return this.routing;
    const file = this.transport.config.notifications.routingConfig;
    if (!file)
      throw new ConfigError('the routing notification driver needs notifications.routingConfig (a JSON file) or the routing option', {
        key: 'notifications.routingConfig',
      });
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    } catch (err) {
      throw new ConfigError(`cannot read notifications.routingConfig ${file}: ${(err as Error).message}`, {
        key: 'notifications.routingConfig',
        cause: err,
      });
    }
    this.routing = checkRoutingConfig(parsed, file, 'notifications.routingConfig');
    return this.routing;
  }

  private async emit(driver: string, ctx: Context, message: NotificationMessage, priority: Priority): Promise<void> {
    switch (driver) {
      case 'noop':
        return;
      case 'log': {
        const name = `oslo.messaging.notification.${message.event_type}`;
        // As oslo's LogDriver (strutils.mask_dict_password): a log is no place for secrets.
        const line = JSON.stringify(maskSecrets(message));
        if (this.options.log) this.options.log(name, priority, line);
        else process.stderr.write(`${priority.toUpperCase()} ${name} ${line}\n`);
        return;
      }
      case 'messaging':
      case 'messagingv2': {
        const envelope = driver === 'messagingv2' ? '2.0' : '1.0';
        await Promise.all(
          this.topics.map((topic) =>
            this.transport.driver.sendNotification(
              new Target({ topic: `${topic}.${priority}`, ...(this.options.exchange ? { exchange: this.options.exchange } : {}) }),
              ctx,
              message as unknown as Record<string, unknown>,
              { retry: this.retry, envelope },
            ),
          ),
        );
        return;
      }
      default:
        throw new ConfigError(`unknown notification driver '${driver}'`, { key: 'notifications.driver' });
    }
  }
}

/** oslo.utils' `_SANITIZE_KEYS`: a key holding any of them (case-insensitive) has its value masked. */
const SECRET_KEYS = [
  'adminpass',
  'admin_pass',
  'password',
  'admin_password',
  'auth_token',
  'new_pass',
  'auth_password',
  'secret_uuid',
  'secret',
  'sys_pswd',
  'token',
  'configdrive',
  'chappassword',
  'encrypted_key',
  'private_key',
  'fernetkey',
  'sslkey',
  'passphrase',
  'cephclusterfsid',
  'octaviaheartbeatkey',
  'rabbitcookie',
  'cephmanilaclientkey',
  'pacemakerremoteauthkey',
  'designaterndckey',
  'cephadminkey',
  'heatauthencryptionkey',
  'cephclientkey',
  'keystonecredential',
  'barbicansimplecryptokek',
  'cephrgwkey',
  'swifthashsuffix',
  'migrationsshkey',
  'cephmdskey',
  'cephmonkey',
];

// oslo.utils' strutils patterns, `%(key)s` filled in per key: matched case-insensitively and
// across lines (re.DOTALL | re.IGNORECASE), group 1 (and 2) kept around the masked value.
const FORMAT_1 = [(k: string) => `(${k}[0-9]*\\s*[=]\\s*)[^\\s^'^"]+`];
const FORMAT_2 = [
  (k: string) => `(${k}[0-9]*\\s*[=]\\s*["'])[^"']*(["'])`,
  (k: string) => `(${k}[0-9]*\\s*[=]\\s*["])[^"]*(["])`,
  (k: string) => `(${k}[0-9]*\\s*[=]\\s*['])[^']*(['])`,
  (k: string) => `(${k}[0-9]*\\s+["'])[^"']*(["'])`,
  (k: string) => `([-]{2}${k}[0-9]*\\s+)[^'^"^=^\\s]+([\\s]*)`,
  (k: string) => `(<${k}[0-9]*>)[^<]*(</${k}[0-9]*>)`,
  (k: string) => `(["']${k}[0-9]*["']\\s*:\\s*["'])[^"']*(["'])`,
  (k: string) => `(['"][^"']*${k}[0-9]*['"]\\s*:\\s*u?['"])[^"']*(['"])`,
  (k: string) => `(['"][^'"]*${k}[0-9]*['"]\\s*,\\s*'--?[A-z]+'\\s*,\\s*u?['"])[^"']*(['"])`,
  (k: string) => `(${k}[0-9]*\\s*--?[A-z]+\\s*)\\S+(\\s*)`,
];
const FORMAT_WILDCARD = [(k: string) => `(['"][^"']*${k}[0-9]*['"]\\s*:\\s*u?['"].*['"])[^"']*(['"])`];
let maskPatterns: Map<string, { two: RegExp[]; one: RegExp[]; wildcard: RegExp[] }> | undefined;

/**
 * oslo.utils' `mask_password`: secrets written inside text (`password=…`, `"token": "…"`,
 * `--password …`, `<password>…</password>`) replaced by `***`, as oslo's log notification
 * driver masks string values. Compiled on first use.
 */
export function maskPassword(text: string): string {
  maskPatterns ??= new Map(
    SECRET_KEYS.map((k) => [
      k,
      {
        two: FORMAT_2.map((f) => new RegExp(f(k), 'gsi')),
        one: FORMAT_1.map((f) => new RegExp(f(k), 'gsi')),
        wildcard: FORMAT_WILDCARD.map((f) => new RegExp(f(k), 'gsi')),
      },
    ]),
  );
  const lower = text.toLowerCase();
  let out = text;
  for (const [k, p] of maskPatterns) {
    if (!lower.includes(k)) continue;
    for (const re of p.two) out = out.replace(re, '$1***$2');
    for (const re of p.one) out = out.replace(re, '$1***');
    for (const re of p.wildcard) out = out.replace(re, '$1');
  }
  return out;
}

/**
 * `value` with the values of secret-looking keys replaced by `***`, in nested objects and lists
 * too (oslo's mask_dict_password recurses into dicts only), and secrets written inside string
 * values masked as {@link maskPassword} masks them. A copy; `value` is left alone.
 */
export function maskSecrets(value: unknown): unknown {
  if (typeof value === 'string') return maskPassword(value);
  if (Array.isArray(value)) return value.map(maskSecrets);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const lower = k.toLowerCase();
    const masked = SECRET_KEYS.some((s) => lower.includes(s)) ? '***' : maskSecrets(v);
    Object.defineProperty(out, k, { value: masked, enumerable: true, writable: true, configurable: true });
  }
  return out;
}
