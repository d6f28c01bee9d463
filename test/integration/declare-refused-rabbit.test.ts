// A declare the broker refuses (406, other flags than a peer's) fails its own publish and nothing
// else. It went out on the confirm channel, whose close failed every cast still awaiting its
// confirm; those were sent again though the broker had routed them before the declare, and ran
// twice, on two servers of a pool (found by a mixed oslo 14 / 18 / hermod mesh soak: oslo 14
// declares `<topic>_fanout` non-durable, a client with transient quorum queues durable).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RabbitNode } from '../../scripts/rabbit-node.js';
import { type Context, defaultConfig, getTransport, RPCClient, RPCServer, Target, type Transport } from '../../src/index.js';
import { sleep, until } from '../support/assert.js';

interface Ctx {
  node: RabbitNode;
  vhost: string;
  transports: Transport[];
  servers: RPCServer[];
}
const t = suite<Ctx>('RabbitMQ: a refused declare fails its own publish only', {} as Ctx);
t.before(async (ctx) => {
  ctx.node = await RabbitNode.shared();
  ctx.vhost = await ctx.node.addVhost(`declare-refused-${process.pid}`);
  ctx.transports = [];
  ctx.servers = [];
});
t.after(async (ctx) => {
  for (const s of ctx.servers) {
    await s.stop();
    await s.wait(2000);
  }
  for (const tr of ctx.transports) await tr.close();
  await ctx.node.deleteVhost(ctx.vhost);
  await ctx.node.release();
});

const QUORUM = { 'rabbit.quorumQueues': true, 'rabbit.transientQuorumQueues': true };

async function transport(ctx: Ctx, overrides: Record<string, unknown>): Promise<Transport> {
  const tr = await getTransport(ctx.node.url(ctx.vhost), { config: defaultConfig(), overrides });
  ctx.transports.push(tr);
  return tr;
}

t('casts in flight beside a fanout cast refused for its exchange flags each run once', async (ctx) => {
  const runs = new Map<string, string[]>();
  const endpoint = (name: string) => ({
    bump(_c: Context, args: { seq: string }) {
      runs.set(args.seq, [...(runs.get(args.seq) ?? []), name]);
    },
  });
  for (const name of ['a', 'b']) {
    const s = new RPCServer(await transport(ctx, QUORUM), new Target({ topic: 'pool', server: name }), [endpoint(name)]);
    await s.start();
    ctx.servers.push(s);
  }
  // A classic server (another control exchange) declares `other_fanout` non-durable.
  const classic = new RPCServer(await transport(ctx, { controlExchange: 'classic' }), new Target({ topic: 'other', server: 'x' }), [
    endpoint('x'),
  ]);
  await classic.start();
  ctx.servers.push(classic);
  const ct = await transport(ctx, QUORUM);
  const pool = new RPCClient(ct, new Target({ topic: 'pool' }), { timeout: 10_000 });
  const fanout = new RPCClient(ct, new Target({ topic: 'other', fanout: true }), { timeout: 10_000 });
  const refused: string[] = [];
  const rounds = 15;
  for (let r = 0; r < rounds; r++) {
    const sends: Promise<unknown>[] = [];
    for (let k = 0; k < 20; k++) {
      sends.push(pool.cast({}, 'bump', { seq: `${r}-${k}` }));
      if (k === 10)
        sends.push(fanout.cast({}, 'bump', { seq: `f${r}` }).catch((e: Error & { code?: string }) => refused.push(e.code ?? e.name)));
    }
    await Promise.all(sends);
  }
  await until(() => runs.size >= rounds * 20, 'every cast run', 15_000);
  await sleep(500);
  const twice = [...runs].filter(([, by]) => by.length > 1).map(([seq, by]) => `${seq}: ${by.join(',')}`);
  assert.equal(twice, [], 'no cast ran twice');
  assert.is(runs.size, rounds * 20);
  // Each refused with the option to change, as before.
  assert.equal(refused, Array(rounds).fill('HERMOD_ERR_CONFIG'));
});

t.run();
