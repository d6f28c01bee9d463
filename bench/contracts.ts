#!/usr/bin/env node
// `node dist/bench/contracts.js [--url amqp://…] [--calls N] [--rounds R]`: the cost of an
// endpoint contract. The same call (a small object: two numbers and a short string) at 64 in
// flight, to a method with a contract and to one without, in alternating rounds on the same
// server and client so that load from elsewhere on the machine falls on both alike. Default:
// through an embedded AMQP 1.0 router in this process; `--url memory://` isolates hermod's own cost.
import { Command } from 'commander';
import { type Context, defaultConfig, getTransport, Router, RPCClient, RPCServer, Target } from '../src/index.js';

const opts = new Command('bench-contracts')
  .option('--url <url>', 'transport URL (default: an embedded router)')
  .option('--calls <n>', 'calls per round', (v) => Number(v), 4000)
  .option('--rounds <n>', 'rounds per variant', (v) => Number(v), 5)
  .option('--concurrency <n>', 'calls in flight', (v) => Number(v), 64)
  .parse()
  .opts<{ url?: string; calls: number; rounds: number; concurrency: number }>();

const ARGS = {
  type: 'object',
  required: ['a', 'b', 'name'],
  properties: { a: { type: 'number' }, b: { type: 'number' }, name: { type: 'string', maxLength: 64 } },
};
class Plain {
  add(_ctx: Context, { a, b }: { a: number; b: number; name: string }) {
    return a + b;
  }
}
class Typed extends Plain {
  static readonly contracts = { add: { args: ARGS, result: { type: 'number' } } };
}

const router = opts.url ? undefined : new Router({ port: 0 });
const url = opts.url ?? `amqp://127.0.0.1:${await router!.start()}/`;
const server = await getTransport(url, { config: defaultConfig() });
const client = await getTransport(url, { config: defaultConfig() });
const servers = [new RPCServer(server, new Target({ topic: 'plain', server: 's' }), [new Plain()])];
servers.push(new RPCServer(server, new Target({ topic: 'typed', server: 's' }), [new Typed()]));
for (const s of servers) await s.start();

async function round(topic: string): Promise<number> {
  const c = new RPCClient(client, new Target({ topic }), { timeout: 30_000 });
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: opts.concurrency }, async () => {
      while (next < opts.calls) {
        const i = next++;
        await c.call({}, 'add', { a: i, b: 1, name: 'bench' });
      }
    }),
  );
  return opts.calls / ((performance.now() - t0) / 1000);
}

await round('plain');
await round('typed'); // warm-up: JIT, links, ajv
const rates: Record<string, number[]> = { plain: [], typed: [] };
for (let r = 0; r < opts.rounds; r++) {
  for (const topic of r % 2 ? ['typed', 'plain'] : ['plain', 'typed']) rates[topic]!.push(await round(topic));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const plain = median(rates.plain!);
const typed = median(rates.typed!);
console.log(
  `contracts bench over ${opts.url ?? 'an embedded router'}: ${opts.rounds} rounds × ${opts.calls} calls, ${opts.concurrency} in flight`,
);
console.log(`  without a contract: ${plain.toFixed(0)} calls/s (rounds: ${rates.plain!.map((x) => x.toFixed(0)).join(', ')})`);
console.log(`  with a contract:    ${typed.toFixed(0)} calls/s (rounds: ${rates.typed!.map((x) => x.toFixed(0)).join(', ')})`);
console.log(`  cost: ${(((plain - typed) / plain) * 100).toFixed(1)} % (median against median)`);
for (const s of servers) {
  await s.stop();
  await s.wait(1000);
}
await server.close();
await client.close();
await router?.stop();
