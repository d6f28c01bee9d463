import amqplib from 'amqplib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RabbitNode } from '../../scripts/rabbit-node.js';
import { RabbitConnection } from '../../src/driver/rabbit/connection.js';
import {
  ConfigError,
  type ConnectionState,
  defaultConfig,
  getTransport,
  parseTransportUrl,
  RPCClient,
  RPCServer,
  Target,
  type Transport,
} from '../../src/index.js';
import { sleep, until } from '../support/assert.js';
import { Recorder } from '../support/endpoints.js';
import { printed, startBin } from '../support/shutdown-procs.js';

// A declare mismatch that first appears on a reconnect: while hermod was disconnected, a peer
// re-declared its queue with other flags. Every retry would be refused the same way, so the
// connection gives up (state `failed`, the ConfigError naming the option) instead of retrying
// forever, and rpc-server exits with the configuration status. And one refusal that is a race to
// retry, not a mismatch: a fanout exchange auto-deleted between a starting server's declare and bind.

interface Ctx {
  node: RabbitNode;
  vhost: string;
  transports: Transport[];
}
const t = suite<Ctx>('a declare refused on a reconnect', {} as Ctx);
const fast = { 'rabbit.retryInterval': 50, 'rabbit.intervalMax': 200 };

t.before(async (ctx) => {
  ctx.node = await RabbitNode.shared();
  ctx.vhost = await ctx.node.addVhost(`declare-rc-${process.pid}`);
  ctx.transports = [];
});
t.after(async (ctx) => {
  for (const tr of ctx.transports) await tr.close();
  await ctx.node.deleteVhost(ctx.vhost);
  await ctx.node.release();
});

/** As a peer configured otherwise would: the queue again, durable where hermod declares it transient. */
async function redeclareDurable(ctx: Ctx, queue: string): Promise<void> {
  const conn = await amqplib.connect(ctx.node.url(ctx.vhost).replace(/^rabbit:/, 'amqp:'));
  conn.on('error', () => {});
  try {
    // hermod's server declares a queue deleted under it again (after rabbit.retryInterval, 50 ms
    // here): a declare that lost that race is refused (406, the channel closes); try again.
    for (let attempt = 1; ; attempt++) {
      const ch = await conn.createChannel();
      ch.on('error', () => {});
      try {
        await ch.deleteQueue(queue);
        await ch.assertQueue(queue, { durable: true });
        await ch.close();
        return;
      } catch (err) {
        if (attempt >= 20) throw err;
      }
    }
  } finally {
    await conn.close();
  }
}

t('library: the server connection ends in state failed with the ConfigError, and stops retrying', async (ctx) => {
  const tr = await getTransport(ctx.node.url(ctx.vhost), { config: defaultConfig(), overrides: fast });
  ctx.transports.push(tr);
  const states: ConnectionState[] = [];
  tr.on('state', (s: ConnectionState) => states.push(s));
  const server = new RPCServer(tr, new Target({ topic: 'rcq', server: 's1' }), [new Recorder('s1')]);
  await server.start();
  const client = new RPCClient(tr, new Target({ topic: 'rcq' }), { timeout: 5000 });
  assert.is(await client.call({}, 'add', { a: 1, b: 2 }), 3);

  await redeclareDurable(ctx, 'rcq');
  await ctx.node.ctl('close_all_connections', '-p', ctx.vhost, 'test: reconnect into a mismatch');
  // rabbitmqctl returns once the connections are closed (it takes seconds itself to start).
  const t0 = Date.now();
  await until(() => states.some((s) => s.state === 'failed'), 'a failed state', 10_000);
  const failed = states.find((s) => s.state === 'failed') as Extract<ConnectionState, { state: 'failed' }>;
  assert.instance(failed.error, ConfigError);
  assert.is((failed.error as ConfigError).key, 'rabbit.quorumQueues');
  assert.match(failed.error.message, /queue 'rcq' exists with durable=true/);
  const at = states.length;
  await sleep(1000);
  // Before the fix this connection retried every 50-200 ms for ever.
  const after = states.slice(at).filter((s) => s.state === 'reconnecting' || s.state === 'failed');
  assert.is(after.length, 0, `no retries after giving up: ${JSON.stringify(states.slice(at))}`);
  console.log(`    gave up ${Date.now() - t0 - 1000} ms after the forced reconnect; no retry in the next 1 s`);
  await server.stop();
  await server.wait(1000);
});

t('rpc-server: logs why it gave up and exits 2 (configuration), not retrying forever', async (ctx) => {
  const url = ctx.node.url(ctx.vhost);
  const p = startBin('rpc-server', [
    'rc-cli',
    '--topic',
    'rcc',
    '--transport-url',
    url,
    '--config',
    'rabbit.retryInterval=50',
    '--config',
    'rabbit.intervalMax=200',
  ]);
  await printed(p, /serving topic rcc/, 'rpc-server serving');
  await redeclareDurable(ctx, 'rcc');
  // From the rabbitmqctl call: the connections close while it runs (it takes about a second to start).
  const t0 = Date.now();
  await ctx.node.ctl('close_all_connections', '-p', ctx.vhost, 'test: reconnect into a mismatch');
  let timer: NodeJS.Timeout | undefined;
  const end = await Promise.race([p.exited, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 10_000)))]);
  // Cleared, or the file's process waits out the 10 s after its last test.
  clearTimeout(timer);
  if (!end) p.child.kill('SIGKILL');
  assert.ok(end, `rpc-server still running 10 s after the reconnect was refused:\n${p.err}`);
  assert.is(end!.code, 2, p.err);
  assert.match(p.err, /gave up on .*queue 'rcc' exists with durable=true/);
  console.log(`    rpc-server exited ${end!.code} ${end!.at - t0} ms after the rabbitmqctl call that forced the reconnect`);
});

// The other race with auto-delete fanout exchanges: the last other server of a topic stops
// between this server's declare of `<topic>_fanout` and its bind, the broker deletes the
// exchange, and the bind is refused with 404 (an rpc-server starting in CI exited on it).
t(
  "a fanout exchange deleted between a starting server's declare and its bind: declared again, the server starts and gets fanouts",
  async (ctx) => {
    const amqpUrl = ctx.node.url(ctx.vhost).replace(/^rabbit:/, 'amqp:');
    const admin = await amqplib.connect(amqpUrl);
    const ach = await admin.createChannel();
    // The prototype of amqplib's promise-API channels: every plain channel hermod opens shares it.
    const proto = Object.getPrototypeOf(ach) as {
      bindQueue: (this: unknown, queue: string, exchange: string, ...rest: unknown[]) => Promise<unknown>;
    };
    const bind = proto.bindQueue;
    let deleted = 0;
    proto.bindQueue = async function (this: unknown, queue: string, exchange: string, ...rest: unknown[]) {
      if (exchange === 'vanish_fanout' && deleted === 0) {
        deleted++;
        await ach.deleteExchange('vanish_fanout');
      }
      return bind.call(this, queue, exchange, ...rest);
    };
    try {
      const tr = await getTransport(ctx.node.url(ctx.vhost), { config: defaultConfig(), overrides: fast });
      ctx.transports.push(tr);
      const rec = new Recorder('v1');
      const server = new RPCServer(tr, new Target({ topic: 'vanish', server: 'v1' }), [rec]);
      await server.start();
      assert.is(deleted, 1, 'the exchange was deleted right before the bind');
      await ach.checkExchange('vanish_fanout');
      await new RPCClient(tr, new Target({ topic: 'vanish', fanout: true })).cast({}, 'bump', { seq: 7 });
      await until(() => rec.calls.some((c) => c.method === 'bump' && c.args.seq === 7), 'the fanout cast to arrive', 10_000);
      assert.is(
        await new RPCClient(tr, new Target({ topic: 'vanish', server: 'v1' }), { timeout: 10_000 }).call({}, 'add', { a: 2, b: 3 }),
        5,
      );
      await server.stop();
      await server.wait(2000);
    } finally {
      proto.bindQueue = bind;
      await admin.close();
    }
  },
);

t(
  'a declare failing with a transient channel error (its text names the vhost) is retried soon, not taken for a refused login',
  async (ctx) => {
    // RabbitMQ names the vhost in every channel error; a quorum queue or stream whose node is still
    // recovering answers a declare with "NOT_FOUND - home node … in vhost 'v' is down". Taken for a
    // refused login, that left a restarted server deaf for intervalMax (30 s) and callers with AccessRefused.
    const config = defaultConfig();
    config.rabbit.retryInterval = 100;
    config.rabbit.intervalMax = 30_000;
    const conn = new RabbitConnection(parseTransportUrl(ctx.node.url(ctx.vhost)), config, 'test');
    const states: ConnectionState[] = [];
    conn.on('state', (s: ConnectionState) => states.push(s));
    let tries = 0;
    await conn.addHook(async (model) => {
      if (++tries > 1) return;
      const ch = await model.createChannel();
      ch.on('error', () => {});
      await ch.checkExchange(`hermod-missing-${process.pid}`);
    });
    try {
      await conn.ready(Date.now() + 10_000, -1, 'the test');
      const retry = states.find((s) => s.state === 'reconnecting');
      assert.ok(retry, JSON.stringify(states));
      assert.match(String((retry as { reason?: string }).reason), /NOT_FOUND.*in vhost/);
      assert.not.ok((retry as { refused?: boolean }).refused, JSON.stringify(retry));
      assert.ok((retry as { delayMs: number }).delayMs < 5000, JSON.stringify(retry));
      assert.is(tries, 2);
    } finally {
      await conn.close();
    }
  },
);

t.run();
