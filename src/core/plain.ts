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
  // the clean walk, which makes no strings, no closures and no key arrays.
  return walk(value, undefined) === undefined ? undefined : walk(value, root);
}

/**
 * The first prototype-setting key or non-plain object in `value`: its path when `root` is
 * given, else only some string. An explicit stack, as peer data can nest deeper than the call
 * stack; `paths` runs beside it only when paths are wanted.
 */
function walk(value: unknown, root: string | undefined): string | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const stack: object[] = [value];
  const paths: string[] | undefined = root === undefined ? undefined : [root];
  while (stack.length > 0) {
    const v = stack.pop()!;
    const path = paths ? paths.pop()! : '';
    if (Array.isArray(v)) {
      if (Object.getPrototypeOf(v) !== Array.prototype) return path || '?';
      for (let i = v.length - 1; i >= 0; i--) {
        const child: unknown = v[i];
        if (child === null || typeof child !== 'object') continue;
        stack.push(child);
        paths?.push(`${path}[${i}]`);
      }
      continue;
    }
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return path || '?';
    for (const k in v) {
      // for-in, unlike Object.keys, makes no array; it also lists inherited enumerable keys,
      // which a polluted Object.prototype has, and those are not the value's data.
      if (!Object.hasOwn(v, k)) continue;
      const child = (v as Record<string, unknown>)[k];
      if (k === '__proto__') return `${path}.__proto__`;
      if (k === 'constructor' && child !== null && typeof child === 'object' && Object.hasOwn(child, 'prototype')) {
        return `${path}.constructor.prototype`;
      }
      if (child === null || typeof child !== 'object') continue;
      stack.push(child);
      paths?.push(`${path}.${k}`);
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

/**
 * Text of a value a peer sent where text belongs (an error's message, a traceback line): its
 * own text, numbers and booleans as written, nothing for null, anything else as JSON. Never
 * through the value's own `toString`: a peer's `{"toString": 1}` made `String()` throw a
 * TypeError where the caller should have had the remote error.
 */
export function peerText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value === null || value === undefined) return '';
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  try {
    return JSON.stringify(value) ?? '';
  } catch {
    return Object.prototype.toString.call(value);
  }
}
