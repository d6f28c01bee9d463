/**
 * Longest caller-given name (a method, namespace or version) that metrics and traces keep
 * whole. A label lives as long as its series and is written at every scrape, a span attribute
 * until its span is exported: 500 method names of 400 kB took a server to 677 MiB and a scrape
 * to 18 s, and 300 spans of 256 KiB names held 150 MiB while an exporter was slow. oslo's and
 * hermod's names are identifiers, far shorter.
 */
export const MAX_NAME_LENGTH = 200;

/**
 * Longest error message or stack a span keeps: a peer's method name is part of the
 * NoSuchMethod it gets, and an exception recorded whole held the name twice more per span.
 */
export const MAX_ERROR_TEXT = 4096;

/**
 * `text`, or when longer than `max` its start and a marker with its length
 * (`add_xxx…[262144 chars]`). The start is copied: a slice would keep the whole text alive.
 */
export function bounded(text: string, max = MAX_NAME_LENGTH): string {
  if (text.length <= max) return text;
  // Not half of a surrogate pair at the cut.
  const code = text.charCodeAt(max - 1);
  const end = code >= 0xd800 && code <= 0xdbff ? max - 1 : max;
  const head = Buffer.from(text.slice(0, end), 'utf16le').toString('utf16le');
  return `${head}…[${text.length} chars]`;
}
