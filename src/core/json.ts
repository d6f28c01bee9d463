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
