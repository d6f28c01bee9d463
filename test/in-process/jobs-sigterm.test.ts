import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createGateway } from '../../src/gateway/index.js';
import { defaultConfig, getTransport, type Job, RPCClient, Target, type Transport } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { rejects, until } from '../support/assert.js';

// rpc-server maps SIGTERM to its job stop strategy (--stop-jobs, default jobs.stopStrategy): an
// rpc-server process with the built-in demo endpoints (resize is long) on the embedded router,
// a poller in this process.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const BIN = path.join(root, 'dist/bin/rpc-server.js');
const CLIENT_BIN = path.join(root, 'dist/bin/rpc-client.js');

interface Ctx {
  router: Router;
  url: string;
  transport: Transport;
  children: ChildProcess[];
}
const t = suite<Ctx>('rpc-server: SIGTERM and jobs', {} as Ctx);

t.before(async (ctx) => {
  ctx.router = new Router({ port: 0 });
  ctx.url = `amqp://127.0.0.1:${await ctx.router.start()}/`;
  // Fast polls: the poller must read the job's end while the stopping server still answers.
  ctx.transport = await getTransport(ctx.url, {
    config: defaultConfig(),
    overrides: { 'jobs.pollInterval': 20, 'jobs.pollMax': 100, 'jobs.pollTimeout': 2000 },
  });
  ctx.children = [];
});
t.after(async (ctx) => {
  for (const c of ctx.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await ctx.transport.close();
  await ctx.router.stop();
});

let n = 0;
/** Starts an rpc-server and resolves once it serves; `exited` resolves with its exit code and when. */
async function server(ctx: Ctx, extra: string[]) {
  const topic = `sigterm-${++n}`;
  const child = spawn(process.execPath, [BIN, 'j1', '--topic', topic, '--transport-url', ctx.url, ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1' },
  });
  ctx.children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d));
  child.stderr!.on('data', (d: Buffer) => (out += d));
  const exited = new Promise<{ code: number | null; at: number }>((resolve) =>
    child.once('exit', (code) => resolve({ code, at: performance.now() })),
  );
  await until(() => out.includes('serving topic'), `rpc-server serving (${out})`, 15_000);
  const client = new RPCClient(ctx.transport, new Target({ topic }), { timeout: 5000 });
  return { child, exited, client, log: () => out };
}

/**
 * Starts the demo resize job and waits until the server reports it running (not its first
 * progress step: that comes a quarter of the way in, 5 s into a 20 s job).
 */
async function started(client: RPCClient, seconds: number): Promise<Job> {
  const job = await client.start({}, 'resize', { image: 'sig.png', seconds });
  for await (const p of job) if (p.state === 'running') break;
  return job;
}

t('wait (the default): a running job finishes within the deadline, its poller gets the result, exit 0', async (ctx) => {
  const s = await server(ctx, ['--shutdown-timeout', '10']);
  const job = await started(s.client, 2);
  const result = job.result();
  const t0 = performance.now();
  s.child.kill('SIGTERM');
  assert.equal(await result, { image: 'sig.png', size: '1024x768', server: 'j1' });
  const tResult = performance.now() - t0;
  const { code, at } = await s.exited;
  assert.is(code, 0, s.log());
  assert.match(s.log(), /SIGTERM: no new work; finishing 1 job\(s\) \(deadline 10 s\)/);
  // The job had most of its 2 s left when the signal came.
  assert.ok(tResult >= 1000 && tResult < 5000, `result ${tResult.toFixed(0)} ms after SIGTERM`);
  console.log(`    wait: result ${tResult.toFixed(0)} ms after SIGTERM, exit ${(at - t0).toFixed(0)} ms after it`);
  await rejects(job.status(), 'HERMOD_ERR_SERVER_UNAVAILABLE', /did not answer a poll/);
});

t('wait: a job still running at the deadline is cancelled, its poller reads cancelled, exit 7', async (ctx) => {
  const s = await server(ctx, ['--shutdown-timeout', '1', '--stop-jobs', 'wait']);
  const job = await started(s.client, 20);
  const result = job.result();
  result.catch(() => {});
  const t0 = performance.now();
  s.child.kill('SIGTERM');
  await rejects(result, 'HERMOD_ERR_JOB_CANCELLED', /stopped before the job finished/);
  const tResult = performance.now() - t0;
  const { code, at } = await s.exited;
  assert.is(code, 7, s.log());
  assert.ok(tResult >= 900 && at - t0 < 1000 + 1500, `cancelled after ${tResult.toFixed(0)} ms, exit after ${(at - t0).toFixed(0)} ms`);
  console.log(
    `    wait past the deadline (1 s): cancelled ${tResult.toFixed(0)} ms after SIGTERM, exit ${(at - t0).toFixed(0)} ms after it`,
  );
});

t('--stop-jobs abort: the job is cancelled at once, its poller reads cancelled', async (ctx) => {
  const s = await server(ctx, ['--shutdown-timeout', '10', '--stop-jobs', 'abort']);
  const job = await started(s.client, 20);
  const result = job.result();
  result.catch(() => {});
  const t0 = performance.now();
  s.child.kill('SIGTERM');
  await rejects(result, 'HERMOD_ERR_JOB_CANCELLED', /stopping \(abort strategy\)/);
  const tResult = performance.now() - t0;
  const { code, at } = await s.exited;
  // The method stopped on its signal by itself: nothing was left running at the deadline.
  assert.is(code, 0, s.log());
  assert.ok(at - t0 < 3000, `exit ${(at - t0).toFixed(0)} ms after SIGTERM, not at the 10 s deadline`);
  // Said as what happens (was "finishing 1 job(s)").
  assert.match(s.log(), /SIGTERM: no new work; finishing 1 job\(s\) \(cancelling them\)/);
  console.log(`    abort: cancelled ${tResult.toFixed(0)} ms after SIGTERM, exit ${(at - t0).toFixed(0)} ms after it`);
});

t('--stop-jobs takes only wait or abort', async (ctx) => {
  const child = spawn(process.execPath, [BIN, 'j1', '--topic', 'x', '--transport-url', ctx.url, '--stop-jobs', 'later'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d));
  const code = await new Promise((resolve) => child.once('exit', resolve));
  assert.is(code, 2);
  assert.match(err, /--stop-jobs <strategy>' argument 'later' is invalid\. Allowed choices are wait, abort/);
});

t(
  'pollers with the default backoff (up to jobs.pollMax, 2 s) read cancelled after a stop at the deadline: rpc-client job --wait and the gateway long poll',
  async (ctx) => {
    const s = await server(ctx, ['--shutdown-timeout', '1']);
    const topic = s.client.target.topic!;
    // The gateway and the CLIs poll with the default jobs.pollInterval, pollMax and pollTimeout.
    const gwTransport = await getTransport(ctx.url, { config: defaultConfig() });
    const gw = createGateway(gwTransport, { routes: [{ topic, method: 'resize' }], listen: { port: 0 } });
    const clis: ChildProcess[] = [];
    try {
      const { url: base } = await gw.start();
      const polls: Array<Promise<{ who: string; what: string; ms: number }>> = [];
      let t0 = 0;
      const ms = () => Math.round(performance.now() - t0);
      // Four pollers started 500 ms apart: once their pauses reach pollMax they poll at four
      // phases of the 2 s period, so some poll next well past the old 1 s linger after the deadline.
      for (let i = 0; i < 4; i++) {
        if (i % 2 === 0) {
          const job = await s.client.start({}, 'resize', { image: `p${i}.png`, seconds: 60 });
          const cli = spawn(process.execPath, [CLIENT_BIN, 'job', job.serialized, '--wait', '--transport-url', ctx.url], {
            stdio: ['ignore', 'pipe', 'pipe'],
            env: { ...process.env, NO_COLOR: '1' },
          });
          clis.push(cli);
          let err = '';
          cli.stderr!.on('data', (d: Buffer) => (err += d));
          polls.push(
            new Promise((resolve) =>
              cli.once('exit', (code) =>
                resolve({ who: `rpc-client ${i}`, what: `exit ${code}: ${err.trim().split('\n').at(-1)}`, ms: ms() }),
              ),
            ),
          );
        } else {
          const r = await fetch(`${base}/v1/${topic}/resize`, {
            method: 'POST',
            headers: { prefer: 'respond-async', 'content-type': 'application/json' },
            body: JSON.stringify({ image: `p${i}.png`, seconds: 60 }),
          });
          const { href } = (await r.json()) as { href: string };
          polls.push(
            fetch(`${base}${href}?wait=60`).then(async (res) => {
              const body = (await res.json()) as { state?: string; error?: { code: string } };
              return { who: `gateway ${i}`, what: `${res.status} ${body.state ?? body.error?.code}`, ms: ms() };
            }),
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      // Past 5 s each poller pauses pollMax between polls.
      await new Promise((resolve) => setTimeout(resolve, 5000));
      t0 = performance.now();
      s.child.kill('SIGTERM');
      const read = await Promise.all(polls);
      const { code, at } = await s.exited;
      console.log(`    ${read.map((r) => `${r.who}: ${r.what} at ${r.ms} ms`).join('; ')}; exit ${code} at ${Math.round(at - t0)} ms`);
      for (const r of read) {
        if (r.who.startsWith('gateway')) assert.is(r.what, '200 cancelled', `${r.who} ${r.what}`);
        else assert.match(r.what, /^exit 1: .*JobCancelled/, `${r.who} ${r.what}`);
      }
      assert.is(code, 7, s.log());
      // The deadline (1 s), the linger for pollers (pollMax + 1 s), the backstop's 0.5 s, and a margin.
      assert.ok(at - t0 < 6500, `exited ${Math.round(at - t0)} ms after SIGTERM`);
    } finally {
      for (const c of clis) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      await gw.stop(1000);
      await gwTransport.close();
    }
  },
);

t.run();
