import { inspect } from 'node:util';
/**
 * The long-operation step of `npm run demo`: one job from start to result with its progress
 * (README "Long operations"). Its own file so that the demo's other steps merge apart from it.
 */
import { type Context, defaultConfig, getTransport, RPCClient, Target } from '../index.js';
import { progressLine } from './jobs-command.js';

/** Starts the demo servers' long `resize` on topic `demo` through `url`, prints each progress change and the result. */
export async function demoJob(url: string, ctx: Context, say: (s: string) => void): Promise<void> {
  say("start resize(image='cat.png', seconds=2) as a job: the server answers with a token at once and runs it on; the client polls it");
  // Polls at most 250 ms apart (default 2 s) so that each of the job's 500 ms steps shows.
  const transport = await getTransport(url, { config: defaultConfig(), overrides: { 'jobs.pollMax': 250 } });
  try {
    const client = new RPCClient(transport, new Target({ topic: 'demo' }), { timeout: 10_000 });
    const t0 = Date.now();
    const job = await client.start(ctx, 'resize', { image: 'cat.png', seconds: 2 });
    console.log(`    token: job ${job.id.slice(0, 8)}… on server ${job.token.server} (keep job.serialized to re-attach after a restart)`);
    for await (const p of job) console.log(`    ${progressLine(p)}`);
    const result = await job.result();
    console.log(`    result after ${((Date.now() - t0) / 1000).toFixed(1)} s: ${inspect(result, { colors: false })}`);
  } finally {
    await transport.close();
  }
}
