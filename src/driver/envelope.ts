import { MalformedMessage, MessageTooLarge, UnsupportedEnvelopeVersion } from '../core/errors.js';
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

/** The 2.0 envelope as a JSON string (a RabbitMQ body). */
export function envelope(msg: Record<string, unknown>, what: string): string {
  return encodeJson(wrap(msg, what), what);
}

/** Whether `o` is an enveloped message (has both envelope keys). */
export function isEnvelope(o: Record<string, unknown>): boolean {
  return 'oslo.version' in o && 'oslo.message' in o;
}

function parseObject(text: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new MalformedMessage(`${what} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new MalformedMessage(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

/**
 * Opens an envelope object, checking its version as oslo does (major 2, minor 0), or returns a
 * bare (1.0) message as it is. Throws MalformedMessage / UnsupportedEnvelopeVersion.
 */
export function open(o: Record<string, unknown>): Record<string, unknown> {
  if (!isEnvelope(o)) return o;
  const version = String(o['oslo.version']);
  const [major, minor] = version.split('.').map(Number);
  if (major !== 2 || !(minor !== undefined && minor <= 0)) {
    throw new UnsupportedEnvelopeVersion(`message envelope version ${version} is not supported (expected ${ENVELOPE_VERSION})`);
  }
  if (typeof o['oslo.message'] !== 'string') throw new MalformedMessage('oslo.message is not a string');
  return parseObject(o['oslo.message'], 'oslo.message');
}

/** Decodes a message body: JSON, then {@link open}. */
export function unenvelope(content: Buffer | string): Record<string, unknown> {
  return open(parseObject(typeof content === 'string' ? content : content.toString('utf8'), 'message body'));
}

/**
 * Best effort on a body that failed to decode: the inner dict, without the version check, so a
 * receiver can still find where to send the caller an error. Undefined when it is not JSON.
 */
export function peek(content: Buffer | string): Record<string, unknown> | undefined {
  try {
    const o = JSON.parse(typeof content === 'string' ? content : content.toString('utf8')) as Record<string, unknown>;
    if (!o || typeof o !== 'object') return undefined;
    const inner = typeof o['oslo.message'] === 'string' ? (JSON.parse(o['oslo.message']) as unknown) : o;
    return inner && typeof inner === 'object' && !Array.isArray(inner) ? (inner as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** JSON-encodes `value` and refuses it when it exceeds `limit` bytes (MessageTooLarge). */
export function encodeBounded(value: unknown, what: string, limit: number): string {
  const body = encodeJson(value, what);
  // Every UTF-16 unit is at most 3 UTF-8 bytes: only long strings need counting.
  if (body.length * 3 > limit) {
    const size = Buffer.byteLength(body);
    if (size > limit) throw new MessageTooLarge(size, limit);
  }
  return body;
}
