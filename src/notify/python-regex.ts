/**
 * A Python `re` pattern (a `str` pattern, as oslo's NotificationFilter compiles them) as a
 * JavaScript RegExp source for the `u` flag, so that a filter written for oslo matches what it
 * matches there. Where the two differ:
 *
 * - `\A` and `\Z` are the start and the very end of the string (JavaScript read them as the
 *   letters A and Z);
 * - `$` matches at the end and before a newline that ends the string, as Python's does without
 *   MULTILINE;
 * - `\w`, `\d` and `\b` are Unicode-aware, as in Python 3 (JavaScript's are ASCII even with `u`):
 *   `\w+$` matches `hôte`;
 * - `(?P<name>…)` and `(?P=name)` are Python's named groups, `{,n}` is `{0,n}`;
 * - an escaped character that is not special (`\:`, `\#`) and a `{` or `}` that is not part of a
 *   quantifier are literal, as Python takes them (the `u` flag would refuse them);
 * - a `]` right after `[` or `[^` is a literal `]`;
 * - `.` is anything but `\n` (JavaScript's also refuses `\r`, U+2028 and U+2029);
 * - `\s` and `\S` are Python's whitespace (`str.isspace`: with `\x1c`–`\x1f` and `\x85`, without
 *   U+FEFF), except `\S` inside a class, which stays JavaScript's.
 *
 * Inline flags such as `(?i)` stay unsupported (Node's engine refuses them) and fail to compile
 * with the engine's message.
 */
const WORD = '\\p{L}\\p{N}_';
/** Python's `str.isspace` characters, as a class body. */
const SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const SYNTAX = new Set('^$\\.*+?()[]{}|/'.split(''));
const QUANTIFIER = /^\{(?:\d+(?:,\d*)?|,\d+)\}/;

export function pythonRegexSource(p: string): string {
  let out = '';
  let inClass = false;
  let classStart = -1;
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '\\' && i + 1 < p.length) {
      const n = p[++i]!;
      if (inClass) {
        if (n === 'w') out += WORD;
        else if (n === 'd') out += '\\p{Nd}';
        else if (n === 'D') out += '\\P{Nd}';
        else if (n === 'b') out += '\\x08';
        else if (n === 's') out += SPACE;
        else if (/[A-Za-z0-9]/.test(n)) out += `\\${n}`;
        else out += SYNTAX.has(n) || n === '-' ? `\\${n}` : n;
        continue;
      }
      if (n === 'A') out += '^';
      else if (n === 'Z') out += '(?![\\s\\S])';
      else if (n === 'w') out += `[${WORD}]`;
      else if (n === 'W') out += `[^${WORD}]`;
      else if (n === 'd') out += '\\p{Nd}';
      else if (n === 'D') out += '\\P{Nd}';
      else if (n === 's') out += `[${SPACE}]`;
      else if (n === 'S') out += `[^${SPACE}]`;
      else if (n === 'b') out += `(?:(?<=[${WORD}])(?![${WORD}])|(?<![${WORD}])(?=[${WORD}]))`;
      else if (n === 'B') out += `(?:(?<=[${WORD}])(?=[${WORD}])|(?<![${WORD}])(?![${WORD}]))`;
      else if (/[A-Za-z0-9]/.test(n)) out += `\\${n}`;
      else out += SYNTAX.has(n) ? `\\${n}` : n;
      continue;
    }
    if (inClass) {
      // Python: a `]` first in the class is literal; JavaScript would end (or empty) the class.
      if (c === ']' && i === classStart) out += '\\]';
      else if (c === ']') {
        inClass = false;
        out += ']';
      } else if (c === '[') out += '\\[';
      else out += c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += '[';
      if (p[i + 1] === '^') {
        out += '^';
        i++;
      }
      classStart = i + 1;
      continue;
    }
    if (c === '$') out += '(?=\\n?(?![\\s\\S]))';
    else if (c === '.') out += '[^\\n]';
    // Python's `{,n}` is `{0,n}`, which JavaScript spells out.
    else if (c === '{') out += QUANTIFIER.test(p.slice(i)) ? (p[i + 1] === ',' ? '{0' : c) : '\\{';
    else if (c === '}') out += /\{(?:\d+(?:,\d*)?|,\d+)$/.test(p.slice(0, i)) ? c : '\\}';
    else if (c === '(' && p.startsWith('(?P<', i)) {
      out += '(?<';
      i += 3;
    } else if (c === '(' && p.startsWith('(?P=', i)) {
      const end = p.indexOf(')', i);
      if (end < 0) out += c;
      else {
        out += `\\k<${p.slice(i + 4, end)}>`;
        i = end;
      }
    } else out += c;
  }
  return out;
}
