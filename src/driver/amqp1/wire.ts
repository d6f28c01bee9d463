import type { Message } from 'rhea';
import { MalformedMessage, MessageTooLarge, NestingTooDeep } from '../../core/errors.js';
import { failureOf } from '../../core/failure.js';
import { DEFAULT_MAX_JSON_DEPTH, parsePeerJson } from '../../core/json.js';
import type { Context } from '../../core/serializer.js';
import { type Failure, JOB_REPLY_KEY, type Reply, type RpcRequest } from '../driver.js';
import { open, wrap } from '../envelope.js';

/*
 * oslo.messaging's amqp1 message bodies: one JSON string (an AMQP string section) per message.
 * A request is `{request, context[, call_monitor_timeout]}`, a notification `{request, context}`
 * with the notification (messagingv2: in the 2.0 envelope) as its request, a reply
 * `{response}` or `{failure}` (the failure JSON-encoded once more), a heartbeat a reply with no
 * body at all. Correlation travels in the AMQP properties: `message_id` and `reply_to` on the
 * request, `correlation_id` on the reply.
 */

/** The body of a call or cast; `callMonitorTimeoutMs` only for calls that have one. */
export function requestBody(request: RpcRequest, ctx: Context, callMonitorTimeoutMs?: number): Record<string, unknown> {
  const data: Record<string, unknown> = { request, context: ctx };
  if (callMonitorTimeoutMs) data.call_monitor_timeout = callMonitorTimeoutMs / 1000;
  return data;
}

/** The body of a notification: enveloped (2.0, messagingv2) unless `envelope` is `1.0`. */
export function notificationBody(
  message: Record<string, unknown>,
  ctx: Context,
  envelope: '1.0' | '2.0' | undefined,
): Record<string, unknown> {
  return { request: envelope === '1.0' ? message : wrap(message, 'notification'), context: ctx };
}

/** The body of a final reply. */
export function replyBody(reply: Reply): Record<string, unknown> {
  if (reply.failure) return failureBody(reply.failure);
  return reply.job ? { response: reply.result ?? null, [JOB_REPLY_KEY]: 1 } : { response: reply.result ?? null };
}

/** The body of a failure reply. */
export function failureBody(failure: Failure): Record<string, unknown> {
  return { failure: JSON.stringify(failure) };
}

/** The reply (or, without a body, the heartbeat) to a request. */
export function replyMessage(to: string, correlationId: unknown, body: string | undefined, ttl?: number): Message {
  const m = { to, correlation_id: correlationId as string } as Message;
  if (body !== undefined) m.body = body;
  if (ttl) m.ttl = ttl;
  return m;
}

/** The bad-input answer to a call: its error as an oslo failure. */
export function badInputBody(err: Error): Record<string, unknown> {
  return failureBody(failureOf(err));
}

/** What a message on the reply link carries. */
export type DecodedReply =
  | { kind: 'heartbeat'; id: string }
  | { kind: 'reply'; id: string; reply: Reply }
  | { kind: 'malformed'; id: string; error: MalformedMessage | MessageTooLarge };

/**
 * Decodes a message on the reply link; undefined when it has no string correlation id. A body
 * over `maxSize` bytes fails its call with MessageTooLarge unparsed, as a request's does at a
 * server: the router bounds what it forwards, a peer that is no router need not.
 */
export function decodeReply(
  message: Message,
  maxDepth = DEFAULT_MAX_JSON_DEPTH,
  maxSize = Number.POSITIVE_INFINITY,
): DecodedReply | undefined {
  const id = message.correlation_id;
  if (typeof id !== 'string') return undefined;
  const body = message.body as unknown;
  if (body === undefined || body === null) return { kind: 'heartbeat', id };
  const size = bodySize(body);
  if (size > maxSize) return { kind: 'malformed', id, error: new MessageTooLarge(size, maxSize) };
  let data: { response?: unknown; failure?: unknown; [JOB_REPLY_KEY]?: unknown };
  try {
    data = parsePeerJson(
      typeof body === 'string'
        ? body
        : Buffer.isBuffer(body)
          ? body.toString('utf8')
          : String((body as { content?: unknown }).content ?? body),
      'reply',
      maxDepth,
    ) as typeof data;
  } catch (err) {
    const error = err instanceof NestingTooDeep ? err : new MalformedMessage(`reply to ${id} is not valid JSON`, { cause: err });
    return { kind: 'malformed', id, error };
  }
  // oslo's amqp1 driver raises on a reply that is no dict; answering the call with null hid it.
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    return { kind: 'malformed', id, error: new MalformedMessage(`reply to ${id} is not a JSON object`) };
  }
  if (data.failure !== undefined && data.failure !== null) {
    try {
      // JSON inside the reply's JSON: its depth is checked as the reply's was.
      const failure = (
        typeof data.failure === 'string' ? parsePeerJson(data.failure, 'the failure in a reply', maxDepth) : data.failure
      ) as Failure;
      // "null" or "0" says nothing: read as no failure, the call succeeded with no result at all.
      if (failure === null || typeof failure !== 'object' || Array.isArray(failure)) {
        return { kind: 'malformed', id, error: new MalformedMessage(`failure in reply to ${id} is not a JSON object`) };
      }
      return { kind: 'reply', id, reply: { failure } };
    } catch (err) {
      if (err instanceof NestingTooDeep) return { kind: 'malformed', id, error: err };
      return { kind: 'malformed', id, error: new MalformedMessage(`failure in reply to ${id} is not valid JSON`, { cause: err }) };
    }
  }
  if (data[JOB_REPLY_KEY] === 1) return { kind: 'reply', id, reply: { result: data.response ?? null, job: true } };
  return { kind: 'reply', id, reply: { result: data.response ?? null } };
}

/** A decoded request or notification. */
export interface DecodedRequest {
  ctx: Context;
  /** The request (method, args, …) or the notification dict. */
  message: Record<string, unknown>;
  /** The caller's call-monitor timeout in ms, 0 without one. */
  callMonitorTimeout: number;
}

/**
 * Decodes the body of a request or notification, at most `maxSize` bytes. A request wrapped
 * in oslo's 2.0 envelope (notifications, some senders) is opened with its version checked.
 * Throws MalformedMessage (NestingTooDeep past `maxDepth`), MessageTooLarge or UnsupportedEnvelopeVersion.
 */
export function decodeRequest(body: unknown, maxSize: number, maxDepth = DEFAULT_MAX_JSON_DEPTH): DecodedRequest {
  // The size is checked before the body is converted or parsed: a huge body costs nothing more.
  const size = bodySize(body);
  if (size > maxSize) throw new MessageTooLarge(size, maxSize);
  const text = bodyText(body);
  if (text === undefined) throw new MalformedMessage('message body is not a JSON string');
  const data = parsePeerJson(text, 'message body', maxDepth) as { request?: unknown; context?: unknown; call_monitor_timeout?: unknown };
  if (!data || typeof data !== 'object') throw new MalformedMessage('message body is not a JSON object');
  let req = data.request as Record<string, unknown> | undefined;
  if (req && typeof req === 'object' && !Array.isArray(req)) req = open(req, maxDepth);
  if (!req || typeof req !== 'object' || Array.isArray(req)) throw new MalformedMessage('message has no request object');
  // As on RabbitMQ, where the context is made of _context_* keys and is always an object. A list
  // reached the endpoints as their context; a string, number or boolean became {} unseen.
  const ctx = data.context ?? {};
  if (typeof ctx !== 'object' || Array.isArray(ctx)) throw new MalformedMessage('message context is not a JSON object');
  return {
    ctx: ctx as Context,
    message: req,
    callMonitorTimeout: typeof data.call_monitor_timeout === 'number' ? data.call_monitor_timeout * 1000 : 0,
  };
}

/** A body's size in bytes (UTF-8 for strings) without copying it; 0 for anything else. */
export function bodySize(body: unknown): number {
  return typeof body === 'string' ? Buffer.byteLength(body) : Buffer.isBuffer(body) ? body.byteLength : 0;
}

/** A body's JSON text: an AMQP string, or binary data read as UTF-8. */
export function bodyText(body: unknown): string | undefined {
  return typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString('utf8') : undefined;
}
