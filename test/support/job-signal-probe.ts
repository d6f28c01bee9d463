import { getTransport, RPCClient, RPCServer, Target } from '../../src/index.js';

/**
 * Run as its own process by unit/job-store (`node --expose-gc`): the test runner's linger report
 * keeps a stack per live timer, and a finished job's expiry timer is live, so in a test process
 * that stack kept the closures this checks are freed. Prints `{ "freed": n, "jobs": 20 }`.
 */
const gc = (globalThis as { gc?: () => void }).gc!;
let freed = 0;
const registry = new FinalizationRegistry(() => freed++);
const transport = await getTransport('memory://job-signal', {});
const server = new RPCServer(transport, new Target({ topic: 'job-signal', server: 's' }), [
  {
    async work(ctx: { signal: AbortSignal }) {
      const big = Buffer.alloc(1 << 20);
      registry.register(big, 'big');
      ctx.signal.addEventListener('abort', () => big.fill(0));
      return 'ok';
    },
  },
]);
await server.start();
const client = new RPCClient(transport, new Target({ topic: 'job-signal' }), { timeout: 5000 });
const jobs = [];
for (let i = 0; i < 20; i++) jobs.push(await client.start({}, 'work', {}));
for (const j of jobs) {
  for (let k = 0; k < 200 && (await j.status()).state !== 'succeeded'; k++) await new Promise((r) => setTimeout(r, 10));
}
const held = server.stats().jobs.held;
for (let k = 0; k < 20 && freed < 20; k++) {
  gc();
  await new Promise((r) => setTimeout(r, 20));
}
process.stdout.write(`${JSON.stringify({ freed, held, jobs: jobs.length })}\n`);
await server.stop();
await server.wait(1000);
await transport.close();
