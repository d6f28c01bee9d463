import { MalformedMessage } from './errors.js';

/**
 * Peer data is JSON, and JSON.parse keeps a `"__proto__"` key as an own property. It becomes a
 * prototype the moment anyone copies it with `obj[key] = value`, `Object.assign` or a deep merge:
 * the receiver then sees fields it does not own (`Object.keys(args)` is `[]` while `args.a` is
 * 40). A `constructor` holding a `prototype` is the other deep-merge gadget. Such keys are never
 * meaningful data, so messages carrying them are refused as MalformedMessage, which tells the
 * caller, instead of being silently trimmed into something the caller did not send.
 */

/** The path of the first prototype-setting key or non-plain object in `value`, or undefined when it is plain data. */
export function findPrototypeKey(value: unknown, root: string): string | undefined {
  // Paths are built only once something is found: every request's context and arguments take
  // the clean walk, which makes no strings and no closures.
  return isPlain(value) ? undefined : pathOf(value, root);
}

/** Whether a value is plain data (see {@link findPrototypeKey}); an explicit stack, as peer data can nest deeper than the call stack. */
function isPlain(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return true;
  const stack: object[] = [value];
  while (stack.length > 0) {
    const v = stack.pop()!;
    if (Array.isArray(v)) {
      if (Object.getPrototypeOf(v) !== Array.prototype) return false;
      for (let i = v.length - 1; i >= 0; i--) {
        const child: unknown = v[i];
        if (child !== null && typeof child === 'object') stack.push(child);
      }
      continue;
    }
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return false;
    for (const k in v) {
      // for-in also lists inherited enumerable keys; only a null-prototype object can have none
      // but its own, and a plain object's prototype has no enumerable keys.
      const child = (v as Record<string, unknown>)[k];
      if (k === '__proto__') return false;
      if (k === 'constructor' && child !== null && typeof child === 'object' && Object.hasOwn(child, 'prototype')) return false;
      if (child !== null && typeof child === 'object') stack.push(child);
    }
  }
  return true;
}

/** The path of the first prototype-setting key or non-plain object (the same walk as {@link isPlain}, naming where). */
function pathOf(value: unknown, root: string): string | undefined {
  const stack: Array<[object, string]> = [];
  const push = (v: unknown, path: () => string) => {
    if (v !== null && typeof v === 'object') stack.push([v, path()]);
  };
  push(value, () => root);
  while (stack.length > 0) {
    const [v, path] = stack.pop()!;
    if (Array.isArray(v)) {
      if (Object.getPrototypeOf(v) !== Array.prototype) return path || '?';
      for (let i = v.length - 1; i >= 0; i--) push(v[i], () => `${path}[${i}]`);
      continue;
    }
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return path || '?';
    for (const k of Object.keys(v)) {
      const child = (v as Record<string, unknown>)[k];
      if (k === '__proto__') return `${path}.__proto__`;
      if (k === 'constructor' && child !== null && typeof child === 'object' && Object.hasOwn(child, 'prototype')) {
        return `${path}.constructor.prototype`;
      }
      push(child, () => `${path}.${k}`);
    }
  }
  return undefined;
}

/** The MalformedMessage refusing `what` (a request, a notification) for the key at `at`. */
export function notPlainError(what: string, at: string): MalformedMessage {
  return new MalformedMessage(`${what} refused: ${at.length > 200 ? `${at.slice(0, 200)}…` : at} would set a prototype (not plain data)`);
}

/** Throws MalformedMessage when `value` is not plain data (see {@link findPrototypeKey}). */
export function assertPlainData(value: unknown, root: string): void {
  const at = findPrototypeKey(value, root);
  if (at !== undefined) throw notPlainError('message', at);
}

/** Names Object.prototype has: `__proto__` (an accessor) and the rest (read-only once frozen). */
const INHERITED = new Set(Object.getOwnPropertyNames(Object.prototype));

/**
 * Sets an own data property of a plain object (`{}`), even for a key named `__proto__` (an
 * assignment would set the prototype). Other keys are assigned: `Object.defineProperty` cost
 * ~1 µs a key, and every received request goes through here key by key.
 */
export function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (INHERITED.has(key)) Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
  else obj[key] = value;
}
