import amqplib, { type ConsumeMessage } from 'amqplib';
import * as assert from 'uvu/assert';
import { defaultConfig, getTransport, RPCClient, Target } from '../../src/index.js';
import { rejects, sleep, until } from '../support/assert.js';
import { type ModeCtx, modeCases, modeSuite, modeTransport, serveSlow as serve } from '../support/rabbit-mode.js';
import { rpcSuite } from '../support/rpc-cases.js';

// rabbit.requestRouting = queue (calls and casts through the default exchange, straight to the
// queue the routing key names) and rabbit.requestExpiration = false (no per-message expiration on
// call requests). The RPC cases every driver passes, with every client in the README's fast lane:
// both, plus direct reply-to.
rpcSuite(
  'rpc over RabbitMQ with rabbit.requestRouting=queue, requestExpiration=false, directReplyTo: shared cases',
  modeCases('lane-cases', '?requestRouting=queue&requestExpiration=false&directReplyTo=true'),
).run();

const t = modeSuite('rabbit.requestRouting and rabbit.requestExpiration', 'lane');

/** A raw consumer on a queue of its own that no exchange binds: only the default exchange reaches it. */
async function unboundQueue(ctx: ModeCtx, name: string) {
  const m = await amqplib.connect(`amqp://guest:guest@127.0.0.1:${ctx.node.port}/${encodeURIComponent(ctx.vhost)}`);
  m.on('error', () => {});
  const ch = await m.createChannel();
  await ch.assertQueue(name, { durable: false, autoDelete: false });
  const got: ConsumeMessage[] = [];
  await ch.consume(name, (msg) => {
    if (msg) {
      got.push(msg);
      ch.ack(msg);
    }
  });
  return { got, close: () => m.close().catch(() => {}) };
}

t('requestRouting=queue: calls and casts reach the queue by the default exchange, without the topic exchange', async (ctx) => {
  const q = await unboundQueue(ctx, 'lane-raw.s1');
  try {
    const target = new Target({ topic: 'lane-raw', server: 's1' });
    const direct = new RPCClient(await modeTransport(ctx, { 'rabbit.requestRouting': 'queue' }), target, { timeout: 600 });
    await rejects(direct.call({}, 'echo', { v: 1 }), 'HERMOD_ERR_TIMEOUT');
    await direct.cast({}, 'echo', { v: 2 });
    await until(() => q.got.length === 2, 'the call and the cast in the unbound queue');
    assert.equal(
      q.got.map((m) => [m.fields.exchange, m.fields.routingKey]),
      [
        ['', 'lane-raw.s1'],
        ['', 'lane-raw.s1'],
      ],
    );
    // The call keeps its expiration by default; only requestExpiration turns it off.
    assert.ok(Number(q.got[0]!.properties.expiration) > 0, `expiration ${q.got[0]!.properties.expiration}`);
    // oslo's routing goes by the topic exchange, where nothing binds that key: refused at once.
    const byExchange = new RPCClient(await modeTransport(ctx), target, { timeout: 5000 });
    await rejects(byExchange.call({}, 'echo', { v: 3 }), 'HERMOD_ERR_UNDELIVERABLE');
    await rejects(byExchange.cast({}, 'echo', { v: 4 }), 'HERMOD_ERR_UNDELIVERABLE');
    assert.is(q.got.length, 2);
  } finally {
    await q.close();
  }
});

t('requestRouting=queue: a queue that does not exist still fails the call at once (mandatory)', async (ctx) => {
  const c = new RPCClient(await modeTransport(ctx, { 'rabbit.requestRouting': 'queue' }), new Target({ topic: 'lane-nobody' }), {
    timeout: 5000,
  });
  await rejects(c.call({}, 'echo', { v: 1 }), 'HERMOD_ERR_UNDELIVERABLE');
});

t('requestRouting=queue: hermod servers on a topic, server-directed calls and fanout casts', async (ctx) => {
  await serve(ctx, 'lane-srv');
  const tr = await modeTransport(ctx, { 'rabbit.requestRouting': 'queue' });
  const any = new RPCClient(tr, new Target({ topic: 'lane-srv' }), { timeout: 5000 });
  const one = new RPCClient(tr, new Target({ topic: 'lane-srv', server: 's1' }), { timeout: 5000 });
  const all = new RPCClient(tr, new Target({ topic: 'lane-srv', fanout: true }), { timeout: 5000 });
  assert.is(await any.call({}, 'echo', { v: 'any' }), 'any');
  assert.is(await one.call({}, 'echo', { v: 'one' }), 'one');
  await all.cast({}, 'echo', { v: 'all' });
  assert.is(await one.call({}, 'echo', { v: 'after' }), 'after');
});

t('requestExpiration=false: call requests carry no expiration, so a request nobody took outlives its caller', async (ctx) => {
  const q = await unboundQueue(ctx, 'lane-exp.s1');
  await q.close();
  const target = new Target({ topic: 'lane-exp', server: 's1' });
  // The expiring request first: RabbitMQ drops an expired message only at the head of its queue.
  const expiring = new RPCClient(await modeTransport(ctx, { 'rabbit.requestRouting': 'queue' }), target, { timeout: 300 });
  await rejects(expiring.call({}, 'echo', { v: 1 }), 'HERMOD_ERR_TIMEOUT');
  const lasting = new RPCClient(await modeTransport(ctx, { 'rabbit.requestRouting': 'queue', 'rabbit.requestExpiration': false }), target, {
    timeout: 300,
  });
  await rejects(lasting.call({}, 'echo', { v: 2 }), 'HERMOD_ERR_TIMEOUT');
  const deadline = Date.now() + 10_000;
  let messages = (await ctx.node.queues(ctx.vhost)).get('lane-exp.s1')?.messages;
  while (messages !== 1 && Date.now() < deadline) {
    await sleep(200);
    messages = (await ctx.node.queues(ctx.vhost)).get('lane-exp.s1')?.messages;
  }
  assert.is(messages, 1, 'the expired request dropped, the other left');
  const m = await amqplib.connect(`amqp://guest:guest@127.0.0.1:${ctx.node.port}/${encodeURIComponent(ctx.vhost)}`);
  try {
    const ch = await m.createChannel();
    const left = await ch.get('lane-exp.s1', { noAck: true });
    assert.ok(left, 'a request in the queue');
    assert.is(left.properties.expiration, undefined);
    const inner = JSON.parse(JSON.parse(left.content.toString())['oslo.message']);
    assert.equal(inner.args, { v: 2 });
  } finally {
    await m.close();
  }
});

t('both options are validated like every other', async (ctx) => {
  for (const [key, value, expected] of [
    ['rabbit.requestRouting', 'direct', /invalid value for rabbit\.requestRouting .*exchange, queue/],
    ['rabbit.requestExpiration', 'sometimes', /invalid value for rabbit\.requestExpiration .*must be true or false/],
  ] as const) {
    let err: unknown;
    try {
      await getTransport(ctx.url, { config: defaultConfig(), overrides: { [key]: value } });
    } catch (e) {
      err = e;
    }
    assert.match(String((err as Error)?.message), expected);
  }
});

t.run();
