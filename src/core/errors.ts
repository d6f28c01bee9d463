/**
 * hermod's error hierarchy. Every error has a stable `code` (tests and callers branch on it,
 * never on message text) and an optional `cause`. `instanceof` works across duplicate
 * installs of hermod because each class brands its instances with a global symbol.
 */

const BRAND = Symbol.for('hermod.error.codes');

type Branded = { [BRAND]?: Set<string> };

/** Base class of every error hermod throws. */
export class HermodError extends Error {
  /** Stable machine-readable code, e.g. `HERMOD_ERR_TIMEOUT`. */
  get code(): string {
    return (this.constructor as typeof HermodError).CODE;
  }

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }

  // `this` is the class instanceof was asked about (a subclass, not HermodError): it must stay `this`.
  /** Answers by the codes an instance is branded with, so that errors from another copy of hermod match. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (value === null || typeof value !== 'object') return false;
    const codes = (value as Branded)[BRAND];
    // biome-ignore lint/complexity/noThisInStatic: the subclass instanceof was called on
    const probe = (this as unknown as { CODE?: string }).CODE;
    if (codes && probe) return codes.has(probe);
    // biome-ignore lint/complexity/noThisInStatic: the subclass instanceof was called on
    return Function.prototype[Symbol.hasInstance].call(this, value);
  }

  /** The code of this class; subclasses override it. */
  static readonly CODE: string = 'HERMOD_ERR';
}

function define(cls: abstract new (...args: never[]) => HermodError, code: string): void {
  Object.defineProperty(cls, 'CODE', { value: code });
}

// Each instance records the codes of all its ancestors so that the branded instanceof
// check above answers like the prototype chain would.
Object.defineProperty(HermodError.prototype, BRAND, {
  get(this: HermodError) {
    const codes = new Set<string>();
    let proto = Object.getPrototypeOf(this);
    while (proto && proto !== Error.prototype) {
      const ctor = proto.constructor as { CODE?: string };
      if (ctor?.CODE) codes.add(ctor.CODE);
      proto = Object.getPrototypeOf(proto);
    }
    return codes;
  },
});

/** A configuration value or transport URL is invalid; the message names the key. */
export class ConfigError extends HermodError {
  /** The offending configuration key or URL part, when known. */
  readonly key: string | undefined;
  constructor(message: string, options?: { cause?: unknown; key?: string }) {
    super(message, options);
    this.key = options?.key;
  }
}
define(ConfigError, 'HERMOD_ERR_CONFIG');

/** A Target cannot be used for the requested operation. */
export class InvalidTarget extends HermodError {}
define(InvalidTarget, 'HERMOD_ERR_INVALID_TARGET');

/** Arguments given to a call or cast are not usable (not a plain object, say). */
export class InvalidArgument extends HermodError {}
define(InvalidArgument, 'HERMOD_ERR_INVALID_ARGUMENT');

/**
 * The longest delay Node's timers take (2³¹−1 ms, about 24.8 days): a longer one fires after
 * 1 ms with a TimeoutOverflowWarning, so a longer timeout would end a call at once.
 */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * Throws {@link InvalidArgument} unless `value` (an option named `name`) is undefined or a number
 * of ms ≥ 0 (> 0 without `allowZero`) and at most {@link MAX_TIMER_MS}.
 */
export function assertMs(name: string, value: number | undefined, allowZero: boolean): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new InvalidArgument(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} number of milliseconds, got ${value}`);
  }
  if (value > MAX_TIMER_MS) {
    throw new InvalidArgument(`${name} must be at most ${MAX_TIMER_MS} ms (about 24.8 days, the longest timer Node sets), got ${value}`);
  }
}

/** A value could not be encoded for the wire (BigInt, a cycle, ...). */
export class SerializationError extends HermodError {}
define(SerializationError, 'HERMOD_ERR_SERIALIZATION');

/** A call received no reply within its timeout, or its call monitor saw no heartbeat. */
export class MessagingTimeout extends HermodError {}
define(MessagingTimeout, 'HERMOD_ERR_TIMEOUT');

/** The server has no callable method of that name (or it is not public). */
export class NoSuchMethod extends HermodError {
  /** The method the caller asked for. */
  readonly method: string;
  constructor(method: string, options?: { cause?: unknown; message?: string }) {
    super(options?.message ?? `Endpoint does not support RPC method ${method}`, options);
    this.method = method;
  }
}
define(NoSuchMethod, 'HERMOD_ERR_NO_SUCH_METHOD');

/** No endpoint accepts the requested namespace and version. */
export class UnsupportedVersion extends HermodError {
  /** The version the caller asked for (undefined: none, read as 1.0). */
  readonly version: string | undefined;
  /** The method the caller asked for, when known. */
  readonly method: string | undefined;
  constructor(version: string | undefined, method?: string, options?: { cause?: unknown; message?: string }) {
    super(options?.message ?? `Endpoint does not support RPC version ${version ?? '1.0'}. Attempted method: ${method}`, options);
    this.version = version;
    this.method = method;
  }
}
define(UnsupportedVersion, 'HERMOD_ERR_UNSUPPORTED_VERSION');

/** A client tried to send a version above its `versionCap`. */
export class RPCVersionCapError extends HermodError {
  constructor(
    /** The version asked for; undefined when the request named none (a cap then refuses it, as oslo's). */
    readonly version: string | undefined,
    /** The highest version the client may send. */
    readonly versionCap: string,
  ) {
    super(
      `Requested message version, ${version ?? 'None'} is incompatible. It needs to be equal in major version and less than or equal in minor version as the specified version cap ${versionCap}.`,
    );
  }
}
define(RPCVersionCapError, 'HERMOD_ERR_VERSION_CAP');

/** The message envelope carries a version this implementation cannot read. */
export class UnsupportedEnvelopeVersion extends HermodError {}
define(UnsupportedEnvelopeVersion, 'HERMOD_ERR_UNSUPPORTED_ENVELOPE');

/** An incoming message could not be decoded (bad JSON, missing fields, wrong types). */
export class MalformedMessage extends HermodError {}
define(MalformedMessage, 'HERMOD_ERR_MALFORMED_MESSAGE');

/**
 * Incoming JSON nests arrays and objects deeper than the configured `maxJsonDepth`: refused
 * before it is parsed, since parsing and walking such text costs far more than its size.
 */
export class NestingTooDeep extends MalformedMessage {
  /** What crosses the wire beside the message. */
  readonly kwargs: { limit: number };
  constructor(
    /** The nesting depth allowed. */
    readonly limit: number,
    what = 'message',
    /** Where the limit comes from, when it is not maxJsonDepth itself. */
    basis = 'maxJsonDepth',
  ) {
    super(`${what} nests arrays and objects deeper than ${limit} levels (${basis})`);
    this.kwargs = { limit };
  }
}
define(NestingTooDeep, 'HERMOD_ERR_NESTING_TOO_DEEP');

/** A message is larger than the configured maximum. */
export class MessageTooLarge extends HermodError {
  constructor(
    /** The message's size in bytes. */
    readonly size: number,
    /** The largest size allowed, in bytes. */
    readonly limit: number,
  ) {
    super(`message of ${size} bytes exceeds the limit of ${limit} bytes`);
  }
}
define(MessageTooLarge, 'HERMOD_ERR_MESSAGE_TOO_LARGE');

/** The broker or peer did not accept a message (rejected, released past retries, nacked). */
export class MessageDeliveryFailure extends HermodError {}
define(MessageDeliveryFailure, 'HERMOD_ERR_DELIVERY_FAILURE');

/** A mandatory message could not be routed to any queue or receiver. */
export class MessageUndeliverable extends MessageDeliveryFailure {}
define(MessageUndeliverable, 'HERMOD_ERR_UNDELIVERABLE');

/** The connection to the broker failed or was lost; the message says which host and why. */
export class TransportError extends HermodError {
  /**
   * Set when the send's own deadline passed during the first connect attempt, which had not
   * failed yet (a slow connect, not a failing one): the same send with a longer deadline may
   * succeed.
   */
  stillConnecting?: boolean;
  /** Set when the send's connection retries (`retry`) ran out: "gave up after N attempts". */
  gaveUp?: boolean;
}
define(TransportError, 'HERMOD_ERR_TRANSPORT');

/**
 * The broker or router refused this client: wrong user name or password, a SASL mechanism it
 * does not offer, or no access to the virtual host. Retrying with the same credentials cannot
 * help, so waiting sends and calls fail with it at once.
 */
export class AccessRefused extends TransportError {}
define(AccessRefused, 'HERMOD_ERR_ACCESS_REFUSED');

/**
 * The host of a transport URL answers in the other AMQP version: an AMQP 1.0 router behind a
 * `rabbit://` URL, or a RabbitMQ (0-9-1) behind an `amqp://` one. A configuration mistake (the
 * wrong URL or port), so it is a {@link ConfigError} on `transportUrl` and is not retried.
 */
export class WrongProtocol extends ConfigError {
  /** `host:port` that answered. */
  readonly host: string;
  /** What the host speaks. */
  readonly speaks: 'AMQP 1.0' | 'AMQP 0-9-1';
  constructor(message: string, host: string, speaks: 'AMQP 1.0' | 'AMQP 0-9-1') {
    super(message, { key: 'transportUrl' });
    this.host = host;
    this.speaks = speaks;
  }
}
define(WrongProtocol, 'HERMOD_ERR_WRONG_PROTOCOL');

/** The object was closed or stopped and can no longer be used for this operation. */
export class ClosedError extends HermodError {}
define(ClosedError, 'HERMOD_ERR_CLOSED');

/** A stopping server abandoned the request at its wait() deadline. */
export class ServerStopped extends HermodError {}
define(ServerStopped, 'HERMOD_ERR_SERVER_STOPPED');

/** A client reached its bound on in-flight calls and was configured to fail fast. */
export class TooManyInFlight extends HermodError {}
define(TooManyInFlight, 'HERMOD_ERR_TOO_MANY_IN_FLIGHT');

/**
 * An exception raised by the remote side that the client does not rebuild as its own class
 * (oslo.messaging's RemoteError). `excType` is the remote class name, `value` its message.
 */
export class RemoteError extends HermodError {
  /** Remote exception class name, e.g. `ValueError`. */
  readonly excType: string;
  /** Remote exception message. */
  readonly value: string;
  /** Remote module (Python module path, or `hermod` for hermod peers). */
  readonly module: string;
  /** Remote traceback lines, when the server sends them. */
  readonly traceback: string[];
  /**
   * The exception's keyword arguments as the server sent them (oslo's failure `kwargs`: what
   * a Python exception was built with, an error's own `kwargs` field on a hermod server); `{}`
   * when none. A peer's data: read it as untrusted JSON.
   */
  readonly kwargs: Record<string, unknown>;
  constructor(
    excType: string,
    value: string,
    options?: { module?: string; traceback?: string[]; kwargs?: Record<string, unknown>; cause?: unknown },
  ) {
    super(`Remote error: ${excType} ${value}`, options);
    this.excType = excType;
    this.value = value;
    this.module = options?.module ?? '';
    this.traceback = options?.traceback ?? [];
    this.kwargs = options?.kwargs ?? {};
  }
}
define(RemoteError, 'HERMOD_ERR_REMOTE');

// The prototypes whose `name` says only which built-in an error derives from, never its class.
const BUILTIN_ERROR_PROTOTYPES: ReadonlySet<object> = new Set(
  [Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError, AggregateError].map((c) => c.prototype),
);

/**
 * The class name an error is known by on the wire, in job records and in metrics labels, as
 * oslo names an exception by `ex.__class__.__name__`. That is `err.name` when the error or a
 * class of its own sets it, and otherwise its constructor's name: `class QuotaExceeded extends
 * Error {}` inherits `name` 'Error' from `Error.prototype`, and was sent as class `Error`, so a
 * caller could neither rebuild it nor tell it from any other error. Never throws (an error's
 * fields may be throwing getters); 'Error' when nothing can be read.
 */
export function errorClassName(err: Error): string {
  try {
    const name: unknown = err.name;
    if (typeof name !== 'string' || !name) return 'Error';
    let owner: object | null = err;
    while (owner !== null && !Object.hasOwn(owner, 'name')) owner = Object.getPrototypeOf(owner);
    if (owner === null || !BUILTIN_ERROR_PROTOTYPES.has(owner)) return name;
    const ctorName: unknown = (err.constructor as { name?: unknown } | undefined)?.name;
    return typeof ctorName === 'string' && ctorName ? ctorName : name;
  } catch {
    return 'Error';
  }
}

/**
 * Text for any thrown value. `String()` itself throws for some (an object without a prototype,
 * one whose toString throws), and a handler of the first throw that throws again lost the
 * call's reply and its server slot.
 */
export function textOf(value: unknown): string {
  try {
    return String(value);
  } catch {
    try {
      return JSON.stringify(value) ?? Object.prototype.toString.call(value);
    } catch {
      return Object.prototype.toString.call(value);
    }
  }
}
