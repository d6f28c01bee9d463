/**
 * What a loaded endpoints module offers, read the same way by `rpc-server --endpoints`,
 * `hermod run` and hot reload.
 */
import { types } from 'node:util';
import { Target } from '../core/target.js';
import type { Transport } from '../transport.js';
import { methodNames } from './dispatcher.js';

/**
 * What an endpoints module's class export is constructed with, or its factory export called with,
 * under `rpc-server --endpoints` and `hermod run` (again on each hot reload).
 */
export interface EndpointContext {
  /** The server name (Target.server) the endpoints serve as. */
  server: string;
  /** The topic they serve. */
  topic: string;
  /** The service name in a `hermod run` file. */
  service?: string;
  /** The worker number (1…N) under `hermod run --workers`. */
  worker?: number;
  /**
   * The transport the endpoints are served on, for their own calls, casts and notifications
   * (`new RPCClient(ctx.transport, …)`, `new Notifier(ctx.transport, …)`). The run owns it: do not
   * close it. A module's own `getTransport()` is not the run's: without a URL it is `memory://`.
   */
  transport: Transport;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * The export that holds a module's endpoints: `default`, else `endpoints`. Node hands a CommonJS
 * module's whole `module.exports` over as `default`, so `exports.endpoints = [...]` arrived as
 * one endpoint object with no methods. So a default that is a plain object holding nothing but
 * an `endpoints` value (and no method of its own) stands for that value. An object with methods
 * of its own, or an instance of a class (whose `endpoints` field is its own state, not to be
 * served), is the endpoint itself.
 */
export function endpointsExport(mod: Record<string, unknown>): unknown {
  const value = mod.default;
  if (isPlainObject(value)) {
    const d = Object.getOwnPropertyDescriptor(value, 'endpoints');
    const methods = Object.entries(Object.getOwnPropertyDescriptors(value)).some(
      ([k, p]) => k !== 'endpoints' && 'value' in p && typeof p.value === 'function',
    );
    if (d && 'value' in d && d.value !== undefined && typeof d.value !== 'function' && !methods) return d.value;
  }
  return value ?? mod.endpoints;
}

/**
 * Why `endpoint` serves nothing, or undefined when it has a method to call: `module.exports = {}`
 * and a module that exports its class under a name (`module.exports = { Calc }`) were served
 * as endpoints with no methods, or with the class as one. Reads descriptors only: a getter is
 * never run (it may throw before an init, or open something).
 */
export function emptyEndpoint(endpoint: object): string | undefined {
  // A Proxy may answer for methods its key list does not show: the dispatcher asks it per call.
  if (types.isProxy(endpoint)) return undefined;
  const names = methodNames(endpoint);
  if (names.length === 0) return 'has no methods to serve (an empty object, or methods whose names start with _?)';
  const classes = Object.entries(Object.getOwnPropertyDescriptors(endpoint))
    .filter(([, p]) => 'value' in p && typeof p.value === 'function' && /^class[\s{]/.test(Function.prototype.toString.call(p.value)))
    .map(([k]) => k);
  if (classes.length > 0 && classes.length === names.length)
    return `serves only classes as methods (${classes.join(', ')}): export the class itself (module.exports = ${classes[0]}, or export default)`;
  return undefined;
}

const CLASS_SOURCE = /^class[\s{]/;

/**
 * The endpoints a loaded module serves: its export (see endpointsExport) is an endpoint, a list of
 * them, a class (constructed with `ctx`) or a factory (called with `ctx`, may be async). What is
 * wrong with it is handed to `problem` (the reason alone; the caller names the file its way) and
 * the error it returns is thrown.
 */
export async function endpointsOfModule<C>(mod: Record<string, unknown>, ctx: C, problem: (reason: string) => Error): Promise<object[]> {
  let value = endpointsExport(mod);
  if (value === undefined) throw problem("exports neither a default nor 'endpoints'");
  if (typeof value === 'function') {
    const fn = value as (c: C) => unknown;
    value = CLASS_SOURCE.test(Function.prototype.toString.call(fn)) ? new (fn as unknown as new (c: C) => object)(ctx) : await fn(ctx);
  }
  const list: unknown[] = Array.isArray(value) ? value : [value];
  const out: object[] = [];
  for (const e of list) {
    if (!e || typeof e !== 'object') throw problem(`endpoints must be objects, got ${e === null ? 'null' : typeof e}`);
    const which = `its endpoint${Array.isArray(value) ? ` #${out.length + 1}` : ''}`;
    const empty = emptyEndpoint(e);
    if (empty) throw problem(`${which} ${empty}`);
    const target = badTarget(e);
    if (target) throw problem(`${which} ${target}`);
    out.push(e);
  }
  return out;
}

/**
 * Why `endpoint`'s `target` is no Target, or undefined when it is one (or has none). Checked here
 * so that the error names the module: the server's own check said only `endpoint #2: its target
 * must be a Target`, with no file, for a `target = { namespace, version }` written as the Python
 * endpoint's `oslo_messaging.Target(...)` reads.
 */
export function badTarget(endpoint: object): string | undefined {
  const t = (endpoint as { target?: unknown }).target;
  if (t === undefined || t instanceof Target) return undefined;
  const made = (fields: string) => `make it new Target({ ${fields} }) with Target imported from hermod`;
  if (isPlainObject(t)) {
    // Its own string fields, as the Target to write (a value of another type is shown as …).
    const fields = Object.entries(Object.getOwnPropertyDescriptors(t))
      .slice(0, 6)
      .map(([k, d]) => `${k}: ${'value' in d && typeof d.value === 'string' && d.value.length <= 60 ? JSON.stringify(d.value) : '…'}`)
      .join(', ');
    return `has a target that is a plain object, not a Target: ${made(fields)}`;
  }
  if (t && typeof t === 'object' && (t as object).constructor?.name === 'Target') {
    return 'has a target made by another copy of hermod (a second install, or a bundled one): import Target from the hermod that runs the server';
  }
  return `has a target that is ${t === null ? 'null' : typeof t}, not a Target: ${made('namespace: …, version: …')}`;
}
