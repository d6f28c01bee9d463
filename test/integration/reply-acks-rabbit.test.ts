import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RabbitNode } from '../../scripts/rabbit-node.js';
import { defaultConfig, getTransport, RPCClient, RPCServer, Target, type Transport } from '../../src/index.js';
import { sleep } from '../support/assert.js';
import { sharedVhost } from '../support/rabbit-vhost.js';
import { rpcSuite } from '../support/rpc-cases.js';

// rabbit.replyAcks=false: the reply_<uuid> queue consumed without acknowledgements.
// The RPC cases every driver passes, with every client in that mode (a URL query option).
rpcSuite(
  'rpc over RabbitMQ with rabbit.replyAcks=false: shared cases',
  sharedVhost(
    'racks-cases',
    {
      unrouted: { 'rabbit.mandatoryRequests': false },
      unservedTimeout: () => /Timed out waiting for a reply to message ID [0-9a-f]{32} \(x on topic nobody-\d+\) after \d+ ms/,
    },
    '?replyAcks=false',
  ),
).run();

interface Ctx {
  node: RabbitNode;
  vhost: string;
  url: string;
  transports: Transport[];
  servers: RPCServer[];
}
const t = suite<Ctx>('rabbit.replyAcks', {} as Ctx);

t.before(async (ctx) => {
  ctx.node = await RabbitNode.shared();
  ctx.vhost = await ctx.node.addVhost(`racks-${process.pid}`);
  ctx.url = ctx.node.url(ctx.vhost);
});
t.after(async (ctx) => {
  await ctx.node.deleteVhost(ctx.vhost);
  await ctx.node.release();
});
t.before.each((ctx) => {
  ctx.transports = [];
  ctx.servers = [];
});
t.after.each(async (ctx) => {
  for (const s of ctx.servers) {
    await s.stop();
    await s.wait(1000);
  }
  for (const tr of ctx.transports) await tr.close();
});

async function transport(ctx: Ctx, replyAcks: boolean): Promise<Transport> {
  const tr = await getTransport(ctx.url, { config: defaultConfig(), overrides: { 'rabbit.replyAcks': replyAcks } });
  ctx.transports.push(tr);
  return tr;
}

class Slow {
  async echo(_ctx: unknown, args: { v: unknown }) {
    return args.v;
  }
  async sleep(_ctx: unknown, args: { ms: number }) {
    await sleep(args.ms);
    return args.ms;
  }
}

async function serve(ctx: Ctx, topic: string): Promise<void> {
  const s = new RPCServer(await transport(ctx, true), new Target({ topic, server: 's1' }), [new Slow()]);
  await s.start();
  ctx.servers.push(s);
}

/** `ack_required` of the consumers on reply queues, as the broker reports it. */
async function replyConsumers(ctx: Ctx): Promise<string[]> {
  const out = await ctx.node.ctl('list_consumers', '-p', ctx.vhost, '--no-table-headers', '-q', 'queue_name', 'ack_required');
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter(([q]) => q?.startsWith('reply_'))
    .map(([, ack]) => ack!);
}

t('the broker sees the reply queue consumed without acknowledgements, and with them by default', async (ctx) => {
  await serve(ctx, 'racks-basic');
  const plain = new RPCClient(await transport(ctx, true), new Target({ topic: 'racks-basic' }), { timeout: 5000 });
  const noAck = new RPCClient(await transport(ctx, false), new Target({ topic: 'racks-basic' }), { timeout: 5000 });
  const results = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? noAck : plain).call({}, 'echo', { v: i })));
  assert.equal(
    results,
    Array.from({ length: 100 }, (_, i) => i),
  );
  assert.equal((await replyConsumers(ctx)).sort(), ['false', 'true']);
});

// What the mode keeps (it would pass with acknowledgements too): without them the consumer is
// still set up again on the reconnect, and a reply sent after it arrives.
t('without acknowledgements, a call whose reply is sent after a reconnect still completes', async (ctx) => {
  await serve(ctx, 'racks-drop');
  const c = new RPCClient(await transport(ctx, false), new Target({ topic: 'racks-drop' }), { timeout: 60_000 });
  assert.is(await c.call({}, 'echo', { v: 'warm' }), 'warm');
  // The server answers after 20 s, long after the connections are back (rabbitmqctl itself can
  // take seconds to start on a busy machine).
  const inFlight = c.call({}, 'sleep', { ms: 20_000 });
  await sleep(300);
  await ctx.node.ctl('close_all_connections', '-p', ctx.vhost, 'test: forced close');
  assert.is(await inFlight, 20_000);
  assert.is(await c.call({}, 'echo', { v: 'again' }, { timeout: 15_000 }), 'again');
});

t('the option is validated like every other', async (ctx) => {
  let err: unknown;
  try {
    await getTransport(ctx.url, { config: defaultConfig(), overrides: { 'rabbit.replyAcks': 'sometimes' } });
  } catch (e) {
    err = e;
  }
  assert.match(String((err as Error)?.message), /invalid value for rabbit\.replyAcks .*must be true or false/);
});

t.run();
