import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultConfig, getTransport, RPCServer, Target, type Transport } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { Images } from '../support/jobs-cases.js';

// rpc-client --start / rpc-client job <token> as subprocesses, against a hermod server in this
// process through the embedded router.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const BIN = path.join(root, 'dist/bin/rpc-client.js');
const run = promisify(execFile);

interface Ctx {
  router: Router;
  url: string;
  transport: Transport;
  server: RPCServer;
}
const t = suite<Ctx>('rpc-client: jobs', {} as Ctx);

t.before(async (ctx) => {
  ctx.router = new Router({ port: 0 });
  ctx.url = `amqp://127.0.0.1:${await ctx.router.start()}/`;
  ctx.transport = await getTransport(ctx.url, { config: defaultConfig() });
  ctx.server = new RPCServer(ctx.transport, new Target({ topic: 'img', server: 'img1' }), [new Images()]);
  await ctx.server.start();
});
t.after(async (ctx) => {
  await ctx.server.stop({ jobs: 'abort' });
  await ctx.server.wait(500);
  await ctx.transport.close();
  await ctx.router.stop();
});

async function cli(ctx: Ctx, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args, '--transport-url', ctx.url], {
      timeout: 15_000,
      env: { ...process.env, NO_COLOR: '1' },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

t('--start prints the token; job shows status, --wait follows progress to the result, --cancel cancels', async (ctx) => {
  const started = await cli(ctx, ['img', 'resize', 'ms=9000', 'steps=3', 'image=cli.png', '--start']);
  assert.is(started.code, 0, started.stderr);
  const token = JSON.parse(started.stdout.trim());
  assert.is(token.hermod_job, 1);
  assert.is(token.server, 'img1');
  const status = await cli(ctx, ['job', started.stdout.trim()]);
  assert.is(status.code, 0, status.stderr);
  // Each CLI process takes a second or two to start under coverage, more with other test files
  // beside it: the 9 s job (3 s a step) is still running here and when --wait starts.
  assert.match(status.stdout, /^resize running/, status.stdout);
  assert.match(status.stdout, new RegExp(`job ${token.job_id} on img1 \\(topic img\\)`));
  const waited = await cli(ctx, ['job', started.stdout.trim(), '--wait', '--json']);
  assert.is(waited.code, 0, waited.stderr);
  assert.match(waited.stderr, /^running \d+% step [12]\/3$/m, waited.stderr);
  assert.match(waited.stderr, /^succeeded 100% step 3\/3$/m);
  assert.equal(JSON.parse(waited.stdout), { image: 'cli.png', resized: true, user: null });

  const long = await cli(ctx, ['img', 'resize', 'ms=10000', 'steps=100', '--start']);
  const cancelled = await cli(ctx, ['job', long.stdout.trim(), '--cancel']);
  assert.is(cancelled.code, 0, cancelled.stderr);
  assert.match(cancelled.stdout, /cancel requested: resize/);
  const after = await cli(ctx, ['job', long.stdout.trim(), '--wait']);
  assert.is(after.code, 1, 'a cancelled job is a remote error');
  assert.match(after.stderr, /JobCancelled/);
});

t('bad tokens exit 2 (usage); an unknown job exits 1 with JobNotFound', async (ctx) => {
  const bad = await cli(ctx, ['job', '{"hermod_job":1}']);
  assert.is(bad.code, 2);
  assert.match(bad.stderr, /bad job token: job token: job_id must be 32 hex digits/);
  const notJson = await cli(ctx, ['job', 'nonsense']);
  assert.is(notJson.code, 2);
  const started = await cli(ctx, ['img', 'resize', 'ms=100', '--start']);
  const token = { ...JSON.parse(started.stdout), job_id: 'e'.repeat(32) };
  const unknown = await cli(ctx, ['job', JSON.stringify(token)]);
  assert.is(unknown.code, 1);
  assert.match(unknown.stderr, /JobNotFound/);
});

t.run();
