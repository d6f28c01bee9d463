import type { ConsumeMessage } from 'amqplib';
import * as assert from 'uvu/assert';
import { defaultConfig, getTransport, RPCClient, RPCServer, Target } from '../../src/index.js';
import { rejects, sleep, until } from '../support/assert.js';
import { type ModeCtx, modeCases, modeRaw, modeSuite, modeTransport, serveSlow as serve } from '../support/rabbit-mode.js';
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

/** A raw consumer on a queue of its own that no exchange binds: only the default exchange reaches it. `close` ends the consumer early. */
async function unboundQueue(ctx: ModeCtx, name: string) {
  const m = await modeRaw(ctx);
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

const warmServed = new WeakSet<object>();

/**
 * A client on a transport of its own that has made one call already, so that a short timeout
 * below times the request, not the connect and the reply queue's set-up on a busy machine.
 */
async function warmClient(ctx: ModeCtx, overrides: Record<string, unknown>, target: Target, timeout: number): Promise<RPCClient> {
  // ctx.servers is a new array in each test: one warm-up server per test.
  if (!warmServed.has(ctx.servers)) {
    warmServed.add(ctx.servers);
    await serve(ctx, 'lane-warm');
  }
  const tr = await modeTransport(ctx, overrides);
  assert.is(await new RPCClient(tr, new Target({ topic: 'lane-warm' }), { timeout: 30_000 }).call({}, 'echo', { v: 'warm' }), 'warm');
  return new RPCClient(tr, target, { timeout });
}

t('requestRouting=queue: calls and casts reach the queue by the default exchange, without the topic exchange', async (ctx) => {
  const q = await unboundQueue(ctx, 'lane-raw.s1');
  try {
    const target = new Target({ topic: 'lane-raw', server: 's1' });
    const direct = await warmClient(ctx, { 'rabbit.requestRouting': 'queue' }, target, 600);
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

t(
  'requestRouting=queue: a queue that does not exist still fails a call or cast at once (mandatory), naming the default exchange',
  async (ctx) => {
    const c = new RPCClient(await modeTransport(ctx, { 'rabbit.requestRouting': 'queue' }), new Target({ topic: 'lane-nobody' }), {
      timeout: 5000,
    });
    await rejects(
      c.call({}, 'echo', { v: 1 }),
      'HERMOD_ERR_UNDELIVERABLE',
      /no queue is bound for the default exchange \(no queue of that name\) routing key 'lane-nobody'/,
    );
    await rejects(
      c.cast({}, 'echo', { v: 2 }),
      'HERMOD_ERR_UNDELIVERABLE',
      /the default exchange \(no queue of that name\) routing key 'lane-nobody'/,
    );
  },
);

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

t(
  "requestRouting=queue: a job's marked reply is followed though the token names the server's exchange, not the one the call named",
  async (ctx) => {
    // The call names exchange 'nova', which queue routing ignores; the server runs on 'openstack'
    // and its token says so. The marked reply is the server's word: call() followed only tokens
    // matching the call's own exchange, and returned this one as the result.
    class Long {
      static long = ['work'];
      async work(_ctx: unknown, args: { ms: number }) {
        await sleep(args.ms);
        return { done: args.ms };
      }
    }
    const s = new RPCServer(await modeTransport(ctx, { 'jobs.deferAfter': 50 }), new Target({ topic: 'lane-jobs', server: 's1' }), [
      new Long(),
    ]);
    await s.start();
    ctx.servers.push(s);
    const tr = await modeTransport(ctx, { 'rabbit.requestRouting': 'queue', 'jobs.pollInterval': 20 });
    const c = new RPCClient(tr, new Target({ topic: 'lane-jobs', exchange: 'nova' }), { timeout: 5000 });
    assert.equal(await c.call({}, 'work', { ms: 300 }), { done: 300 });
    const { token } = await c.callOrJob({}, 'work', { ms: 300 });
    assert.is(token?.exchange, 'openstack');
    assert.equal(await c.job(token!).result(), { done: 300 });
  },
);

t('requestExpiration=false: call requests carry no expiration, so a request nobody took outlives its caller', async (ctx) => {
  const q = await unboundQueue(ctx, 'lane-exp.s1');
  await q.close();
  const target = new Target({ topic: 'lane-exp', server: 's1' });
  // The expiring request first: RabbitMQ drops an expired message only at the head of its queue.
  const expiring = await warmClient(ctx, { 'rabbit.requestRouting': 'queue' }, target, 300);
  const lasting = await warmClient(ctx, { 'rabbit.requestRouting': 'queue', 'rabbit.requestExpiration': false }, target, 300);
  await rejects(expiring.call({}, 'echo', { v: 1 }), 'HERMOD_ERR_TIMEOUT');
  await rejects(lasting.call({}, 'echo', { v: 2 }), 'HERMOD_ERR_TIMEOUT');
  const deadline = Date.now() + 10_000;
  let messages = (await ctx.node.queues(ctx.vhost)).get('lane-exp.s1')?.messages;
  while (messages !== 1 && Date.now() < deadline) {
    await sleep(200);
    messages = (await ctx.node.queues(ctx.vhost)).get('lane-exp.s1')?.messages;
  }
  assert.is(messages, 1, 'the expired request dropped, the other left');
  const ch = await (await modeRaw(ctx)).createChannel();
  const left = await ch.get('lane-exp.s1', { noAck: true });
  assert.ok(left, 'a request in the queue');
  assert.is(left.properties.expiration, undefined);
  const inner = JSON.parse(JSON.parse(left.content.toString())['oslo.message']);
  assert.equal(inner.args, { v: 2 });
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
