/**
 * Characters peer-given text must not bring to a terminal or a log line: C0 and C1 controls
 * (newlines, ESC, CSI), line and paragraph separators, bidi marks, embeddings, overrides and
 * isolates, and invisible ones (zero-width space, joiners, BOM): whatever could end a line,
 * forge another one, reorder what is shown or hide a difference. Global: use it with `replace`.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
export const UNSAFE_CHARS = /[\u0000-\u001f\u007f-\u009f\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;

const SHORT: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * `text` with each {@link UNSAFE_CHARS} character written out as JSON would write it (`\n`,
 * `\u001b`, `\u202e`): readable, one line, nothing a terminal acts on. Inside a JSON string the
 * result means the same string, so JSON output may pass through it whole.
 */
export function escapeUnsafe(text: string): string {
  return text.replace(UNSAFE_CHARS, (c) => SHORT[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * {@link escapeUnsafe}, leaving newlines, tabs and the carriage return of a CRLF line end as
 * they are: for output of several lines, a pretty-printed JSON document (whose strings JSON has
 * escaped C0 controls in already) or a string result meant to be read as text. A carriage
 * return alone is escaped: it would let the text overwrite its own line on a terminal.
 */
export function escapeUnsafeKeepLines(text: string): string {
  return text.replace(UNSAFE_CHARS, (c: string, at: number) =>
    c === '\n' || c === '\t' || (c === '\r' && text.charCodeAt(at + 1) === 10)
      ? c
      : (SHORT[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`),
  );
}
