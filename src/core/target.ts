import { InvalidTarget } from './errors.js';

/** The fields of a {@link Target}; all optional, as in oslo.messaging. */
export interface TargetFields {
  /** Exchange the topic lives in; defaults to the transport's control exchange (`openstack`). */
  exchange?: string;
  /** Topic: the name servers listen on and clients address. */
  topic?: string;
  /** Namespace of the endpoint's methods; requests and endpoints must agree on it. */
  namespace?: string;
  /** API version, `X.Y` (or `X.Y.Z`, as oslo): a request is accepted by an endpoint of the same major and equal or higher minor. */
  version?: string;
  /** One server on the topic (clients), or this server's name (servers). */
  server?: string;
  /** Cast to every server listening on the topic. Not valid for calls. */
  fanout?: boolean;
}

/** Overrides for {@link Target.merge}: `null` clears a field, `undefined` keeps it. */
export type TargetOverrides = { [K in keyof TargetFields]?: TargetFields[K] | null };

const VERSION_RE = /^\d+\.\d+(\.\d+)?$/;

/**
 * The longest name AMQP 0-9-1 carries: routing keys, exchange and queue names are short
 * strings of at most 255 bytes. Refused in every Target, on every driver, because memory:// and
 * AMQP 1.0 carry any length: code tested there failed only once it met RabbitMQ, with a
 * MessageDeliveryFailure or a bare TransportError.
 */
export const MAX_NAME_BYTES = 255;
/**
 * The longest topic: a server's fanout queue on RabbitMQ is `<topic>_fanout_<32 hex digits>`
 * (as oslo names it), 40 bytes more than the topic, and must fit too.
 */
export const MAX_TOPIC_BYTES = MAX_NAME_BYTES - '_fanout_'.length - 32;
const FIELDS = ['exchange', 'topic', 'namespace', 'version', 'server', 'fanout'] as const;

/**
 * Where a message goes, or what a server listens on: exchange, topic, namespace, version,
 * server and fanout. Immutable; {@link Target.merge} returns a new one.
 */
export class Target implements TargetFields {
  /** The exchange the topic lives in; undefined: the transport's control exchange (`openstack`). */
  readonly exchange?: string;
  /** The service's topic: servers listen on it, callers address it. */
  readonly topic?: string;
  /** The endpoint namespace a call is for; undefined: the default namespace. */
  readonly namespace?: string;
  /** The API version: `X.Y` (or `X.Y.Z`); a server accepts calls up to the minor version it serves. */
  readonly version?: string;
  /** One server of the topic; undefined: any of them. */
  readonly server?: string;
  /** Cast to every server of the topic. */
  readonly fanout?: boolean;

  constructor(fields: TargetFields = {}) {
    if (fields === null || typeof fields !== 'object') {
      throw new InvalidTarget(`a target is built from an object of fields, got ${typeof fields}`);
    }
    for (const key of Object.keys(fields)) {
      if (!(FIELDS as readonly string[]).includes(key)) {
        throw new InvalidTarget(`unknown target field '${key}' (known: ${FIELDS.join(', ')})`);
      }
    }
    for (const key of ['exchange', 'topic', 'namespace', 'server'] as const) {
      const value = fields[key];
      if (value === undefined || value === null) continue;
      if (typeof value !== 'string' || value.length === 0) {
        throw new InvalidTarget(`target ${key} must be a non-empty string, got ${JSON.stringify(value)}`);
      }
      // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused
      if (/[\s\x00-\x1f]/.test(value)) {
        throw new InvalidTarget(`target ${key} ${JSON.stringify(value)} must not contain whitespace or control characters`);
      }
      // RabbitMQ reads a routing key's `*` and `#` words as wildcards: a server on topic `#` binds
      // to every request on the exchange and runs each one beside its real server.
      if ((key === 'topic' || key === 'server') && value.split('.').some((w) => w === '*' || w === '#')) {
        throw new InvalidTarget(
          `target ${key} ${JSON.stringify(value)} must not have '*' or '#' as a dot-separated word (AMQP routing-key wildcards)`,
        );
      }
      const limit = key === 'topic' ? MAX_TOPIC_BYTES : key === 'namespace' ? undefined : MAX_NAME_BYTES;
      const bytes = Buffer.byteLength(value, 'utf8');
      if (limit !== undefined && bytes > limit) {
        throw new InvalidTarget(
          `target ${key} ${JSON.stringify(`${value.slice(0, 24)}…`)} is ${bytes} bytes long in UTF-8, more than the ${limit} RabbitMQ can carry${key === 'topic' ? ` (a server's fanout queue there is '<topic>_fanout_<32 hex digits>', at most ${MAX_NAME_BYTES} bytes)` : ''}`,
        );
      }
      this[key] = value;
    }
    // A server's own queue, and the routing key of a call or cast to it, is `<topic>.<server>`.
    if (this.topic !== undefined && this.server !== undefined) {
      const bytes = Buffer.byteLength(`${this.topic}.${this.server}`, 'utf8');
      if (bytes > MAX_NAME_BYTES) {
        throw new InvalidTarget(
          `target topic and server make the ${bytes}-byte routing key and queue name '<topic>.<server>', more than the ${MAX_NAME_BYTES} RabbitMQ can carry`,
        );
      }
    }
    if (fields.version !== undefined && fields.version !== null) {
      if (typeof fields.version !== 'string' || !VERSION_RE.test(fields.version)) {
        throw new InvalidTarget(
          `target version must look like 'X.Y' or 'X.Y.Z' (e.g. '1.3', as oslo), got ${JSON.stringify(fields.version)}`,
        );
      }
      this.version = fields.version;
    }
    if (fields.fanout !== undefined && fields.fanout !== null) {
      if (typeof fields.fanout !== 'boolean') {
        throw new InvalidTarget(`target fanout must be a boolean, got ${JSON.stringify(fields.fanout)}`);
      }
      this.fanout = fields.fanout;
    }
    Object.freeze(this);
  }

  /** A new Target with `overrides` applied: a `null` value clears that field. */
  merge(overrides: TargetOverrides): Target {
    const fields: Record<string, unknown> = {};
    for (const key of FIELDS) {
      const o = overrides[key];
      const value = o === undefined ? this[key] : o === null ? undefined : o;
      if (value !== undefined) fields[key] = value;
    }
    return new Target(fields as TargetFields);
  }

  /** Throws {@link InvalidTarget} unless this target can address a call. */
  assertCallable(): void {
    if (!this.topic) throw new InvalidTarget(`a call requires a topic: ${this}`);
    if (this.fanout) throw new InvalidTarget(`a call cannot be fanout (use cast): ${this}`);
  }

  /** Throws {@link InvalidTarget} unless this target can address a cast. */
  assertCastable(): void {
    if (!this.topic) throw new InvalidTarget(`a cast requires a topic: ${this}`);
    if (this.fanout && this.server) {
      throw new InvalidTarget(`a target cannot be both fanout and directed to server '${this.server}': ${this}`);
    }
  }

  /** Throws {@link InvalidTarget} unless a server can listen on this target. */
  assertListenable(): void {
    if (!this.topic || !this.server) {
      throw new InvalidTarget(`a server's target needs both a topic and a server name: ${this}`);
    }
  }

  /** Field values as a plain object (undefined fields left out). */
  toJSON(): TargetFields {
    const out: Record<string, unknown> = {};
    for (const key of FIELDS) if (this[key] !== undefined) out[key] = this[key];
    return out as TargetFields;
  }

  /** `<topic>[.<server>]` with the other fields that are set, for logs and error messages. */
  toString(): string {
    const parts = FIELDS.filter((k) => this[k] !== undefined).map((k) => `${k}=${this[k]}`);
    return `<Target ${parts.join(', ')}>`;
  }
}

/** oslo's rule: same major, and the requested minor no higher than the implemented one. */
export function versionIsCompatible(implemented: string, requested: string): boolean {
  const imp = implemented.split('.').map(Number);
  const req = requested.split('.').map(Number);
  if (req[0] !== imp[0]) return false;
  if ((req[1] ?? 0) > (imp[1] ?? 0)) return false;
  if ((req[1] ?? 0) === (imp[1] ?? 0) && (req[2] ?? 0) > (imp[2] ?? 0)) return false;
  return true;
}
