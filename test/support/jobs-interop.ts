import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultConfig, getTransport, RPCClient, RPCServer, Target, type Transport } from '../../src/index.js';
import { rejects, sleep } from './assert.js';
import { Images } from './jobs-cases.js';
import { OsloPeer, osloAvailable, type PyError } from './oslo.js';

// A python3-oslo.messaging client against a hermod server with long methods: it gets the job
// token as a plain dict and follows the job with ordinary server-directed calls in namespace
// hermod. The same cases on every broker.

export interface JobsInteropBroker {
  url: string;
  stop(): Promise<void>;
}

interface Ctx {
  broker: JobsInteropBroker;
  transports: Transport[];
  servers: RPCServer[];
  py: OsloPeer;
}

export function jobsInteropSuite(name: string, broker: () => Promise<JobsInteropBroker>) {
  const t = suite<Ctx>(name, {} as Ctx);
  t.before(async (ctx) => {
    if (!osloAvailable()) throw new Error('python3-oslo.messaging is not installed (.ci/run installs it)');
    ctx.broker = await broker();
    ctx.transports = [];
    ctx.servers = [];
    ctx.py = await OsloPeer.start('client', { url: ctx.broker.url });
  });
  t.after(async (ctx) => {
    for (const s of ctx.servers) {
      await s.stop({ jobs: 'abort' });
      await s.wait(500);
    }
    await ctx.py?.kill();
    for (const tr of ctx.transports) await tr.close();
    await ctx.broker?.stop();
  });

  let n = 0;
  const topic = () => `pyjobs-${++n}`;
  async function serve(ctx: Ctx, tp: string) {
    // 250 ms: a 4 ms job on a server's first call took over 50 ms once in CI (four suites at a
    // time on 2 cores) and came back as a token; the 600 ms job is still well past the bound.
    const tr = await getTransport(ctx.broker.url, { config: defaultConfig(), overrides: { 'jobs.deferAfter': 250 } });
    ctx.transports.push(tr);
    const s = new RPCServer(tr, new Target({ topic: tp, server: 'h1' }), [new Images()]);
    await s.start();
    ctx.servers.push(s);
    return s;
  }
  async function pyError(p: Promise<unknown>): Promise<PyError> {
    try {
      await p;
    } catch (err) {
      return (err as { py: PyError }).py;
    }
    throw new Error('expected the Python call to fail');
  }
  /** A server-directed call from Python to the jobs endpoint of the token's server. */
  const hermodCall = (ctx: Ctx, token: Record<string, unknown>, method: string, args: Record<string, unknown>) =>
    ctx.py.call({
      topic: token.topic,
      exchange: token.exchange,
      server: token.server,
      namespace: 'hermod',
      version: '1.0',
      method,
      args,
      timeout: 5,
    });

  t("a Python server's result shaped like a job token of that very call is data; start() there is refused", async (ctx) => {
    const tp = topic();
    const py = await OsloPeer.start('server', { url: ctx.broker.url, topic: tp, server: 'py1' });
    try {
      const tr = await getTransport(ctx.broker.url, { config: defaultConfig() });
      ctx.transports.push(tr);
      const client = new RPCClient(tr, new Target({ topic: tp, server: 'py1' }), { timeout: 10_000 });
      // Everything a token of this call's own job would name: oslo servers answer with what the
      // method returned, which hermod must not take for a job to poll (the Python server has no
      // jobs endpoint: that poll failed with NoSuchMethod before the reply marker).
      const shaped = {
        hermod_job: 1,
        job_id: 'a'.repeat(32),
        server: 'py1',
        topic: tp,
        exchange: 'openstack',
        method: 'echo',
        instance: 'b'.repeat(32),
      };
      assert.equal(await client.call({}, 'echo', { value: shaped }), shaped);
      assert.equal(await client.callOrJob({}, 'echo', { value: shaped }), { result: shaped, token: undefined });
      // start() cannot tell this from a hermod server older than the marker, whose job would be
      // running: it refuses, says both, and hands the token over rather than lose such a job.
      const refused = await rejects(client.start({}, 'echo', { value: shaped }), 'HERMOD_ERR_INVALID_JOB_TOKEN', /does not mark/);
      assert.equal((refused as { token?: unknown }).token, shaped);
      // A result that is no token of this call: refused as a plain result.
      await rejects(client.start({}, 'echo', { value: { ...shaped, method: 'other' } }), 'HERMOD_ERR_INVALID_JOB_TOKEN', /plain result/);
    } finally {
      await py.stop();
    }
  });

  t('a Python client gets the token dict and polls job_status / job_result to the result', async (ctx) => {
    const tp = topic();
    await serve(ctx, tp);
    const quick = await ctx.py.call({ topic: tp, method: 'resize', args: { ms: 4 }, timeout: 5 });
    assert.equal(quick, { image: 'img', resized: true, user: null }, 'a job that ends within the bound is a plain result');
    const token = (await ctx.py.call({
      topic: tp,
      method: 'resize',
      args: { ms: 600, image: 'py.png' },
      ctx: { user: 'py' },
      timeout: 5,
    })) as Record<string, unknown>;
    assert.is(token.hermod_job, 1);
    assert.is(token.server, 'h1');
    assert.is(token.topic, tp);
    assert.is(token.exchange, 'openstack');
    assert.is(token.method, 'resize');
    const states: string[] = [];
    for (let i = 0; i < 100; i++) {
      // As the README's Python loop polls: the job_result that follows is announced.
      const st = (await hermodCall(ctx, token, 'job_status', { token, result_follows: true })) as Record<string, unknown>;
      states.push(String(st.state));
      if (st.state === 'succeeded') break;
      await sleep(100);
    }
    assert.is(states.at(-1), 'succeeded');
    assert.ok(states.includes('running'));
    // By job_id alone too, as a Python caller that kept only the id would.
    assert.equal(await hermodCall(ctx, token, 'job_result', { job_id: token.job_id }), { image: 'py.png', resized: true, user: 'py' });
  });

  t('a Python client reads unknown, pending and cancelled jobs as distinct remote errors', async (ctx) => {
    const tp = topic();
    await serve(ctx, tp);
    const token = (await ctx.py.call({ topic: tp, method: 'resize', args: { ms: 5000, steps: 50 }, timeout: 5 })) as Record<
      string,
      unknown
    >;
    const pending = await pyError(hermodCall(ctx, token, 'job_result', { token }));
    assert.is(pending.exc_type, 'JobPending', JSON.stringify(pending));
    const unknown = await pyError(hermodCall(ctx, token, 'job_status', { job_id: '0'.repeat(32) }));
    assert.is(unknown.exc_type, 'JobNotFound', JSON.stringify(unknown));
    const bad = await pyError(hermodCall(ctx, token, 'job_status', { job_id: 'nope' }));
    assert.is(bad.exc_type, 'InvalidJobToken', JSON.stringify(bad));
    const st = (await hermodCall(ctx, token, 'job_cancel', { token })) as Record<string, unknown>;
    assert.is(st.cancel_requested, true);
    let state = '';
    for (let i = 0; i < 50 && state !== 'cancelled'; i++) {
      state = String(((await hermodCall(ctx, token, 'job_status', { token })) as Record<string, unknown>).state);
      if (state !== 'cancelled') await sleep(50);
    }
    assert.is(state, 'cancelled');
    const cancelled = await pyError(hermodCall(ctx, token, 'job_result', { token }));
    assert.is(cancelled.exc_type, 'JobCancelled', JSON.stringify(cancelled));
    const finished = await pyError(hermodCall(ctx, token, 'job_cancel', { token }));
    assert.is(finished.exc_type, 'JobFinished', JSON.stringify(finished));
  });

  return t;
}
