import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeBasicProperties } from '../../src/driver/rabbit/header-frames.js';

const t = suite('content headers amqplib cannot decode, decoded as amqplib would');

// amqplib's own encoder and decoder, reached by path (its package exports hide them).
const require = createRequire(import.meta.url);
const defs = require(join(dirname(require.resolve('amqplib')), 'lib/defs.js')) as {
  encodeProperties(id: number, channel: number, size: number, fields: Record<string, unknown>): Buffer;
  decode(id: number, buf: Buffer): Record<string, unknown>;
};
/** The properties part of an encoded content header frame (after type, channel, size, class, weight and body size). */
const propertiesOf = (frame: Buffer) => frame.subarray(7 + 12, frame.length - 1);

t('every property, and headers of every type amqplib knows, decode as amqplib decodes them', () => {
  const full = {
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    headers: { s: 'x', i: -5, big: 2 ** 40, f: 1.5, t: true, n: null, nested: { a: [1, 'two', { b: false }] }, bin: Buffer.from([1, 2]) },
    deliveryMode: 2,
    priority: 7,
    correlationId: 'c1',
    replyTo: 'reply_q',
    expiration: '60000',
    messageId: 'm1',
    timestamp: 1_700_000_000,
    type: 'call',
    userId: 'guest',
    appId: 'hermod',
    clusterId: 'k',
  };
  for (const fields of [full, {}, { headers: {} }, { replyTo: 'r', timestamp: 5 }, { contentType: 'a', priority: 0 }]) {
    const props = propertiesOf(defs.encodeProperties(60, 1, 10, fields));
    assert.equal(decodeBasicProperties(props), defs.decode(60, props), JSON.stringify(Object.keys(fields)));
  }
});

t('L (unsigned 64-bit) decodes; an unknown type ends its table and the properties after it are still read', () => {
  const props = propertiesOf(defs.encodeProperties(60, 1, 10, { headers: { k: 'XXXXXXXX', after: 'yes' }, replyTo: 'rq', messageId: 'm' }));
  const needle = Buffer.from('\x01kS\x00\x00\x00\x08XXXXXXXX', 'latin1');
  const at = props.indexOf(needle);
  const odd = Buffer.from(props);
  Buffer.concat([Buffer.from('\x01kL', 'latin1'), Buffer.from([0, 0, 0, 1, 0, 0, 0, 2]), Buffer.from('\x02zzV', 'latin1')]).copy(odd, at);
  assert.throws(() => defs.decode(60, odd), /Unexpected type tag "L"/);
  const got = decodeBasicProperties(odd);
  assert.equal(got.headers, { k: 2 ** 32 + 2, zz: null, after: 'yes' });
  assert.is(got.replyTo, 'rq');
  assert.is(got.messageId, 'm');
  const unknown = Buffer.from(props);
  unknown[at + 2] = 'Q'.charCodeAt(0);
  const partial = decodeBasicProperties(unknown);
  assert.equal(partial.headers, {}, 'the table ends at the unknown type');
  assert.equal([partial.replyTo, partial.messageId], ['rq', 'm']);
});

t('a header named __proto__ is data, and tables nested past 64 levels are not walked', () => {
  const props = propertiesOf(defs.encodeProperties(60, 1, 10, { headers: { ['__proto__']: 'x' } }));
  const h = decodeBasicProperties(props).headers as Record<string, unknown>;
  assert.is(Object.getPrototypeOf(h), Object.prototype);
  assert.is(Object.getOwnPropertyDescriptor(h, '__proto__')?.value, 'x');
  let deep: Record<string, unknown> = { leaf: 1 };
  for (let i = 0; i < 100; i++) deep = { d: deep };
  let got = decodeBasicProperties(propertiesOf(defs.encodeProperties(60, 1, 10, { headers: deep }))).headers as Record<string, unknown>;
  let levels = 0;
  while (got && typeof got === 'object' && 'd' in got) {
    got = got.d as Record<string, unknown>;
    levels++;
  }
  assert.is(levels, 65);
  assert.is(got, null);
});

t.run();
