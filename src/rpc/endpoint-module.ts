/**
 * What a loaded endpoints module offers, read the same way by `rpc-server --endpoints`,
 * `hermod run` and hot reload.
 */
import { methodNames } from './dispatcher.js';

/**
 * The export that holds a module's endpoints: `default`, else `endpoints`. Node hands a CommonJS
 * module's whole `module.exports` over as `default`, so `exports.endpoints = [...]` arrived as
 * one endpoint object with no methods; an `endpoints` property that is no method wins there.
 */
export function endpointsExport(mod: Record<string, unknown>): unknown {
  const value = mod.default;
  if (value && typeof value === 'object' && !Array.isArray(value) && Object.hasOwn(value, 'endpoints')) {
    const inner = (value as { endpoints?: unknown }).endpoints;
    if (typeof inner !== 'function' && inner !== undefined) return inner;
  }
  return value ?? mod.endpoints;
}

/**
 * Why `endpoint` serves nothing, or undefined when it has a method to call: `module.exports = {}`
 * and a module that exports its class under a name (`module.exports = { Calc }`) were served
 * as endpoints with no methods, or with the class as one.
 */
export function emptyEndpoint(endpoint: object): string | undefined {
  const names = methodNames(endpoint);
  if (names.length === 0) return 'has no methods to serve (an empty object, or methods whose names start with _?)';
  const own = Object.keys(endpoint);
  const classes = own.filter((k) => {
    const v = (endpoint as Record<string, unknown>)[k];
    return typeof v === 'function' && /^class[\s{]/.test(Function.prototype.toString.call(v));
  });
  if (classes.length > 0 && classes.length === names.length)
    return `serves only classes as methods (${classes.join(', ')}): export the class itself (module.exports = ${classes[0]}, or export default)`;
  return undefined;
}
