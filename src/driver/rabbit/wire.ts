import type { Options } from 'amqplib';
import { NestingTooDeep, SerializationError } from '../../core/errors.js';
import type { Failure } from '../../core/failure.js';
import { DEFAULT_MAX_JSON_DEPTH, parsePeerJson } from '../../core/json.js';
import { setOwn } from '../../core/plain.js';
import type { Context } from '../../core/serializer.js';
import { JOB_REPLY_KEY, type RpcRequest } from '../driver.js';

/**
 * oslo.messaging's rabbit wire format (WIRE.md part 1): the message properties and the keys of
 * the message dicts that travel inside the 2.0 envelope. Key order follows oslo's, so bodies
 * are byte-for-byte what oslo would send for the same input.
 */

/**
 * The (empty) headers of every message, one frozen object for all: amqplib makes each publish's
 * header table with `Object.create(options.headers)`, and a new prototype object per publish
 * costs V8 a prototype map each time (amqplib's `Args.publish` was 5 % of a caller's CPU).
 */
const NO_HEADERS = Object.freeze({});

/**
 * The publish options of one message with oslo's properties: JSON, persistent (even on transient
 * queues), priority 0, no headers; `expiration` (ms, as a string) for a call request. Written out
 * as one literal on purpose: amqplib reads about twenty fields of it, and an object made by
 * spreading shared properties and adding these made its `Args.publish` take ~4.4 µs instead of
 * ~70 ns per message (1,000,000 calls in a loop, Node 20).
 */
export function publishProps(mandatory: boolean, expiration: string | undefined): Options.Publish {
  return {
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    deliveryMode: 2,
    priority: 0,
    headers: NO_HEADERS,
    mandatory,
    expiration,
  };
}

const CONTEXT_PREFIX = '_context_';
const UNDERSCORE = 0x5f;

/**
 * Context keys with and without their `_context_` prefix, both ways. A key made by concatenation
 * or `slice` per message is a new string that V8 must look up in its string table each time it
 * is used as a property key; a real (OpenStack) context has 20-30 keys, and flattening or
 * splitting them that way was 8 % of a caller's and 5 % of a server's CPU with 25 keys. The keys
 * come from peers, so a table holds at most {@link MAX_CACHED_KEYS} keys (when full it starts
 * over) of at most {@link MAX_CACHED_KEY_LENGTH} characters: a longer key is made each time.
 */
export class KeyTable {
  private readonly map = new Map<string, string>();

  constructor(private readonly make: (key: string) => string) {}

  /** Keys held. */
  get size(): number {
    return this.map.size;
  }

  get(key: string): string {
    if (key.length > MAX_CACHED_KEY_LENGTH) return this.make(key);
    let v = this.map.get(key);
    if (v === undefined) {
      if (this.map.size >= MAX_CACHED_KEYS) this.map.clear();
      v = this.make(key);
      this.map.set(key, v);
    }
    return v;
  }
}

/** Distinct context keys each {@link KeyTable} remembers. */
export const MAX_CACHED_KEYS = 1024;
/** Longest context key a {@link KeyTable} remembers (prefix included): 1,024 of them hold well under 1 MB. */
export const MAX_CACHED_KEY_LENGTH = 128;

const prefixed = new KeyTable((k) => `${CONTEXT_PREFIX}${k}`);
const unprefixed = new KeyTable((k) => k.slice(CONTEXT_PREFIX.length));

function addContext(msg: Record<string, unknown>, ctx: Context | undefined): void {
  if (!ctx) return;
  // for...in, not Object.entries: no array per key.
  for (const k in ctx) {
    if (!Object.hasOwn(ctx, k)) continue;
    let v: unknown;
    try {
      v = ctx[k];
    } catch (err) {
      // A getter that throws: the other drivers read the context inside JSON encoding and give a
      // SerializationError; here it is read before, and the raw error escaped untyped.
      const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
      throw new SerializationError(`cannot encode the context as JSON: its key '${k}' cannot be read: ${reason}`, { cause: err });
    }
    msg[prefixed.get(k)] = v;
  }
}

/** A request dict (call or cast): method, args, namespace, version, the flattened context, `_unique_id`. */
export function requestDict(ctx: Context | undefined, request: RpcRequest, uniqueId: string): Record<string, unknown> {
  const msg: Record<string, unknown> = { method: request.method, args: request.args ?? {} };
  if (request.namespace !== undefined) msg.namespace = request.namespace;
  if (request.version !== undefined) msg.version = request.version;
  addContext(msg, ctx);
  msg._unique_id = uniqueId;
  return msg;
}

/**
 * Makes a request dict a call: `_msg_id`, `_reply_q`, and `_timeout`, which is always present
 * and holds the call-monitor timeout in seconds (not the call timeout), or null.
 */
export function addCallFields(
  msg: Record<string, unknown>,
  msgId: string,
  replyQueue: string,
  callMonitorTimeoutMs: number | undefined,
): void {
  msg._msg_id = msgId;
  msg._reply_q = replyQueue;
  msg._timeout = callMonitorTimeoutMs ? callMonitorTimeoutMs / 1000 : null;
}

/** A notification dict: the notifier's fields, the flattened context, `_unique_id`. */
export function notificationDict(ctx: Context | undefined, message: Record<string, unknown>, uniqueId: string): Record<string, unknown> {
  const msg: Record<string, unknown> = { ...message };
  addContext(msg, ctx);
  msg._unique_id = uniqueId;
  return msg;
}

/** What a server answers: a final reply, or a call-monitor heartbeat (`ending: false`, no result). */
export interface ReplyContent {
  result?: unknown;
  failure?: Failure | null;
  ending: boolean;
  /** The result is the token of a job started for this request (see `Reply.job`). */
  job?: true;
}

/** A reply dict; the failure travels as a JSON string, as oslo sends it. */
export function replyDict(msgId: string, reply: ReplyContent, uniqueId: string): Record<string, unknown> {
  const dict: Record<string, unknown> = {
    result: reply.result ?? null,
    failure: reply.failure ? JSON.stringify(reply.failure) : null,
    ending: reply.ending,
    _msg_id: msgId,
    _unique_id: uniqueId,
  };
  if (reply.job) dict[JOB_REPLY_KEY] = 1;
  return dict;
}

/** Where to answer a call: the caller's reply queue and the request's `_msg_id`. */
export interface ReplyAddress {
  replyQueue: string;
  msgId: string;
}

/** An incoming request or notification dict, split into its parts. */
export interface IncomingDict {
  ctx: Context;
  /** The keys that are neither context nor `_`-prefixed transport fields. */
  message: Record<string, unknown>;
  uniqueId: unknown;
  /** Set for calls (both `_msg_id` and `_reply_q` present). */
  replyTo: ReplyAddress | undefined;
  /** The caller's call-monitor timeout in ms, 0 when it has none. */
  callMonitorTimeout: number;
}

/**
 * Splits a decoded dict into context, message and reply information. Keys are copied as own
 * data properties: `_context___proto__` becomes an own `__proto__` key of the context (which
 * the dispatchers refuse), never the context's prototype.
 */
export function splitIncoming(data: Record<string, unknown>): IncomingDict {
  const ctx: Context = {};
  const message: Record<string, unknown> = {};
  for (const k of Object.keys(data)) {
    const v = data[k];
    if (k.startsWith(CONTEXT_PREFIX)) setOwn(ctx, unprefixed.get(k), v);
    else if (k.charCodeAt(0) !== UNDERSCORE) setOwn(message, k, v);
  }
  return {
    ctx,
    message,
    uniqueId: data._unique_id,
    replyTo: replyAddress(data),
    callMonitorTimeout: typeof data._timeout === 'number' && data._timeout > 0 ? data._timeout * 1000 : 0,
  };
}

/** The reply address of a request dict, if it is a call. */
export function replyAddress(data: Record<string, unknown> | undefined): ReplyAddress | undefined {
  if (!data || typeof data._msg_id !== 'string' || typeof data._reply_q !== 'string' || !data._msg_id || !data._reply_q) return undefined;
  return { replyQueue: data._reply_q, msgId: data._msg_id };
}

/**
 * A failure as it arrives in a reply: a JSON string (oslo), or an object (lenient). One that
 * cannot be read still fails the call, with what could be seen of it.
 */
export function parseFailure(f: unknown, maxDepth: number = DEFAULT_MAX_JSON_DEPTH): Failure {
  try {
    // The failure is JSON inside the reply's JSON: its own depth is checked as the reply's was
    // (a 5-million-deep one held a client's event loop for 3.5 s).
    const parsed = typeof f === 'string' ? parsePeerJson(f, 'the failure in a reply', maxDepth) : f;
    // "null" (or "0") is a failure that says nothing: the call failed, with an unreadable reason.
    // Read as no failure, the call succeeded with no result at all.
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Failure;
    throw new TypeError('not an object');
  } catch (err) {
    if (err instanceof NestingTooDeep) throw err;
    return {
      class: 'MalformedMessage',
      module: 'hermod',
      message: `unreadable failure: ${String(f).slice(0, 200)}`,
      tb: [],
      args: [],
      kwargs: {},
    };
  }
}
