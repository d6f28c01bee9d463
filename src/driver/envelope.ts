import { MalformedMessage, MessageTooLarge, UnsupportedEnvelopeVersion } from '../core/errors.js';
import { DEFAULT_MAX_JSON_DEPTH, nestsDeeperThan, parsePeerJson } from '../core/json.js';
import { encodeJson } from '../core/serializer.js';

/**
 * oslo.messaging's message envelope, version 2.0: the message dict JSON-encoded into a string
 * under `oslo.message`, beside `oslo.version`. Both drivers and every receiving path decode it
 * here, so the version check cannot drift between them.
 */
export const ENVELOPE_VERSION = '2.0';

/** Wraps an oslo message dict in the 2.0 envelope object (the inner dict JSON-encoded). */
export function wrap(msg: Record<string, unknown>, what: string): { 'oslo.version': string; 'oslo.message': string } {
  return { 'oslo.version': ENVELOPE_VERSION, 'oslo.message': encodeJson(msg, what) };
}

/**
 * The 2.0 envelope as a JSON string (a RabbitMQ body): the same text as encoding {@link wrap}'s
 * object, written without making and walking that object (every call and reply pays for it).
 */
export function envelope(msg: Record<string, unknown>, what: string): string {
  return `{"oslo.version":"${ENVELOPE_VERSION}","oslo.message":${JSON.stringify(encodeJson(msg, what))}}`;
}

/** Whether `o` is an enveloped message (has both envelope keys). */
export function isEnvelope(o: Record<string, unknown>): boolean {
  return 'oslo.version' in o && 'oslo.message' in o;
}

function parseObject(text: string, what: string, maxDepth: number): Record<string, unknown> {
  const value = parsePeerJson(text, what, maxDepth);
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new MalformedMessage(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

/**
 * Opens an envelope object, checking its version as oslo does (major 2, minor 0), or returns a
 * bare (1.0) message as it is. Throws MalformedMessage (NestingTooDeep past `maxDepth`) /
 * UnsupportedEnvelopeVersion.
 */
export function open(o: Record<string, unknown>, maxDepth = DEFAULT_MAX_JSON_DEPTH): Record<string, unknown> {
  if (!isEnvelope(o)) return o;
  const raw = o['oslo.version'];
  // A peer's object here would be turned into text by its own toString (or throw a TypeError).
  if (typeof raw !== 'string' && typeof raw !== 'number') {
    throw new UnsupportedEnvelopeVersion(
      `message envelope version is not a version (a ${raw === null ? 'null' : Array.isArray(raw) ? 'list' : typeof raw}; expected ${ENVELOPE_VERSION})`,
    );
  }
  const version = String(raw);
  // Every message of oslo and hermod says exactly "2.0": only another spelling is read, as oslo's
  // version_is_compatible reads it (major.minor[.revision], whole numbers): 2.0 and 2.0.0 are
  // 2.0; a higher minor or revision is not supported. Number() took "2.", "0x2.0", "2.0e0" and
  // "2.0.x" for 2.0.
  if (version !== ENVELOPE_VERSION) {
    const m = /^(\d{1,9})\.(\d{1,9})(?:\.(\d{1,9}))?$/.exec(version);
    if (!m || Number(m[1]) !== 2 || Number(m[2]) !== 0 || Number(m[3] ?? 0) !== 0) {
      throw new UnsupportedEnvelopeVersion(
        `message envelope version ${version.slice(0, 40)} is not supported (expected ${ENVELOPE_VERSION})`,
      );
    }
  }
  if (typeof o['oslo.message'] !== 'string') throw new MalformedMessage('oslo.message is not a string');
  return parseObject(o['oslo.message'], 'oslo.message', maxDepth);
}

/** Decodes a message body: JSON, then {@link open}; neither may nest deeper than `maxDepth`. */
export function unenvelope(content: Buffer | string, maxDepth = DEFAULT_MAX_JSON_DEPTH): Record<string, unknown> {
  return open(parseObject(typeof content === 'string' ? content : content.toString('utf8'), 'message body', maxDepth), maxDepth);
}

/** Bodies up to this size are parsed by {@link peek}; larger ones are only scanned at both ends. */
export const PEEK_PARSE_LIMIT = 64 * 1024;

/**
 * Best effort on a body that failed to decode: the inner dict, without the version check, so a
 * receiver can still find where to send the caller an error. Undefined when it is not JSON.
 * A body larger than {@link PEEK_PARSE_LIMIT} (one refused as too large, typically) or nesting
 * deeper than the default maxJsonDepth is never parsed: only its first and last 64 KiB are searched for `_msg_id` and `_reply_q`, which
 * oslo puts at the end of the dict, so answering it costs the same for 100 kB as for 100 MB.
 */
export function peek(content: Buffer | string): Record<string, unknown> | undefined {
  const size = typeof content === 'string' ? content.length : content.byteLength;
  if (size > PEEK_PARSE_LIMIT) return scanCallFields(content);
  try {
    // A byte-order mark fails the real parse (as in Python's json.loads), not the search for where to answer.
    const text = stripBom(typeof content === 'string' ? content : content.toString('utf8'));
    // Refused for its depth: parsing it is what must not happen.
    if (nestsDeeperThan(text, DEFAULT_MAX_JSON_DEPTH)) return scanCallFields(content);
    const o = JSON.parse(text) as Record<string, unknown>;
    if (!o || typeof o !== 'object') return undefined;
    const message = o['oslo.message'];
    if (typeof message === 'string' && nestsDeeperThan(message, DEFAULT_MAX_JSON_DEPTH)) return scanCallFields(content);
    // `oslo.message` as an object, not the string it must be: its ids are still where to answer.
    const inner = typeof message === 'string' ? (JSON.parse(message) as unknown) : message && typeof message === 'object' ? message : o;
    return inner && typeof inner === 'object' && !Array.isArray(inner) ? (inner as Record<string, unknown>) : scanCallFields(content);
  } catch {
    // A small body cut short after its ids (a truncated inner message) is answered as a large
    // one is: its ids are still readable where oslo writes them.
    return scanCallFields(content);
  }
}

const stripBom = (s: string) => (s.charCodeAt(0) === 0xfeff ? s.slice(1) : s);

// `"_msg_id": "…"`, or `\"_msg_id\": \"…\"` inside the JSON string of a 2.0 envelope. Only
// the characters ids and queue names are made of, so a match cannot run into other fields.
const CALL_FIELD = /\\?"(_msg_id|_reply_q)\\?"\s*:\s*\\?"([\w.:@-]{1,255})\\?"/g;

function scanFields(content: Buffer | string): Record<string, unknown> {
  const text = (from: number, to: number) => (typeof content === 'string' ? content.slice(from, to) : content.toString('utf8', from, to));
  const size = typeof content === 'string' ? content.length : content.byteLength;
  const found: Record<string, unknown> = {};
  for (const part of [text(0, PEEK_PARSE_LIMIT), text(Math.max(0, size - PEEK_PARSE_LIMIT), size)]) {
    for (const m of part.matchAll(CALL_FIELD)) found[m[1]!] = m[2];
  }
  return found;
}

function scanCallFields(content: Buffer | string): Record<string, unknown> | undefined {
  const found = scanFields(content);
  return found._msg_id !== undefined && found._reply_q !== undefined ? found : undefined;
}

/**
 * The `_msg_id` of a reply body that failed to decode (too deep, not JSON), found as {@link peek}
 * finds a request's ids, so that its call fails with the reason instead of at its timeout.
 */
export function peekReplyId(content: Buffer | string): string | undefined {
  const id = peek(content)?._msg_id ?? scanFields(content)._msg_id;
  return typeof id === 'string' ? id : undefined;
}

/** JSON-encodes `value` and refuses it when it exceeds `limit` bytes (MessageTooLarge). */
export function encodeBounded(value: unknown, what: string, limit: number): string {
  return bounded(encodeJson(value, what), limit);
}

/** `body`, or MessageTooLarge when its UTF-8 form exceeds `limit` bytes. */
export function bounded(body: string, limit: number): string {
  // Every UTF-16 unit is at most 3 UTF-8 bytes: only long strings need counting.
  if (body.length * 3 > limit) {
    const size = Buffer.byteLength(body);
    if (size > limit) throw new MessageTooLarge(size, limit);
  }
  return body;
}
