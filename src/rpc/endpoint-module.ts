/**
 * What a loaded endpoints module offers, read the same way by `rpc-server --endpoints`,
 * `hermod run` and hot reload.
 */
import { types } from 'node:util';
import { methodNames } from './dispatcher.js';

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
