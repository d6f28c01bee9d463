import { createRequire } from 'node:module';
import path from 'node:path';
import type { ChannelModel } from 'amqplib';

/**
 * Content header frames whose headers table amqplib cannot decode, decoded here instead.
 *
 * Why: RabbitMQ takes field types in a message's headers that amqplib 2.3's decoder does not
 * know (`L`, an unsigned 64-bit integer, is one), and amqplib throws `Unexpected type tag` from
 * inside its frame parser. That error closes the connection with the delivery unsettled, so the
 * broker hands the same message to the next connection, which dies the same way: one message
 * from any publisher on the vhost took a server's (or a listener's, or a client's reply)
 * consumers off the broker until someone purged the queue. Decoded here, the delivery reaches
 * hermod's consumer like any other, which answers or drops it by its body.
 *
 * Only a header frame amqplib failed on comes here; every other frame is amqplib's as before.
 */

const FRAME_HEADER = 2;
/** The content class of `basic` (class 60): the only one with content RabbitMQ sends. */
const BASIC_CLASS = 60;

interface ParsedFrame {
  type: number;
  channel: number;
  size: number;
  payload: Buffer;
  rest: Buffer;
}

interface FrameModule {
  parseFrame(bin: Buffer, max: number): ParsedFrame | false;
  decodeFrame(frame: ParsedFrame): unknown;
}

/** The parts of amqplib's connection that {@link decodeHeadersLeniently} relies on. */
interface AmqplibConnection {
  rest: Buffer;
  maxFrameSize: number;
  recvSinceLastCheck: boolean;
  stream: { read(): Buffer | null };
  recvFrame(): unknown;
}

/** amqplib's frame module, reached by its file (its package exports only the API). */
const frames = ((): FrameModule | undefined => {
  try {
    const require = createRequire(import.meta.url);
    const m = require(path.join(path.dirname(require.resolve('amqplib')), 'lib', 'frame.js')) as Partial<FrameModule>;
    return typeof m.parseFrame === 'function' && typeof m.decodeFrame === 'function' ? (m as FrameModule) : undefined;
  } catch {
    return undefined;
  }
})();

/**
 * Makes the connection of `model` decode a content header frame amqplib's decoder refuses with
 * {@link decodeBasicProperties}. Left as it is when amqplib's internals do not look like the
 * version this was written against.
 */
export function decodeHeadersLeniently(model: ChannelModel): void {
  const conn = (model as unknown as { connection?: Partial<AmqplibConnection> }).connection;
  if (!frames || !conn || typeof conn.recvFrame !== 'function' || !Buffer.isBuffer(conn.rest)) return;
  if (typeof conn.maxFrameSize !== 'number' || typeof conn.stream?.read !== 'function') return;
  const { parseFrame, decodeFrame } = frames;
  // amqplib's own recvFrame, with the decode of a header frame caught.
  conn.recvFrame = function (this: AmqplibConnection): unknown {
    for (;;) {
      const frame = parseFrame(this.rest, this.maxFrameSize);
      if (!frame) {
        const incoming = this.stream.read();
        if (incoming === null) return false;
        this.recvSinceLastCheck = true;
        this.rest = Buffer.concat([this.rest, incoming]);
        continue;
      }
      this.rest = frame.rest;
      try {
        return decodeFrame(frame);
      } catch (err) {
        if (frame.type !== FRAME_HEADER || frame.payload.length < 14 || frame.payload.readUInt16BE(0) !== BASIC_CLASS) throw err;
        // As amqplib's header frame: class, channel, body size, properties.
        return {
          id: BASIC_CLASS,
          channel: frame.channel,
          size: Number(frame.payload.readBigUInt64BE(4)),
          fields: decodeBasicProperties(frame.payload.subarray(12)),
        };
      }
    }
  };
}

/** `basic` properties in wire order after the headers: name, flag bit, kind. */
const AFTER_HEADERS: Array<[string, number, 'octet' | 'short' | 'timestamp']> = [
  ['deliveryMode', 0x1000, 'octet'],
  ['priority', 0x0800, 'octet'],
  ['correlationId', 0x0400, 'short'],
  ['replyTo', 0x0200, 'short'],
  ['expiration', 0x0100, 'short'],
  ['messageId', 0x0080, 'short'],
  ['timestamp', 0x0040, 'timestamp'],
  ['type', 0x0020, 'short'],
  ['userId', 0x0010, 'short'],
  ['appId', 0x0008, 'short'],
  ['clusterId', 0x0004, 'short'],
];

/**
 * The properties of a `basic` content header (after its class, weight and body size), as
 * amqplib's decoder returns them, with a headers table of any field type RabbitMQ passes on.
 */
export function decodeBasicProperties(buf: Buffer): Record<string, unknown> {
  const flags = buf.readUInt16BE(0);
  if (flags === 0) return {};
  const fields: Record<string, unknown> = {};
  let at = 2;
  const shortString = () => {
    const len = buf.readUInt8(at);
    const v = buf.toString('utf8', at + 1, at + 1 + len);
    at += 1 + len;
    return v;
  };
  fields.contentType = flags & 0x8000 ? shortString() : undefined;
  fields.contentEncoding = flags & 0x4000 ? shortString() : undefined;
  if (flags & 0x2000) {
    const len = buf.readUInt32BE(at);
    fields.headers = decodeTable(buf.subarray(at + 4, at + 4 + len));
    at += 4 + len;
  } else {
    fields.headers = undefined;
  }
  for (const [name, bit, kind] of AFTER_HEADERS) {
    if (!(flags & bit)) {
      fields[name] = undefined;
    } else if (kind === 'octet') {
      fields[name] = buf.readUInt8(at);
      at += 1;
    } else if (kind === 'timestamp') {
      fields[name] = Number(buf.readBigUInt64BE(at));
      at += 8;
    } else {
      fields[name] = shortString();
    }
  }
  return fields;
}

/**
 * A field table. Each value is length-delimited by its type, and the table by its own length:
 * a type unknown even here ends that table (or array) where it stands, and what follows it in
 * the frame is read as usual.
 */
export function decodeTable(buf: Buffer, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  let at = 0;
  while (at < buf.length) {
    const len = buf.readUInt8(at);
    const key = buf.toString('utf8', at + 1, at + 1 + len);
    const value = decodeValue(buf, at + 1 + len, depth);
    if (!value) break;
    // A key of the peer's is data, never a prototype (`__proto__` as a header name).
    Object.defineProperty(out, key, { value: value.v, enumerable: true, writable: true, configurable: true });
    at = value.end;
  }
  return out;
}

function decodeArray(buf: Buffer, depth: number): unknown[] {
  const out: unknown[] = [];
  let at = 0;
  while (at < buf.length) {
    const value = decodeValue(buf, at, depth);
    if (!value) break;
    out.push(value.v);
    at = value.end;
  }
  return out;
}

/**
 * Tables and arrays nested deeper than this are not decoded (null): a frame of nested tables
 * could otherwise take the decoder's recursion past the call stack.
 */
const MAX_DEPTH = 64;

/**
 * One field value at `at`: its value as amqplib gives each type it knows, and where the next
 * starts; undefined for a type whose length cannot be known.
 */
function decodeValue(buf: Buffer, at: number, depth: number): { v: unknown; end: number } | undefined {
  const tag = String.fromCharCode(buf[at]!);
  const p = at + 1;
  const sized = (len: number) => ({ start: p + 4, end: p + 4 + len });
  switch (tag) {
    case 't':
      return { v: buf[p] !== 0, end: p + 1 };
    case 'b':
      return { v: buf.readInt8(p), end: p + 1 };
    case 'B':
      return { v: buf.readUInt8(p), end: p + 1 };
    case 's':
    case 'U':
      return { v: buf.readInt16BE(p), end: p + 2 };
    case 'u':
      return { v: buf.readUInt16BE(p), end: p + 2 };
    case 'I':
      return { v: buf.readInt32BE(p), end: p + 4 };
    case 'i':
      return { v: buf.readUInt32BE(p), end: p + 4 };
    case 'l':
      return { v: Number(buf.readBigInt64BE(p)), end: p + 8 };
    case 'L':
      return { v: Number(buf.readBigUInt64BE(p)), end: p + 8 };
    case 'f':
      return { v: buf.readFloatBE(p), end: p + 4 };
    case 'd':
      return { v: buf.readDoubleBE(p), end: p + 8 };
    case 'D':
      return { v: { '!': 'decimal', value: { places: buf[p], digits: buf.readUInt32BE(p + 1) } }, end: p + 5 };
    case 'T':
      return { v: { '!': 'timestamp', value: Number(buf.readBigUInt64BE(p)) }, end: p + 8 };
    case 'V':
      return { v: null, end: p };
    case 'S': {
      const { start, end } = sized(buf.readUInt32BE(p));
      return { v: buf.toString('utf8', start, end), end };
    }
    case 'x': {
      const { start, end } = sized(buf.readUInt32BE(p));
      return { v: buf.subarray(start, end), end };
    }
    case 'F': {
      const { start, end } = sized(buf.readUInt32BE(p));
      return { v: depth < MAX_DEPTH ? decodeTable(buf.subarray(start, end), depth + 1) : null, end };
    }
    case 'A': {
      const { start, end } = sized(buf.readUInt32BE(p));
      return { v: depth < MAX_DEPTH ? decodeArray(buf.subarray(start, end), depth + 1) : null, end };
    }
    default:
      return undefined;
  }
}
