import zlib from 'node:zlib';
import { MalformedMessage, MessageTooLarge } from '../../core/errors.js';

/**
 * Bodies compressed by kombu, as an oslo.messaging peer with `kombu_compression` set sends them
 * (calls, casts, replies and notifications alike): kombu compresses the JSON and names the codec
 * in the message's `compression` header, by content type. Reading them is what lets a hermod
 * service share a broker with such peers; without it their messages were refused as "not valid
 * JSON" and a hermod caller waited out its timeout for a reply a Python server had sent.
 */

type Inflate = (body: Buffer, limit: number) => Buffer;

/** Node's zstd (22.15 and later), when this Node has it. */
const zstd = (zlib as unknown as { zstdDecompressSync?: (b: Buffer, o: zlib.ZlibOptions) => Buffer }).zstdDecompressSync;

/**
 * kombu's codecs by the content type it writes in the header. kombu's "gzip" is
 * `zlib.compress`, so zlib-framed deflate; `unzipSync` also takes gzip framing, which costs
 * nothing and accepts what a non-kombu publisher means by the same name.
 */
const CODECS: Record<string, Inflate | undefined> = {
  'application/x-gzip': (b, limit) => zlib.unzipSync(b, { maxOutputLength: limit }),
  'application/x-brotli': (b, limit) => zlib.brotliDecompressSync(b, { maxOutputLength: limit }),
  'application/zstd': zstd ? (b, limit) => zstd(b, { maxOutputLength: limit }) : undefined,
};

/** kombu codecs hermod cannot read: Node has no bzip2, lzma or lz4. */
const UNREADABLE = ['application/x-bz2', 'application/x-lzma', 'application/x-lz4'];

/** Content types of the codecs this Node reads. */
export const READABLE_COMPRESSION = Object.keys(CODECS).filter((k) => CODECS[k]);

/**
 * The message's `compression` header: undefined for an uncompressed body. amqplib gives a
 * longstr header as a string, a byte-array one as a Buffer.
 */
export function compressionOf(headers: Record<string, unknown> | undefined): string | undefined {
  const v = headers?.compression;
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('latin1');
  return String(v);
}

/**
 * `content` decompressed by the codec `compression` names, at most `limit` bytes of it
 * (MessageTooLarge past that: a small body can inflate a thousandfold, and the limit is what
 * bounds a receiver's memory). MalformedMessage for a codec hermod cannot read or a body that
 * does not decompress.
 */
export function decompressBody(content: Buffer, compression: string, limit: number): Buffer {
  const codec = CODECS[compression];
  if (!codec) {
    const why =
      UNREADABLE.includes(compression) || compression === 'application/zstd' ? 'which this Node cannot decompress' : 'an unknown codec';
    throw new MalformedMessage(
      `message body compressed with ${JSON.stringify(compression.slice(0, 64))}, ${why} (hermod reads ${READABLE_COMPRESSION.join(', ')}): set kombu_compression on the sending peer to one of them, or unset it`,
    );
  }
  try {
    return codec(content, limit);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      const tooLarge = new MessageTooLarge(content.length, limit);
      tooLarge.message = `message body of ${content.length} bytes decompresses (${compression}) to more than the limit of ${limit} bytes`;
      throw tooLarge;
    }
    throw new MalformedMessage(`message body does not decompress as ${compression}: ${(err as Error).message}`, { cause: err });
  }
}
