import amqplib, { type Channel, type ChannelModel } from 'amqplib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RabbitNode } from '../../scripts/rabbit-node.js';
import {
  type ConnectionState,
  type Context,
  defaultConfig,
  getTransport,
  NotificationListener,
  RPCClient,
  RPCServer,
  Target,
  type Transport,
} from '../../src/index.js';
import { sleep, until } from '../support/assert.js';

// Hand-made messages from a hostile peer on RabbitMQ, published with raw amqplib: prototype
// keys in args, in `_context_` keys and in notifications; call-monitor timeouts chosen to
// amplify heartbeats; a body far over maxMessageSize; and the opt-in TTL of server queues.

class Probe {
  seen: Array<{ keys: string[]; a: unknown; plainArgs: boolean; ctxKeys: string[]; plainCtx: boolean; admin: unknown }> = [];
  async add(ctx: Context, args: { a: number; b: number }) {
    this.seen.push({
      keys: Object.keys(args),
      a: args.a,
      plainArgs: Object.getPrototypeOf(args) === Object.prototype,
      ctxKeys: Object.keys(ctx),
      plainCtx: Object.getPrototypeOf(ctx) === Object.prototype,
      admin: (ctx as { is_admin?: unknown }).is_admin,
    });
    return args.a + args.b;
  }
  async sleep(_ctx: Context, args: { ms: number }) {
    await sleep(args.ms);
    return args.ms;
  }
}

interface Reply {
  _msg_id: string;
  ending: boolean;
  result: unknown;
  failure: string | null;
}

interface Ctx {
  node: RabbitNode;
  vhost: string;
  url: string;
  transports: Transport[];
  stops: Array<() => Promise<unknown>>;
  raw: ChannelModel;
  ch: Channel;
  replies: Reply[];
}
const t = suite<Ctx>('hostile peers on RabbitMQ', {} as Ctx);

t.before(async (ctx) => {
  ctx.node = await RabbitNode.shared();
  ctx.vhost = await ctx.node.addVhost(`hostile-${process.pid}`);
  ctx.url = ctx.node.url(ctx.vhost);
});
t.after(async (ctx) => {
  await ctx.node.deleteVhost(ctx.vhost);
  await ctx.node.release();
});
t.before.each(async (ctx) => {
  ctx.transports = [];
  ctx.stops = [];
  ctx.raw = await amqplib.connect(`amqp://guest:guest@127.0.0.1:${ctx.node.port}/${encodeURIComponent(ctx.vhost)}`);
  ctx.raw.on('error', () => {});
  ctx.ch = await ctx.raw.createChannel();
  ctx.replies = [];
  await ctx.ch.assertQueue('raw-replies', { exclusive: true });
  await ctx.ch.consume(
    'raw-replies',
    (m) => {
      if (m) ctx.replies.push(JSON.parse(JSON.parse(m.content.toString())['oslo.message']) as Reply);
    },
    { noAck: true },
  );
});
t.after.each(async (ctx) => {
  for (const stop of ctx.stops) await stop();
  for (const tr of ctx.transports) await tr.close();
  await ctx.raw.close().catch(() => {});
});

async function transport(ctx: Ctx, overrides: Record<string, unknown> = {}): Promise<Transport> {
  const tr = await getTransport(ctx.url, { config: defaultConfig(), overrides });
  ctx.transports.push(tr);
  return tr;
}
async function serve(ctx: Ctx, topic: string, endpoints: object[], overrides: Record<string, unknown> = {}, server = 's') {
  const s = new RPCServer(await transport(ctx, overrides), new Target({ topic, server }), endpoints);
  await s.start();
  ctx.stops.push(async () => {
    await s.stop();
    await s.wait(1000);
  });
  return s;
}

/** Publishes an oslo 2.0 envelope whose inner dict is `inner` (JSON text, so any key survives). */
function publish(ctx: Ctx, key: string, inner: string): void {
  ctx.ch.publish('openstack', key, Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': inner })), {
    contentType: 'application/json',
  });
}
const call = (msgId: string, fields: string, timeout: unknown = null) =>
  `{${fields},"_unique_id":"u-${msgId}","_msg_id":"${msgId}","_reply_q":"raw-replies","_timeout":${JSON.stringify(timeout)}}`;
const failureClass = (r: Reply | undefined) => (r?.failure ? (JSON.parse(r.failure) as { class: string }).class : undefined);

t('__proto__ in args and in _context___proto__ is refused with MalformedMessage; endpoints see own data only', async (ctx) => {
  const probe = new Probe();
  await serve(ctx, 'p', [probe]);
  publish(ctx, 'p', call('args', '"method":"add","args":{"__proto__":{"a":40,"b":2}}'));
  publish(ctx, 'p', call('ctx', '"method":"add","args":{"a":1,"b":2},"_context___proto__":{"is_admin":true}'));
  publish(ctx, 'p', call('deep', '"method":"add","args":{"a":1,"b":2,"o":[{"__proto__":{}}]}'));
  publish(ctx, 'p', call('ok', '"method":"add","args":{"a":40,"b":2},"_context_user":"u"'));
  await until(() => ctx.replies.length === 4, 'four replies');
  const by = new Map(ctx.replies.map((r) => [r._msg_id, r]));
  assert.is(failureClass(by.get('args')), 'MalformedMessage');
  assert.is(failureClass(by.get('ctx')), 'MalformedMessage');
  assert.is(failureClass(by.get('deep')), 'MalformedMessage');
  assert.is(by.get('ok')!.result, 42);
  assert.equal(probe.seen, [{ keys: ['a', 'b'], a: 40, plainArgs: true, ctxKeys: ['user'], plainCtx: true, admin: undefined }]);
  assert.is(({} as Record<string, unknown>).a, undefined, 'Object.prototype stays clean');
});

/**
 * A raw connection whose publishes carry a headers table with field types RabbitMQ takes and
 * amqplib cannot decode: the placeholder header `k: "XXXXXXXX"` is rewritten on its way to the
 * socket into `k` of type L (unsigned 64-bit) and `zz` of type V (void).
 */
async function oddHeaders(ctx: Ctx): Promise<Channel> {
  const conn = await amqplib.connect(`amqp://guest:guest@127.0.0.1:${ctx.node.port}/${encodeURIComponent(ctx.vhost)}`);
  conn.on('error', () => {});
  ctx.stops.push(() => conn.close().catch(() => {}));
  const stream = (conn as unknown as { connection: { stream: { write: (b: unknown, ...r: unknown[]) => boolean } } }).connection.stream;
  const write = stream.write.bind(stream);
  // `k` as a long string of 8 bytes (15 bytes in all) becomes `k` of type L and an 8-byte value,
  // then `zz` void: the same 15 bytes, so the frame's sizes hold.
  const needle = Buffer.from('\x01kS\x00\x00\x00\x08XXXXXXXX', 'latin1');
  const odd = Buffer.concat([Buffer.from('\x01kL', 'latin1'), Buffer.from([0, 0, 0, 1, 2, 3, 4, 5]), Buffer.from('\x02zzV', 'latin1')]);
  assert.is(odd.length, needle.length);
  stream.write = (chunk: unknown, ...rest: unknown[]) => {
    if (Buffer.isBuffer(chunk) && chunk.includes(needle)) {
      const copy = Buffer.from(chunk);
      odd.copy(copy, copy.indexOf(needle));
      return write(copy, ...rest);
    }
    return write(chunk, ...rest);
  };
  return conn.createChannel();
}

t(
  'a header type amqplib cannot decode (L) neither drops the connection nor poisons the queue: requests and replies carrying it get through',
  async (ctx) => {
    // Before: amqplib threw "Unexpected type tag" from its frame parser, the connection closed
    // with the delivery unsettled, and every reconnect got the same message back and died.
    const probe = new Probe();
    await serve(ctx, 'p', [probe]);
    const states: string[] = [];
    ctx.transports[0]!.on('state', (s: ConnectionState) => states.push(s.state));
    const odd = await oddHeaders(ctx);
    const body = (inner: string) => Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': inner }));
    odd.publish('openstack', 'p', body(call('odd', '"method":"add","args":{"a":40,"b":2}')), { headers: { k: 'XXXXXXXX' } });
    await until(() => ctx.replies.length === 1, 'the call with the odd header answered');
    assert.is(ctx.replies[0]!.result, 42);
    publish(ctx, 'p', call('after', '"method":"add","args":{"a":1,"b":2}'));
    await until(() => ctx.replies.length === 2, 'the next call answered');
    assert.not.ok(states.includes('disconnected'), `the server never lost its connection: ${states.join(' ')}`);

    // A client's reply carrying it: a raw responder answers hermod's call with the odd header.
    await odd.assertQueue('raw-server', { exclusive: true });
    await odd.bindQueue('raw-server', 'openstack', 'raw-server');
    await odd.consume(
      'raw-server',
      (m) => {
        if (!m) return;
        const req = JSON.parse(JSON.parse(m.content.toString())['oslo.message']) as { _msg_id: string; _reply_q: string };
        const reply = JSON.stringify({ result: 'odd', failure: null, ending: true, _msg_id: req._msg_id });
        odd.sendToQueue(req._reply_q, body(reply), { headers: { k: 'XXXXXXXX' } });
      },
      { noAck: true },
    );
    const tr = await transport(ctx);
    const client = new RPCClient(tr, new Target({ topic: 'raw-server' }), { timeout: 5000 });
    const clientStates: string[] = [];
    tr.on('state', (s: ConnectionState) => clientStates.push(s.state));
    assert.is(await client.call({}, 'anything', {}), 'odd');
    assert.is(await client.call({}, 'anything', {}), 'odd');
    assert.not.ok(clientStates.includes('disconnected'), clientStates.join(' '));
  },
);

t(
  'envelopes the server cannot open are still answered where the ids can be read: oslo.message an object, a byte-order mark, oslo.version an object',
  async (ctx) => {
    await serve(ctx, 'env', [new Probe()]);
    const raw = (body: string) => ctx.ch.publish('openstack', 'env', Buffer.from(body), { contentType: 'application/json' });
    const inner = (id: string) => call(id, '"method":"add","args":{"a":1,"b":2}');
    // Each was dropped without a word (the caller waited for its timeout), or answered with a
    // TypeError the peer's own toString raised.
    raw(`{"oslo.version":"2.0","oslo.message":${inner('object')}}`);
    raw(`\ufeff${JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': inner('bom') })}`);
    raw(JSON.stringify({ 'oslo.version': { toString: 1 }, 'oslo.message': inner('version') }));
    publish(ctx, 'env', inner('good'));
    await until(() => ctx.replies.filter((r) => r.ending).length === 4, 'four answers');
    const by = new Map(ctx.replies.filter((r) => r.ending).map((r) => [r._msg_id, r]));
    assert.is(failureClass(by.get('object')), 'MalformedMessage');
    assert.is(failureClass(by.get('bom')), 'MalformedMessage');
    assert.is(failureClass(by.get('version')), 'UnsupportedEnvelopeVersion');
    assert.match(JSON.parse(by.get('version')!.failure!).message, /envelope version is not a version \(a object/);
    assert.is(by.get('good')!.result, 3);
  },
);

t('a notification with __proto__ in its payload or _context_ keys reaches no endpoint', async (ctx) => {
  const seen: unknown[] = [];
  const listener = new NotificationListener(
    await transport(ctx),
    [new Target({ topic: 'n' })],
    [{ info: (_c: Context, _p: string, eventType: string, payload: unknown) => void seen.push({ eventType, payload }) }],
  );
  await listener.start();
  ctx.stops.push(async () => {
    await listener.stop();
    await listener.wait(1000);
  });
  const note = (id: string, eventType: string, extra: string) =>
    publish(
      ctx,
      'n.info',
      `{"message_id":"${id}","publisher_id":"p","event_type":"${eventType}","priority":"INFO",${extra},"timestamp":"t","_unique_id":"${id}"}`,
    );
  note('1', 'bad.payload', '"payload":{"__proto__":{"admin":true}}');
  note('2', 'bad.ctx', '"payload":{},"_context___proto__":{"is_admin":true}');
  note('3', 'good', '"payload":{"x":1}');
  await until(() => JSON.stringify(seen).includes('"good"'), 'the clean notification');
  await sleep(50);
  assert.equal(seen, [{ eventType: 'good', payload: { x: 1 } }]);
  assert.is(listener.stats().invalid, 2);
  assert.is(listener.stats().failed, 0);
});

// The numbers: ten requests with `_timeout: 1e7` made 75,820 heartbeats in 11 s and a
// TimeoutOverflowWarning; 0.001 gave one every 10 ms. Now: none, as oslo; `_timeout: 2` is the
// control (a heartbeat after 1 s of a 1.4 s call).
t('_timeout 1e7, 0.001, -1 and "60" give no heartbeats and no timer warning; _timeout 2 gives one per call', async (ctx) => {
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on('warning', onWarning);
  try {
    await serve(ctx, 'hb', [new Probe()]);
    const timeouts: Record<string, unknown> = { huge: 1e7, tiny: 0.001, negative: -1, string: '60', control: 2 };
    for (const [kind, timeout] of Object.entries(timeouts)) {
      for (let i = 0; i < 10; i++) publish(ctx, 'hb', call(`${kind}-${i}`, '"method":"sleep","args":{"ms":1400}', timeout));
    }
    await until(() => ctx.replies.filter((r) => r.ending).length === 50, 'fifty replies', 6000);
    await sleep(100);
    const beats = (kind: string) => ctx.replies.filter((r) => !r.ending && r._msg_id.startsWith(`${kind}-`)).length;
    assert.equal(
      Object.keys(timeouts).map((k) => [k, beats(k)]),
      [
        ['huge', 0],
        ['tiny', 0],
        ['negative', 0],
        ['string', 0],
        ['control', 10],
      ],
    );
    assert.equal(
      warnings.filter((w) => w.name === 'TimeoutOverflowWarning').map((w) => w.message),
      [],
    );
  } finally {
    process.off('warning', onWarning);
  }
});

// 20 MB rather than the 110 MB keeps the shared node light; what is checked does not
// depend on the size: JSON.parse never sees the body, yet the caller is answered.
t('a body over maxMessageSize is answered with MessageTooLarge without being JSON-parsed', async (ctx) => {
  await serve(ctx, 'big', [new Probe()]);
  const inner = call('big', `"method":"add","args":{"a":1,"b":2,"pad":"${'y'.repeat(20 * 1024 * 1024)}"}`);
  const sizes: number[] = [];
  const parse = JSON.parse;
  JSON.parse = ((text: string, ...rest: never[]) => {
    sizes.push(text.length);
    return parse(text, ...rest);
  }) as typeof JSON.parse;
  try {
    publish(ctx, 'big', inner);
    await until(() => ctx.replies.length === 1, 'the answer', 8000);
  } finally {
    JSON.parse = parse;
  }
  assert.is(ctx.replies[0]!._msg_id, 'big');
  assert.is(failureClass(ctx.replies[0]), 'MessageTooLarge');
  assert.ok(Math.max(0, ...sizes) < 1024 * 1024, `JSON.parse saw ${Math.max(...sizes)} chars`);
});

t('<topic>.<server> stays after its server stops (as oslo); with rabbit.serverQueueTtl it carries x-expires and goes', async (ctx) => {
  const kept = await serve(ctx, 'q', [new Probe()], {}, 'kept');
  const ttl = await serve(ctx, 'q', [new Probe()], { 'rabbit.serverQueueTtl': 1000 }, 'gone');
  let queues = await ctx.node.queues(ctx.vhost);
  assert.match(queues.get('q.gone')!.arguments, /x-expires.*1000/);
  assert.not.match(queues.get('q.kept')!.arguments, /x-expires/);
  assert.not.match(queues.get('q')!.arguments, /x-expires/, 'the shared topic queue is untouched');
  for (const s of [kept, ttl]) {
    await s.stop();
    await s.wait(1000);
  }
  await sleep(1600);
  queues = await ctx.node.queues(ctx.vhost);
  assert.ok(queues.has('q.kept'), 'without the TTL the server queue stays, as oslo leaves it');
  assert.not.ok(queues.has('q.gone'), 'with the TTL it is gone a second after its consumer left');
  assert.ok(queues.has('q'));
});

t.run();
