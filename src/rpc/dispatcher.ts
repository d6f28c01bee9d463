import { type Contracts, contractsOf, type MethodContract } from '../contracts/contract.js';
import { type CompiledContract, checkArgs, checkResult, compileContracts } from '../contracts/validator.js';
import { InvalidArgument, MalformedMessage, NoSuchMethod, UnsupportedVersion } from '../core/errors.js';
import { assertPlainData, setOwn } from '../core/plain.js';
import { type Context, NoOpSerializer, type Serializer } from '../core/serializer.js';
import { Target, versionIsCompatible } from '../core/target.js';

/**
 * An endpoint: an object whose public methods are callable as `method(ctx, args)`. Its
 * optional `target` gives the namespace and version it implements (default: no namespace,
 * version 1.0).
 */
export interface Endpoint {
  /** Namespace and version this endpoint implements. @default no namespace, version 1.0 */
  target?: Target;
  /** Per-method argument and result schemas; or a static `contracts` on the class (README "Contracts"). */
  contracts?: Contracts;
}

/** Decides whether `method` of `endpoint` may be called remotely; runs after the built-in checks. */
export type AccessPolicy = (endpoint: object, method: string) => boolean;

/** Allows every method the built-in checks allow. */
export const defaultAccessPolicy: AccessPolicy = () => true;

const OBJECT_NAMES = new Set(Object.getOwnPropertyNames(Object.prototype));

/**
 * Finds a callable method without running any getter: only data properties holding functions,
 * defined on the endpoint or its class chain below Object.prototype, and never `_private`,
 * `constructor`, `target` or Object.prototype names.
 */
export function findMethod(endpoint: object, name: string): ((...args: unknown[]) => unknown) | undefined {
  if (typeof name !== 'string' || name.length === 0) return undefined;
  if (name.startsWith('_') || name === 'constructor' || name === 'target' || OBJECT_NAMES.has(name)) return undefined;
  let proto: object | null = endpoint;
  while (proto && proto !== Object.prototype && proto !== Function.prototype) {
    const desc = Object.getOwnPropertyDescriptor(proto, name);
    if (desc) {
      if ('value' in desc && typeof desc.value === 'function') return desc.value as (...args: unknown[]) => unknown;
      return undefined;
    }
    proto = Object.getPrototypeOf(proto) as object | null;
  }
  return undefined;
}

/** The names {@link findMethod} finds on `endpoint`, sorted. */
export function methodNames(endpoint: object): string[] {
  const names = new Set<string>();
  let proto: object | null = endpoint;
  while (proto && proto !== Object.prototype && proto !== Function.prototype) {
    for (const n of Object.getOwnPropertyNames(proto)) if (findMethod(endpoint, n)) names.add(n);
    proto = Object.getPrototypeOf(proto) as object | null;
  }
  return [...names].sort();
}

/** What `describe` tells of one endpoint: where it is served and each callable method's contract, if any. */
export interface EndpointDescription {
  /** The endpoint's namespace; null for the default one. */
  namespace: string | null;
  /** The version it serves. */
  version: string;
  /** Each callable method and its contract (null: none declared). */
  methods: Record<string, MethodContract | null>;
}

/** Options of an {@link RPCDispatcher}. */
export interface DispatcherOptions {
  /** Check results against their contracts too (development and tests). @default false */
  validateResults?: boolean;
  /**
   * A method answered in every namespace and version the dispatcher serves where no endpoint has
   * one of that name: `method` of `endpoint` (one of the endpoints, its contract and the access
   * policy as for a call of it there) runs instead. The server's quiet `describe`, see
   * introspection.ts.
   */
  everywhere?: { name: string; endpoint: object; method: string };
  /** The namespace and version of an endpoint that declares no `target` of its own. @default none, 1.0 */
  defaultTarget?: Target;
}

/** A request after validation. */
export interface DispatchRequest {
  method: string;
  args: Record<string, unknown>;
  namespace: string | undefined;
  version: string;
}

/**
 * Checks the shape of an incoming request dict; throws MalformedMessage / InvalidArgument. Only
 * own, plain data gets through: a `__proto__` key anywhere in it is refused (core/plain.ts).
 */
export function parseRequest(message: Record<string, unknown>): DispatchRequest {
  assertPlainData(message, 'request');
  const { method, args, namespace, version } = message;
  if (typeof method !== 'string' || method.length === 0) {
    throw new MalformedMessage(`request has no method name (got ${JSON.stringify(method) ?? 'undefined'})`);
  }
  if (args !== undefined && args !== null && (typeof args !== 'object' || Array.isArray(args))) {
    throw new InvalidArgument(
      `arguments of ${method} must be an object of named arguments, got ${Array.isArray(args) ? 'an array' : typeof args}`,
    );
  }
  if (namespace !== undefined && namespace !== null && typeof namespace !== 'string') {
    throw new MalformedMessage(`namespace of ${method} must be a string, got ${typeof namespace}`);
  }
  if (version !== undefined && version !== null && (typeof version !== 'string' || !/^\d+\.\d+(\.\d+)?$/.test(version))) {
    throw new UnsupportedVersion(String(version), method, {
      message: `request version ${JSON.stringify(version)} of ${method} is not of the form X.Y`,
    });
  }
  return {
    method,
    args: (args ?? {}) as Record<string, unknown>,
    namespace: (namespace ?? undefined) as string | undefined,
    version: (version as string | undefined) ?? '1.0',
  };
}

function namespaceText(namespace: string | undefined): string {
  return namespace === undefined ? 'the default namespace' : `namespace '${namespace}'`;
}

/**
 * Routes requests to endpoint methods with oslo.messaging's rules: the endpoint's namespace
 * must equal the request's, its version must be compatible (same major, minor at least the
 * requested one); a compatible endpoint without the method gives NoSuchMethod, no compatible
 * endpoint gives UnsupportedVersion.
 */
export class RPCDispatcher {
  private readonly entries: Array<{
    endpoint: object;
    namespace: string | undefined;
    version: string;
    contracts: Map<string, CompiledContract> | undefined;
    /** Its methods marked long (become jobs): its `long` list, or its class's `static long`. */
    long: ReadonlySet<string> | undefined;
  }>;
  private readonly validateResults: boolean;
  private readonly everywhere: DispatcherOptions['everywhere'];

  constructor(
    endpoints: readonly object[],
    private readonly serializer: Serializer = new NoOpSerializer(),
    private readonly accessPolicy: AccessPolicy = defaultAccessPolicy,
    options: DispatcherOptions = {},
  ) {
    if (!Array.isArray(endpoints) || endpoints.length === 0) throw new InvalidArgument('a server needs at least one endpoint object');
    this.validateResults = options.validateResults ?? false;
    this.everywhere = options.everywhere;
    this.entries = endpoints.map((endpoint, i) => {
      if (!endpoint || typeof endpoint !== 'object') throw new InvalidArgument(`endpoint #${i + 1} is not an object`);
      const t = (endpoint as Endpoint).target ?? options.defaultTarget;
      if (t !== undefined && !(t instanceof Target)) throw new InvalidArgument(`endpoint #${i + 1}: its target must be a Target`);
      const label = `endpoint #${i + 1} (${endpoint.constructor?.name || 'Object'})`;
      const declared = contractsOf(endpoint, label);
      for (const m of Object.keys(declared ?? {})) {
        if (!findMethod(endpoint, m)) throw new InvalidArgument(`${label} has a contract for ${m} but no callable method of that name`);
      }
      const contracts = declared ? compileContracts(declared, label) : undefined;
      return { endpoint, namespace: t?.namespace, version: t?.version ?? '1.0', contracts, long: longOf(endpoint, label) };
    });
  }

  /** Each endpoint's namespace, version and callable methods (those the access policy allows) with their contracts. */
  describe(): EndpointDescription[] {
    // One entry per namespace and version: endpoints sharing them (hermod's job methods and its
    // introspection, both `hermod` 1.0) are one interface to a caller. The first endpoint with a
    // method wins, as in resolve().
    const out = new Map<string, EndpointDescription>();
    for (const e of this.entries) {
      const key = `${e.namespace ?? ''}\0${e.version}`;
      let d = out.get(key);
      if (!d) {
        d = { namespace: e.namespace ?? null, version: e.version, methods: {} };
        out.set(key, d);
      }
      for (const m of methodNames(e.endpoint)) {
        if (!Object.hasOwn(d.methods, m) && this.accessPolicy(e.endpoint, m)) setOwn(d.methods, m, e.contracts?.get(m)?.contract ?? null);
      }
    }
    return [...out.values()];
  }

  /** Whether an endpoint has a callable method of that name (in any namespace or version). */
  serves(method: string): boolean {
    return this.entries.some((e) => findMethod(e.endpoint, method) !== undefined);
  }

  /** Finds the method for a request or throws NoSuchMethod / UnsupportedVersion. */
  resolve(req: DispatchRequest): {
    endpoint: object;
    fn: (...args: unknown[]) => unknown;
    contract: CompiledContract | undefined;
    /** The endpoint marks the method long. */
    long: boolean;
  } {
    let foundCompatible = false;
    for (const e of this.entries) {
      // The same text is compatible: the common case skips parsing both (a request's version is
      // checked to be X.Y[.Z] on arrival).
      if (e.namespace !== req.namespace || (e.version !== req.version && !versionIsCompatible(e.version, req.version))) continue;
      const fn = findMethod(e.endpoint, req.method);
      if (fn && this.accessPolicy(e.endpoint, req.method))
        return { endpoint: e.endpoint, fn, contract: e.contracts?.get(req.method), long: e.long?.has(req.method) ?? false };
      foundCompatible = true;
    }
    const alias = this.everywhere;
    if (foundCompatible && alias && req.method === alias.name) {
      const fn = findMethod(alias.endpoint, alias.method);
      const entry = this.entries.find((e) => e.endpoint === alias.endpoint);
      if (fn && entry && this.accessPolicy(alias.endpoint, alias.method)) {
        return { endpoint: alias.endpoint, fn, contract: entry.contracts?.get(alias.method), long: entry.long?.has(alias.method) ?? false };
      }
    }
    const hint = this.servedElsewhere(req.method);
    if (foundCompatible) throw new NoSuchMethod(req.method, { message: `Endpoint does not support RPC method ${req.method}${hint}` });
    throw new UnsupportedVersion(req.version, req.method, {
      message: `Endpoint does not support RPC version ${req.version} in ${namespaceText(req.namespace)}. Attempted method: ${req.method}${hint}`,
    });
  }

  /**
   * Where else this server serves `method`, for the caller's error: a call in the wrong namespace
   * or at the wrong major version otherwise reads the same as a method that exists nowhere.
   * Only on the error path, and only what describe() would tell the caller anyway.
   */
  private servedElsewhere(method: string): string {
    const places: string[] = [];
    for (const e of this.entries) {
      if (!findMethod(e.endpoint, method) || !this.accessPolicy(e.endpoint, method)) continue;
      const where = `${namespaceText(e.namespace)} at version ${e.version}`;
      if (!places.includes(where)) places.push(where);
    }
    if (places.length === 0) return '';
    const more = places.length > 3 ? ` and ${places.length - 3} more` : '';
    return ` (this server has ${method} in ${places.slice(0, 3).join('; ')}${more})`;
  }

  /**
   * Runs the request; resolves with the serialised result. The context must be plain data, as the
   * request. Arguments are checked against the method's contract (as they came over the wire,
   * before the serializer) and the method does not run unless they meet it.
   */
  async dispatch(ctx: Context, req: DispatchRequest): Promise<unknown> {
    assertPlainData(ctx, 'context');
    const { endpoint, fn, contract } = this.resolve(req);
    if (contract) checkArgs(contract, req.method, req.args);
    const local = this.serializer.deserializeContext(ctx);
    // Own data properties only: what Object.keys(args) lists is exactly what the endpoint sees.
    const args: Record<string, unknown> = {};
    for (const k of Object.keys(req.args)) setOwn(args, k, this.serializer.deserializeEntity(local, req.args[k]));
    const result = await fn.call(endpoint, local, args);
    const wire = this.serializer.serializeEntity(local, result === undefined ? null : result);
    if (contract && this.validateResults) checkResult(contract, req.method, wire);
    return wire;
  }
}

/**
 * The methods `endpoint` marks long: its own `long` list (an object endpoint), else its class's
 * `static long`. A name that is no callable method of it is refused, as a contract's is: a typo
 * (`'slowRepot'`) left the method a plain call, whose callers then timed out.
 */
function longOf(endpoint: object, label: string): ReadonlySet<string> | undefined {
  // Only a plain object's own data property is a list: a class instance's `long` is its data (a
  // longitude), which must neither be refused nor hide the class's `static long`, and a getter is
  // never run (README: getters are not methods, and nothing of an endpoint's runs uncalled).
  const proto: unknown = Object.getPrototypeOf(endpoint);
  const own = proto === Object.prototype || proto === null ? Object.getOwnPropertyDescriptor(endpoint, 'long') : undefined;
  const listed = own && 'value' in own && typeof own.value !== 'function' ? own.value : undefined;
  const found = listed !== undefined ? listed : (endpoint.constructor as { long?: unknown } | undefined)?.long;
  if (found === undefined || found === null) return undefined;
  const names = methodNameList(found, `${label}: long`);
  for (const m of names) {
    if (!findMethod(endpoint, m)) throw new InvalidArgument(`${label} lists ${m} as long but has no callable method of that name`);
  }
  return new Set(names);
}

/** `value` as a list of method names, or InvalidArgument naming `what` (an endpoint's or a server's `long`). */
export function methodNameList(value: unknown, what: string): string[] {
  if (!Array.isArray(value) || value.some((m) => typeof m !== 'string' || m === ''))
    throw new InvalidArgument(`${what} must be a list of method names, got ${JSON.stringify(value)?.slice(0, 200)}`);
  return value as string[];
}
