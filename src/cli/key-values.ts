/** `key=value` words from the shell (call arguments, context, payload) into objects. */
import { setOwn } from '../core/plain.js';
import { UsageError } from './exit-codes.js';

/** A number literal of JSON text (the text is known to parse, so strings are the only other place digits appear). */
const NUMBER = /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/** At most this much of a value is quoted in an error. */
const SHOWN = 60;
const shown = (text: string) => (text.length > SHOWN ? `${text.slice(0, SHOWN)}…` : text);

/** Where the JSON string opening at `open` ends (its closing quote): the first quote after an even run of backslashes. */
function stringEnd(text: string, open: number): number {
  let i = open;
  for (;;) {
    i = text.indexOf('"', i + 1);
    let k = i - 1;
    while (text[k] === '\\') k--;
    if ((i - 1 - k) % 2 === 0) return i;
  }
}

/**
 * Why a number literal of the JSON `text` would not arrive as written, or undefined. JSON.parse
 * reads `1e400` as Infinity, which JSON sends as null, and an integer past 2^53 as the nearest
 * double, whose digits differ (`12345678901234567890` went out as 12345678901234567000): both
 * were sent silently.
 */
function lostNumber(text: string): string | undefined {
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      i = stringEnd(text, i);
    } else if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      NUMBER.lastIndex = i;
      const literal = NUMBER.exec(text)?.[0] ?? c;
      const n = Number(literal);
      if (!Number.isFinite(n)) return `the number ${shown(literal)} is beyond what JSON can carry: it would be sent as null`;
      if (/^-?\d+$/.test(literal) && !Number.isSafeInteger(n) && String(n) !== literal) {
        return `the integer ${shown(literal)} is beyond 2^53: it would be sent as ${String(n)}`;
      }
      i += literal.length - 1;
    }
  }
  return undefined;
}

/**
 * A key the JSON `text` (known to parse) gives twice in one object, or undefined. JSON.parse keeps
 * the last value, silently, as `a=1 a=2` did; `"\u0078"` and `"x"` are the same key.
 */
function repeatedKey(text: string): string | undefined {
  // One entry per open object (its keys so far) or array (null).
  const open: Array<Set<string> | null> = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '{') open.push(new Set());
    else if (c === '[') open.push(null);
    else if (c === '}' || c === ']') open.pop();
    else if (c === '"') {
      const start = i;
      i = stringEnd(text, i);
      const keys = open[open.length - 1];
      if (!keys) continue;
      // In an object a string is a key when a colon follows it, else a value.
      let j = i + 1;
      while (text[j] === ' ' || text[j] === '\t' || text[j] === '\n' || text[j] === '\r') j++;
      if (text[j] !== ':') continue;
      const key = JSON.parse(text.slice(start, i + 1)) as string;
      if (keys.has(key)) return key;
      keys.add(key);
    }
  }
  return undefined;
}

/**
 * A shell value: JSON when it parses (`5`, `true`, `{"a":1}`), else the string itself. A number
 * that would not arrive as written (see lostNumber) or a key given twice in one object (see
 * repeatedKey) is a {@link UsageError} naming `key`.
 */
export function parseValue(text: string, key = 'value'): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return text;
  }
  const lost = lostNumber(text);
  if (lost) {
    const quote = typeof value === 'number' ? `: ${key}='"${shown(text)}"'` : ' inside the JSON';
    throw new UsageError(`${key}=${shown(text)}: ${lost}; quote it to send it as a string${quote}`);
  }
  const twice = typeof value === 'object' && value !== null ? repeatedKey(text) : undefined;
  if (twice !== undefined) {
    throw new UsageError(
      `${key}=${shown(text)}: the key ${JSON.stringify(shown(twice))} is given twice in one object: only the last value would be sent; give it once`,
    );
  }
  return value;
}

/**
 * The key of a `key=value` word; a word without one, or a key `seen` already, is a
 * {@link UsageError}. A repeated key kept only its last value, silently (config files refuse
 * duplicate keys for the same reason).
 */
export function keyOf(word: string, seen: Set<string>): string {
  const eq = word.indexOf('=');
  if (eq <= 0) throw new UsageError(`argument '${word}' is not key=value`);
  const key = word.slice(0, eq);
  if (seen.has(key)) throw new UsageError(`${key} is given twice: only one value would be sent; give it once (a list: ${key}='[1, 2]')`);
  seen.add(key);
  return key;
}

/** Checks `key=value` words for their shape and repeated keys alone (see {@link keyOf}); values are read later. */
export function checkKeys(words: string[]): void {
  const seen = new Set<string>();
  for (const w of words) keyOf(w, seen);
}

/** `key=value` words (arguments, context, payload) into an object of parsed values; anything else is a {@link UsageError}. */
export function parseKeyValues(pairs: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const seen = new Set<string>();
  for (const p of pairs) {
    const key = keyOf(p, seen);
    // An own key even for `__proto__`: the receiver refuses it, instead of it vanishing here.
    setOwn(out, key, parseValue(p.slice(key.length + 1), key));
  }
  return out;
}

/**
 * A JSON document given on the command line (`--payload '{"a":1}'`); bad JSON is a
 * {@link UsageError} naming the option, and so are a number JSON cannot carry unchanged and a
 * key given twice in one object, as in a `key=value` value (the payload went out with `null`
 * for 1e400, a rounded 12345678901234567890, and the last of two keys).
 */
export function parseJson(text: string, option: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${option} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const lost = lostNumber(text);
  if (lost) throw new UsageError(`${option}: ${lost}; quote it to send it as a string`);
  const twice = typeof value === 'object' && value !== null ? repeatedKey(text) : undefined;
  if (twice !== undefined) {
    throw new UsageError(
      `${option}: the key ${JSON.stringify(shown(twice))} is given twice in one object: only the last value would be sent; give it once`,
    );
  }
  return value;
}
