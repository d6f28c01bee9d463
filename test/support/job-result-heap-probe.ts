import { getTransport, RPCClient, RPCServer, Target } from '../../src/index.js';

/**
 * Run as its own process by unit/job-store (`node --expose-gc`): holds the results of `jobs`
 * finished jobs, uncollected, and prints how much heap they took beside their JSON's length:
 * `{ "heapBytes": n, "jsonBytes": n, "held": n, "same": true }`.
 */
const gc = (globalThis as { gc?: () => void }).gc!;
const jobs = 5;
// Many short arrays: their JSON is about 1.2 MB each (`[3,1],`), their parsed form about ten
// times that (an array object and its backing store per row).
const make = (seed: number) => Array.from({ length: 200_000 }, (_, i) => [(i + seed) % 10, 1]);
const transport = await getTransport('memory://job-heap', { overrides: { 'jobs.maxResultBytes': 100 * 1024 * 1024 } });
const server = new RPCServer(transport, new Target({ topic: 'job-heap', server: 's' }), [
  {
    async rows(_ctx: unknown, args: { seed: number }) {
      return make(args.seed);
    },
  },
]);
await server.start();
const client = new RPCClient(transport, new Target({ topic: 'job-heap' }), { timeout: 10_000 });
const settle = async () => {
  for (let k = 0; k < 5; k++) {
    gc();
    await new Promise((r) => setTimeout(r, 20));
  }
  return process.memoryUsage().heapUsed;
};
const before = await settle();
const started = [];
for (let n = 0; n < jobs; n++) started.push(await client.start({}, 'rows', { seed: n }));
for (const j of started) {
  for (let k = 0; k < 500 && (await j.status()).state !== 'succeeded'; k++) await new Promise((r) => setTimeout(r, 10));
}
const after = await settle();
const jsonBytes = jobs * JSON.stringify(make(0)).length;
const held = server.stats().jobs.held;
// Read back: the same rows as the method returned.
const first = await started[0]!.result();
const same = JSON.stringify(first) === JSON.stringify(make(0));
process.stdout.write(`${JSON.stringify({ heapBytes: after - before, jsonBytes, held, same })}\n`);
await server.stop();
await server.wait(1000);
await transport.close();
