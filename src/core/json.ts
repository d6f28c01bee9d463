import { readFileSync } from 'node:fs';
import { MalformedMessage, NestingTooDeep } from './errors.js';

/**
 * How deep incoming JSON may nest arrays and objects unless `maxJsonDepth` says otherwise.
 * JSON.parse takes time superlinear in the depth (100,000 levels, 200 kB of `[`, take about
 * half a second) and every walk of the value after it (prototype-key check, validation,
 * copying, the reply's JSON.stringify) pays again, so a small hostile body could stall a
 * server. Real arguments nest a few levels; 128 leaves ample room.
 */
export const DEFAULT_MAX_JSON_DEPTH = 128;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;

/** Whether `text` holds more than `max` opening brackets at all (native searches, no per-character loop). */
function moreOpenersThan(text: string, max: number): boolean {
  let n = 0;
  for (const ch of ['[', '{']) {
    for (let i = text.indexOf(ch); i >= 0; i = text.indexOf(ch, i + 1)) if (++n > max) return true;
  }
  return false;
}

/**
 * Whether the JSON `text` nests arrays and objects more than `max` levels deep, found without
 * parsing it: one pass over the structure, strings skipped with native searches. Text that is
 * not JSON may be answered either way; JSON.parse refuses it next.
 */
export function nestsDeeperThan(text: string, max: number): boolean {
  // Nesting needs an opening bracket per level: most messages have fewer than `max` in all.
  if (!moreOpenersThan(text, max)) return false;
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // To the closing quote: one not preceded by an odd run of backslashes.
      for (;;) {
        i = text.indexOf('"', i + 1);
        if (i < 0) return false;
        let k = i - 1;
        while (text.charCodeAt(k) === BACKSLASH) k--;
        if ((i - 1 - k) % 2 === 0) break;
      }
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > max) return true;
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      depth--;
    }
  }
  return false;
}

/**
 * JSON.parse for text from a peer: NestingTooDeep beyond `maxDepth` levels (checked before
 * parsing), MalformedMessage when it is not JSON. `what` names the text in the error.
 */
export function parsePeerJson(text: string, what: string, maxDepth: number = DEFAULT_MAX_JSON_DEPTH): unknown {
  if (nestsDeeperThan(text, maxDepth)) throw new NestingTooDeep(maxDepth, what);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new MalformedMessage(`${what} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

interface Level {
  /** The keys seen so far (objects), or undefined (arrays). */
  keys: Set<string> | undefined;
  /** Where this level is, for the error (`services.calc`, `routes[2]`). */
  path: string;
  /** Objects: the next string is a key. Arrays: the index of the current item. */
  expectKey: boolean;
  index: number;
  key: string;
}

/**
 * The first key that appears twice in one object of the JSON `text` (already known to parse),
 * with its path and line, or undefined. Keys compare as JSON.parse reads them (`"a"` and
 * `"\u0061"` are one key).
 */
function duplicateKey(text: string): { path: string; line: number } | undefined {
  const stack: Level[] = [];
  const childPath = (): string => {
    const p = stack.at(-1);
    if (!p) return '';
    return p.keys ? (p.path ? `${p.path}.${p.key}` : p.key) : `${p.path}[${p.index}]`;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      let j = i;
      for (;;) {
        j = text.indexOf('"', j + 1);
        let k = j - 1;
        while (text.charCodeAt(k) === BACKSLASH) k--;
        if ((j - 1 - k) % 2 === 0) break;
      }
      const top = stack.at(-1);
      if (top?.keys && top.expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.keys.has(key)) {
          return { path: top.path ? `${top.path}.${key}` : key, line: text.slice(0, i).split('\n').length };
        }
        top.keys.add(key);
        top.key = key;
        top.expectKey = false;
      }
      i = j;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      stack.push({ keys: c === OPEN_OBJECT ? new Set() : undefined, path: childPath(), expectKey: true, index: 0, key: '' });
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      const top = stack.at(-1);
      if (top?.keys) top.expectKey = true;
      else if (top) top.index++;
    }
  }
  return undefined;
}

/**
 * JSON.parse for a file an operator wrote (configuration, run file, keys file): a leading byte
 * order mark (Windows editors save one) is skipped, and a key given twice in one object is an
 * error. JSON.parse keeps the last of duplicates silently, so a copied service block not renamed
 * replaced the first, and a section written twice lost its first half.
 */
export function parseConfigJson(text: string): unknown {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const data: unknown = JSON.parse(body);
  const dup = duplicateKey(body);
  if (dup)
    throw new SyntaxError(`key ${dup.path} appears twice (line ${dup.line}): JSON would keep only the last; merge them or remove one`);
  return data;
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A configuration file's text, refusing bytes that are not UTF-8: `readFileSync(file, 'utf8')`
 * turned each into U+FFFD, so a password or a name saved in Latin-1 was read as another value
 * without a word. A leading byte order mark is kept for the JSON reader to skip.
 */
export function readUtf8File(file: string): string {
  const bytes = readFileSync(file);
  try {
    return STRICT_UTF8.decode(bytes);
  } catch {
    throw new Error('it is not UTF-8 text (saved in another encoding?)');
  }
}
