import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { ChannelModel } from 'amqplib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { encodePublish, encodePublishes, type PublishFields } from '../../src/driver/rabbit/publish-frames.js';

const t = suite('basic.publish frames encoded in one buffer (byte for byte amqplib)');

// amqplib's own connection and argument code, reached by path (its package exports hide them).
const require = createRequire(import.meta.url);
const amqplibDir = dirname(require.resolve('amqplib'));
const { Connection } = require(join(amqplibDir, 'lib/connection.js')) as {
  Connection: { prototype: { sendMessage: (...a: unknown[]) => boolean; sendContent: (...a: unknown[]) => boolean } };
};
const Args = require(join(amqplibDir, 'lib/api_args.js')) as {
  publish(exchange: string, key: string, options?: Record<string, unknown>): PublishFields;
};
const BASIC_PUBLISH = 3932200;
/** A seeded generator (mulberry32): the same cases on every run. */
function seeded(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = seeded(0x5eed);
const BASIC_PROPERTIES = 60;

/** What amqplib itself writes for a publish: all chunks, concatenated. */
function amqplibBytes(channel: number, fields: PublishFields, content: Buffer, frameMax = 131072): Buffer {
  const chunks: Buffer[] = [];
  const conn = {
    channels: [] as unknown[],
    frameMax,
    sentSinceLastCheck: false,
    sendContent: Connection.prototype.sendContent,
  };
  conn.channels[channel] = { buffer: { write: (b: Buffer) => chunks.push(Buffer.from(b)) > 0 } };
  Connection.prototype.sendMessage.call(conn, channel, BASIC_PUBLISH, fields, BASIC_PROPERTIES, fields, content);
  return Buffer.concat(chunks);
}

function same(channel: number, exchange: string, key: string, options: Record<string, unknown>, content: Buffer, frameMax = 131072) {
  const fields = Args.publish(exchange, key, options);
  const ours = encodePublish(channel, fields, content, frameMax);
  assert.ok(ours, `encoded: ${JSON.stringify(options)}`);
  assert.equal(ours.toString('hex'), amqplibBytes(channel, Args.publish(exchange, key, options), content, frameMax).toString('hex'));
}

t("hermod's own publications (call requests, replies, casts) encode exactly as amqplib's", () => {
  const body = Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': '{"method":"echo"}' }));
  const base = { contentType: 'application/json', contentEncoding: 'utf-8', deliveryMode: 2, priority: 0, headers: Object.freeze({}) };
  same(1, 'openstack', 'topic.server', { ...base, mandatory: true, expiration: '30000' }, body);
  same(2, '', 'reply_0123456789abcdef0123456789abcdef', { ...base, mandatory: true, expiration: undefined }, body);
  same(3, 'openstack', 'topic', { ...base, mandatory: false }, body);
  same(65535, 'x', 'y', { ...base }, Buffer.alloc(0));
});

t('every other property, unicode strings and boundary sizes encode exactly as amqplib', () => {
  const options = {
    contentType: 'text/plain; charset=utf-8',
    contentEncoding: 'gzip',
    persistent: true,
    priority: 255,
    correlationId: 'côrrélation-✓',
    replyTo: 'amq.rabbitmq.reply-to.g1h2AA==',
    expiration: 1500,
    messageId: 'm'.repeat(255),
    type: 'τύπος',
    userId: 'guest',
    appId: 'hermod',
    clusterId: '',
  };
  same(7, 'ëxchange', 'ключ.ключ', options, Buffer.from('päyload ✓'));
  same(7, '', '', {}, Buffer.from('x'));
  same(7, 'e'.repeat(255), 'k'.repeat(255), { mandatory: true }, Buffer.from('x'));
  // A body exactly filling one frame, and bodies around amqplib's one-buffer threshold (2,048 bytes).
  for (const size of [2000, 2030, 2048, 4096 - 8]) same(9, 'e', 'k', { contentType: 'a' }, Buffer.alloc(size, 0x61), 4096);
  // Random property sets.
  const names = ['contentType', 'contentEncoding', 'correlationId', 'replyTo', 'messageId', 'type', 'userId', 'appId', 'clusterId'];
  for (let i = 0; i < 300; i++) {
    const o: Record<string, unknown> = {};
    for (const n of names) if (random() < 0.5) o[n] = 'v'.repeat(Math.floor(random() * 40));
    if (random() < 0.5) o.deliveryMode = Math.floor(random() * 3);
    if (random() < 0.5) o.priority = Math.floor(random() * 10);
    if (random() < 0.5) o.expiration = String(Math.floor(random() * 1e6));
    if (random() < 0.5) o.mandatory = true;
    if (random() < 0.3) o.headers = null;
    same(1 + (i % 5), `ex${i}`, `key.${i}`, o, Buffer.alloc(Math.floor(random() * 600), i & 0xff));
  }
});

t('frames handed out stay intact while later ones are encoded (slabs are never written twice)', () => {
  const kept: Array<[Buffer, Buffer]> = [];
  for (let i = 0; i < 400; i++) {
    const content = Buffer.alloc(1 + ((i * 7919) % 3000), i & 0xff);
    const ours = encodePublish(1, Args.publish('e', `k${i}`, { replyTo: `r${i}` }), content, 131072);
    assert.ok(ours);
    kept.push([ours, amqplibBytes(1, Args.publish('e', `k${i}`, { replyTo: `r${i}` }), content)]);
  }
  for (const [ours, theirs] of kept) assert.ok(ours.equals(theirs));
});

t('messages with every string at its longest, across many slab boundaries, stay exact', () => {
  const long = (c: string) => c.repeat(255);
  const options = {
    contentType: long('a'),
    contentEncoding: long('b'),
    correlationId: long('c'),
    replyTo: long('d'),
    expiration: '9'.repeat(255),
    messageId: long('e'),
    type: long('f'),
    userId: long('g'),
    appId: long('h'),
    clusterId: long('i'),
    deliveryMode: 2,
    priority: 9,
    headers: {},
  };
  const kept: Array<[Buffer, Buffer]> = [];
  for (let i = 0; i < 600; i++) {
    // Sizes that put each message's start at a different offset in its slab.
    const content = Buffer.alloc((i * 97) % 3000, 0x30 + (i % 10));
    const ours = encodePublish(3, Args.publish(long('x'), long('y'), options), content, 131072);
    assert.ok(ours);
    kept.push([ours, amqplibBytes(3, Args.publish(long('x'), long('y'), options), content)]);
  }
  for (const [ours, theirs] of kept) assert.ok(ours.equals(theirs));
});

t('through the connection: the same chunks as amqplib (its channel buffer counts writes) and the same flow-control answer', () => {
  const BASE = { contentType: 'application/json', deliveryMode: 2, headers: {} };
  for (const [size, long] of [
    [10, false],
    [2000, false],
    [2100, false],
    [60000, false],
    [0, true],
    [3000, true],
  ] as Array<[number, boolean]>) {
    const options = long
      ? {
          ...BASE,
          messageId: 'm'.repeat(255),
          correlationId: 'c'.repeat(255),
          type: 't'.repeat(255),
          appId: 'a'.repeat(255),
          userId: 'u'.repeat(255),
          clusterId: 'k'.repeat(255),
          replyTo: 'r'.repeat(255),
          expiration: '1'.repeat(255),
        }
      : BASE;
    const content = Buffer.alloc(size, 0x62);
    for (const refuseFrom of [0, 1, 2, 3, 99]) {
      const run = (ours: boolean) => {
        const chunks: Buffer[] = [];
        const conn = {
          channels: [undefined, { buffer: { write: (b: Buffer) => chunks.push(Buffer.from(b)) <= refuseFrom } }],
          frameMax: 131072,
          sentSinceLastCheck: false,
          sendContent: Connection.prototype.sendContent,
          sendMessage: Connection.prototype.sendMessage,
        };
        if (ours) encodePublishes({ connection: conn } as unknown as ChannelModel);
        assert.is(conn.sendMessage !== Connection.prototype.sendMessage, ours, ours ? 'installed' : 'plain amqplib');
        const fields = Args.publish('e'.repeat(200), 'k'.repeat(200), options);
        const answer = conn.sendMessage(1, BASIC_PUBLISH, fields, BASIC_PROPERTIES, fields, content);
        return { answer, chunks: chunks.map((c) => c.toString('hex')), sent: conn.sentSinceLastCheck };
      };
      assert.equal(run(true), run(false), `${size} bytes, long properties ${long}, writes refused from #${refuseFrom}`);
    }
  }
});

t('what it does not handle is left to amqplib: header entries, a timestamp, large bodies, values amqplib refuses', () => {
  const body = Buffer.from('x');
  const none = (fields: PublishFields, content = body, frameMax = 131072) =>
    assert.is(encodePublish(1, fields, content, frameMax), undefined);
  none(Args.publish('e', 'k', { headers: { a: 1 } }));
  none(Args.publish('e', 'k', { CC: 'other' }));
  none(Args.publish('e', 'k', { timestamp: 1700000000 }));
  none(Args.publish('e', 'k', {}), Buffer.alloc(4096 - 7), 4096);
  none(Args.publish('e', 'k', {}), body, 0);
  none(Args.publish('e'.repeat(256), 'k', {}));
  none(Args.publish('e', 'k', { contentType: 5 }));
  none(Args.publish('e', 'k', { priority: 256 }));
  none(Args.publish('e', 'k', { deliveryMode: 1.5 }));
  none(Args.publish('e', 'k', { messageId: 'é'.repeat(128) }));
});

t('on a connection, publishes it handles are written in one buffer, the rest by amqplib; other methods untouched', () => {
  const writes: Buffer[] = [];
  let originalCalls = 0;
  const conn = {
    channels: [undefined, { buffer: { write: (b: Buffer) => writes.push(b) > 0 } }],
    frameMax: 131072,
    sentSinceLastCheck: false,
    sendContent: Connection.prototype.sendContent,
    sendMessage(...args: unknown[]) {
      originalCalls++;
      return Connection.prototype.sendMessage.apply(this, args);
    },
  };
  encodePublishes({ connection: conn } as unknown as ChannelModel);
  assert.is(writes.length, 0, 'checking the installed amqplib on install sends nothing');
  originalCalls = 0;
  const fields = Args.publish('e', 'k', { contentType: 'application/json' });
  assert.ok(conn.sendMessage(1, BASIC_PUBLISH, fields, BASIC_PROPERTIES, fields, Buffer.from('{}')));
  assert.is(originalCalls, 0);
  assert.is(writes.length, 1, 'one write for the three frames');
  assert.ok(conn.sentSinceLastCheck, 'heartbeats see the connection as busy');
  assert.equal(writes[0], amqplibBytes(1, fields, Buffer.from('{}')));
  const withHeaders = Args.publish('e', 'k', { headers: { a: 'b' } });
  conn.sendMessage(1, BASIC_PUBLISH, withHeaders, BASIC_PROPERTIES, withHeaders, Buffer.from('{}'));
  assert.is(originalCalls, 1);
  assert.equal(Buffer.concat(writes.slice(1)), amqplibBytes(1, Args.publish('e', 'k', { headers: { a: 'b' } }), Buffer.from('{}')));
  // An amqplib whose encoder writes anything else for the sample publications is left alone.
  const other = {
    channels: [undefined, { buffer: { write: () => true } }],
    frameMax: 131072,
    sentSinceLastCheck: false,
    sendContent: Connection.prototype.sendContent,
    sendMessage(this: unknown, ...args: unknown[]) {
      const content = args[5] as Buffer;
      return Connection.prototype.sendMessage.apply(this, [...args.slice(0, 5), Buffer.concat([content, Buffer.from('!')])]);
    },
  };
  const before = other.sendMessage;
  encodePublishes({ connection: other } as unknown as ChannelModel);
  assert.is(other.sendMessage, before);
  // A connection that does not look like amqplib's is left alone.
  const odd = { sendMessage: () => true };
  encodePublishes({ connection: odd } as unknown as ChannelModel);
  assert.is(odd.sendMessage.name, 'sendMessage');
});

t.run();
