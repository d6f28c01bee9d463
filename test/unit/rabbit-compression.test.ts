import zlib from 'node:zlib';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MalformedMessage, MessageTooLarge } from '../../src/core/errors.js';
import { compressionOf, decompressBody, READABLE_COMPRESSION } from '../../src/driver/rabbit/compression.js';

// kombu's codecs by content type (kombu/compression.py): 'application/x-gzip' is zlib.compress.
const body = Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': '{"method": "ping"}' }));

test('kombu gzip (zlib framing), gzip framing and brotli decompress to the body', () => {
  assert.equal(decompressBody(zlib.deflateSync(body), 'application/x-gzip', 1 << 20), body);
  assert.equal(decompressBody(zlib.gzipSync(body), 'application/x-gzip', 1 << 20), body);
  assert.equal(decompressBody(zlib.brotliCompressSync(body), 'application/x-brotli', 1 << 20), body);
  assert.ok(READABLE_COMPRESSION.includes('application/x-gzip') && READABLE_COMPRESSION.includes('application/x-brotli'));
});

test('a body that inflates past the limit is MessageTooLarge, and nothing past the limit is allocated', () => {
  // 64 MB of zeros in about 64 kB: a thousandfold, within one message of the limit.
  const bomb = zlib.deflateSync(Buffer.alloc(64 << 20));
  assert.ok(bomb.length < 100_000);
  const before = process.memoryUsage().arrayBuffers;
  try {
    decompressBody(bomb, 'application/x-gzip', 1 << 20);
    assert.unreachable('inflated');
  } catch (err) {
    assert.instance(err, MessageTooLarge);
    assert.match((err as Error).message, /decompresses \(application\/x-gzip\) to more than the limit of 1048576 bytes/);
  }
  assert.ok(process.memoryUsage().arrayBuffers - before < 16 << 20, 'not inflated whole');
});

test('codecs hermod cannot read, an unknown one and a corrupt body are MalformedMessage saying so', () => {
  const refused = (c: string, re: RegExp, content = body) => {
    try {
      decompressBody(content, c, 1 << 20);
    } catch (err) {
      assert.instance(err, MalformedMessage);
      assert.match((err as Error).message, re);
      return;
    }
    assert.unreachable(c);
  };
  refused(
    'application/x-bz2',
    /compressed with "application\/x-bz2", which this Node cannot decompress \(hermod reads application\/x-gzip/,
  );
  refused('application/x-lzma', /cannot decompress/);
  refused('x'.repeat(5000), /an unknown codec/);
  assert.ok(
    !/x{65}/.test(
      (() => {
        try {
          decompressBody(body, 'x'.repeat(5000), 10);
        } catch (e) {
          return (e as Error).message;
        }
        return '';
      })(),
    ),
    'the name is cut',
  );
  refused('application/x-gzip', /does not decompress as application\/x-gzip/);
});

test('the compression header as amqplib gives it: absent, a longstr, a byte array', () => {
  assert.is(compressionOf(undefined), undefined);
  assert.is(compressionOf({}), undefined);
  assert.is(compressionOf({ compression: 'application/x-gzip' }), 'application/x-gzip');
  assert.is(compressionOf({ compression: Buffer.from('application/x-brotli') }), 'application/x-brotli');
});

test.run();
