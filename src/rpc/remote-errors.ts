import {
  errorClassName,
  HermodError,
  InvalidArgument,
  MalformedMessage,
  MessageTooLarge,
  MessagingTimeout,
  NestingTooDeep,
  NoSuchMethod,
  RemoteError,
  SerializationError,
  ServerStopped,
  textOf,
  UnsupportedVersion,
} from '../core/errors.js';
import type { Failure } from '../core/failure.js';
import { peerText } from '../core/plain.js';

/** Builds a local error from a remote failure; registered per (module, class). */
export type RemoteErrorFactory = (failure: Failure) => Error;

const EXCEPTIONS_MODULES = new Set(['builtins', 'exceptions']);
/** Module name of failures for hermod's own error classes (the classes this package defines). */
export const HERMOD_MODULE = 'hermod';
/**
 * Module name of failures for an endpoint's errors that name no module (`static remoteModule`).
 * Not {@link HERMOD_MODULE}: a client rebuilds hermod's classes by (module, class), so an app's
 * own `class NoSuchMethod extends Error` sent as `hermod` arrived as hermod's NoSuchMethod, its
 * message and meaning lost.
 */
export const ENDPOINT_MODULE = 'hermod.endpoint';
const OSLO_DISPATCHER = 'oslo_messaging.rpc.dispatcher';

const registry = new Map<string, RemoteErrorFactory>();
const key = (module: string, cls: string) => `${module}:${cls}`;

/**
 * Lets clients rebuild failures of class `cls` from `module` as local errors. The module must
 * also be in the client's allowed remote modules (`rpc.allowedRemoteExmods`) unless it is
 * `hermod`, {@link ENDPOINT_MODULE} (a hermod endpoint's errors that name no module) or
 * oslo.messaging's dispatcher, whose errors are always rebuilt.
 */
export function registerRemoteError(module: string, cls: string, factory: RemoteErrorFactory): void {
  registry.set(key(module, cls), factory);
}

/** hermod's own classes under {@link HERMOD_MODULE}: an endpoint's class of such a name is never rebuilt as one. */
const own = new Set<string>(['NoSuchMethod', 'UnsupportedVersion']);

/** Registers one of hermod's own classes (under {@link HERMOD_MODULE}); for hermod's modules, not applications. */
export function registerHermodError(cls: string, factory: RemoteErrorFactory): void {
  own.add(cls);
  registry.set(key(HERMOD_MODULE, cls), factory);
}

/**
 * The factory for a failure from `module`, across versions of hermod: a server older than
 * {@link ENDPOINT_MODULE} sends an app's errors as `hermod`, so a class registered under the
 * endpoint module is looked up for them too; and an app class registered under `hermod` the old
 * way still rebuilds what a newer server sends as the endpoint module's, unless it is one of
 * hermod's own names (the app's `NoSuchMethod` is never hermod's).
 */
function factoryFor(module: string, cls: string): RemoteErrorFactory | undefined {
  const found = registry.get(key(module, cls));
  if (found) return found;
  if (module === HERMOD_MODULE) return registry.get(key(ENDPOINT_MODULE, cls));
  if (module === ENDPOINT_MODULE && !own.has(cls)) return registry.get(key(HERMOD_MODULE, cls));
  return undefined;
}

const msg = (f: Failure) => peerText(f.message);
const firstArg = (f: Failure) => (Array.isArray(f.args) && typeof f.args[0] === 'string' ? f.args[0] : undefined);

// oslo's own dispatcher errors and hermod's map onto the same classes, so a hermod client
// sees NoSuchMethod whether a Python or a hermod server raised it.
// oslo's exceptions pass their formatted message to Exception.__init__, so `args` (what
// serialize_remote_exception sends) is that text, not the method or version: read them back out
// of it. hermod's servers send `[method]` and `[version]` (kwargs `method`).
const OSLO_NO_SUCH_METHOD = /^Endpoint does not support RPC method (.*)$/s;
const OSLO_UNSUPPORTED_VERSION = /^Endpoint does not support RPC version (.*?)\. Attempted method: (.*)$/s;
for (const module of [OSLO_DISPATCHER, HERMOD_MODULE]) {
  registerRemoteError(module, 'NoSuchMethod', (f) => {
    const arg = firstArg(f);
    const method = (arg !== undefined ? OSLO_NO_SUCH_METHOD.exec(arg)?.[1] : undefined) ?? arg ?? peerText(f.kwargs?.method);
    // The server's text may say where the method is served (a wrong namespace or version).
    const text = msg(f);
    return new NoSuchMethod(method, text ? { message: text } : undefined);
  });
  registerRemoteError(module, 'UnsupportedVersion', (f) => {
    const arg = firstArg(f);
    const oslo = arg !== undefined ? OSLO_UNSUPPORTED_VERSION.exec(arg) : null;
    const method = typeof f.kwargs?.method === 'string' ? f.kwargs.method : oslo?.[2];
    return new UnsupportedVersion(oslo ? oslo[1] : arg, method, { message: msg(f) });
  });
}
registerHermodError('MessagingTimeout', (f) => new MessagingTimeout(msg(f)));
registerHermodError('InvalidArgument', (f) => new InvalidArgument(msg(f)));
registerHermodError('ServerStopped', (f) => new ServerStopped(msg(f)));
registerHermodError('MalformedMessage', (f) => new MalformedMessage(msg(f)));
registerHermodError('SerializationError', (f) => new SerializationError(msg(f)));
registerHermodError('NestingTooDeep', (f) => {
  const limit = f.kwargs?.limit ?? /deeper than (\d+) levels/.exec(msg(f))?.[1];
  const err = new NestingTooDeep(Number(limit) || 0);
  err.message = msg(f);
  return err;
});
registerHermodError('MessageTooLarge', (f) => {
  const [size, limit] = Array.isArray(f.args) ? f.args : [];
  if (typeof size === 'number' && typeof limit === 'number') return new MessageTooLarge(size, limit);
  // Older hermod receivers sent the message as the only arg: read the sizes from it.
  const m = /of (\d+) bytes exceeds the limit of (\d+) bytes/.exec(msg(f));
  return new MessageTooLarge(Number(m?.[1]) || 0, Number(m?.[2]) || 0);
});

/** The remote side of a rebuilt error: where it came from and its trace. */
export interface RemoteOrigin {
  /** The module the server named (`builtins`, `nova.exception`, `hermod`, `hermod.endpoint`). */
  module: string;
  /** The class the server named. */
  class: string;
  /** The server's traceback lines; empty unless it sends them. */
  traceback: string[];
  /** The exception's keyword arguments as the server sent them (a peer's data); `{}` when none. */
  kwargs: Record<string, unknown>;
}

/** Options for turning local errors into failures. */
export interface SerializeFailureOptions {
  /** Send the stack as `tb` (oslo always does; hermod only when asked). */
  includeTraceback?: boolean;
}

/**
 * Turns anything thrown by an endpoint into oslo's failure object. Never throws: a thrown value
 * whose fields cannot be read (a throwing getter, a hostile Proxy) still becomes a failure, since
 * the caller must get a reply and the server must release the call's slot.
 */
export function serializeFailure(thrown: unknown, opts: SerializeFailureOptions = {}): Failure {
  try {
    return build(thrown, opts);
  } catch (err) {
    const why = `an error was thrown that could not be read (${textOf(err)})`;
    return { class: 'UnreadableError', module: HERMOD_MODULE, message: why, tb: [], args: [why], kwargs: {} };
  }
}

function build(thrown: unknown, opts: SerializeFailureOptions): Failure {
  if (thrown instanceof NoSuchMethod) {
    return failure(OSLO_DISPATCHER, 'NoSuchMethod', thrown, [thrown.method], {}, opts);
  }
  if (thrown instanceof UnsupportedVersion) {
    return failure(
      OSLO_DISPATCHER,
      'UnsupportedVersion',
      thrown,
      [thrown.version ?? '1.0'],
      thrown.method === undefined ? {} : { method: thrown.method },
      opts,
    );
  }
  if (thrown instanceof MessageTooLarge) {
    return failure(HERMOD_MODULE, 'MessageTooLarge', thrown, [thrown.size, thrown.limit], {}, opts);
  }
  if (thrown instanceof RemoteError) {
    // Re-raising a remote error keeps its original identity, as oslo's _Remote suffix does.
    return {
      class: thrown.excType,
      module: thrown.module,
      message: thrown.value,
      tb: thrown.traceback,
      args: [thrown.value],
      kwargs: thrown.kwargs,
    };
  }
  if (thrown instanceof Error) {
    const origin = (thrown as { remote?: RemoteOrigin }).remote;
    if (origin) return failure(origin.module, origin.class, thrown, [messageOf(thrown)], origin.kwargs ?? {}, opts);
    const ctor = thrown.constructor as { remoteModule?: unknown } | undefined;
    const module = typeof ctor?.remoteModule === 'string' ? ctor.remoteModule : isHermodClass(thrown) ? HERMOD_MODULE : ENDPOINT_MODULE;
    const kwargs = (thrown as { kwargs?: unknown }).kwargs;
    const name = errorClassName(thrown);
    return failure(
      module,
      name,
      thrown,
      name === NON_ERROR && Array.isArray((thrown as { args?: unknown }).args)
        ? (thrown as unknown as { args: unknown[] }).args
        : [messageOf(thrown)],
      kwargs && typeof kwargs === 'object' ? (kwargs as Record<string, unknown>) : {},
      opts,
    );
  }
  // Thrown non-Errors (strings, objects, undefined) still say something useful.
  const text = thrownText(thrown);
  return { class: NON_ERROR, module: HERMOD_MODULE, message: `non-Error value thrown: ${text}`, tb: [], args: [text], kwargs: {} };
}

const NON_ERROR = 'NonErrorThrown';

/**
 * True when the error's own class is one hermod defines: each sets its own static CODE, a
 * `HERMOD_ERR…` one. A user's subclass of HermodError (exported) inherits CODE without owning it,
 * or owns one of its own: either way it is an endpoint's error.
 */
function isHermodClass(err: Error): boolean {
  if (!(err instanceof HermodError) || !Object.hasOwn(err.constructor, 'CODE')) return false;
  // An app's subclass with a code of its own (`static CODE = 'APP_NO_SUCH_DISH'`) is the app's.
  const code: unknown = (err.constructor as { CODE?: unknown }).CODE;
  return typeof code === 'string' && code.startsWith('HERMOD_ERR');
}

function thrownText(thrown: unknown): string {
  try {
    return typeof thrown === 'string' ? thrown : (JSON.stringify(thrown) ?? String(thrown));
  } catch {
    return textOf(thrown);
  }
}

/**
 * `thrown` as an Error: itself, or one that {@link serializeFailure} sends exactly as the thrown
 * value (class NonErrorThrown), for code that keeps the error to send it later (a job's end).
 */
export function errorOf(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  const text = thrownText(thrown);
  const err = new Error(`non-Error value thrown: ${text}`);
  err.name = NON_ERROR;
  // Writable: a job's store cuts it to its bound (it is the thrown value's whole text).
  Object.defineProperty(err, 'args', { value: [text], enumerable: false, writable: true, configurable: true });
  return err;
}

function failure(
  module: string,
  cls: string,
  err: Error,
  args: unknown[],
  kwargs: Record<string, unknown>,
  opts: SerializeFailureOptions,
): Failure {
  let tb: string[] = [];
  if (opts.includeTraceback) {
    try {
      const stack: unknown = err.stack;
      if (typeof stack === 'string') tb = stack.split('\n').map((l) => `${l}\n`);
    } catch {
      // A stack getter that throws leaves the failure without a traceback, nothing more.
    }
  }
  return { class: cls, module, message: messageOf(err), tb, args, kwargs };
}

/** An error's message as text, whatever an endpoint put there (an object, a throwing getter). */
function messageOf(err: Error): string {
  let m: unknown;
  try {
    m = err.message;
  } catch (e) {
    return `(the error's message could not be read: ${textOf(e)})`;
  }
  if (typeof m === 'string') return m;
  if (m === undefined) return '';
  try {
    return JSON.stringify(m) ?? textOf(m);
  } catch {
    return textOf(m);
  }
}

/**
 * Rebuilds a failure as a local error when its module is allowed and a factory is
 * registered; otherwise a {@link RemoteError}. The result carries `remote` ({@link RemoteOrigin}).
 */
export function deserializeFailure(f: Failure, allowedModules: readonly string[] = []): Error {
  if (typeof f !== 'object' || f === null || Array.isArray(f)) {
    // oslo fails on such a failure too (it reads it as a dict); it is no answer to take as one.
    return new MalformedMessage(
      `the reply carried a failure that is not an object: ${peerText(JSON.stringify(f) ?? String(f)).slice(0, 200)}`,
    );
  }
  const cls = typeof f.class === 'string' && f.class ? f.class : 'Exception';
  const module = typeof f.module === 'string' ? f.module : '';
  const tb = Array.isArray(f.tb) ? f.tb.map(peerText) : [];
  const kwargs = f.kwargs !== null && typeof f.kwargs === 'object' && !Array.isArray(f.kwargs) ? f.kwargs : {};
  const allowed =
    module === HERMOD_MODULE ||
    module === ENDPOINT_MODULE ||
    module === OSLO_DISPATCHER ||
    EXCEPTIONS_MODULES.has(module) ||
    allowedModules.includes(module);
  const factory = allowed ? factoryFor(EXCEPTIONS_MODULES.has(module) ? 'builtins' : module, cls) : undefined;
  let err: Error;
  if (factory) {
    try {
      err = factory(f);
    } catch {
      err = new RemoteError(cls, msg(f), { module, traceback: tb, kwargs });
    }
  } else {
    err = new RemoteError(cls, msg(f), { module, traceback: tb, kwargs });
  }
  Object.defineProperty(err, 'remote', { value: { module, class: cls, traceback: tb, kwargs } satisfies RemoteOrigin, enumerable: false });
  rebuilt.add(err);
  return err;
}

/** The errors {@link deserializeFailure} made: a `remote` field of an app's own error is not one. */
const rebuilt = new WeakSet<Error>();

/**
 * True for errors that crossed the wire (rebuilt or RemoteError). An error of the app's own with
 * a `remote` field (an address, null) is not one: the gateway took such an error from an
 * `authenticate` hook for a server's, and read `remote.module` off null. Errors rebuilt by another
 * copy of hermod in the process count by the shape of their origin.
 */
export function isRemote(err: unknown): err is Error & { remote: RemoteOrigin } {
  if (!(err instanceof Error)) return false;
  if (rebuilt.has(err)) return true;
  const o = (err as { remote?: unknown }).remote as Partial<RemoteOrigin> | null | undefined;
  return typeof o === 'object' && o !== null && typeof o.module === 'string' && typeof o.class === 'string' && Array.isArray(o.traceback);
}
