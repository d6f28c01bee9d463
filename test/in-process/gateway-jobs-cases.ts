// Long operations over HTTP: `Prefer: respond-async` starts a call as a job, `/v1/jobs/{ref}`
// polls and cancels it. Real HTTP against real RPC servers; run on memory and the embedded router
// (gateway-jobs.test.ts) and on RabbitMQ (gateway-rabbit.test.ts).
import { randomBytes } from 'node:crypto';
import * as assert from 'uvu/assert';
import { createGateway } from '../../src/gateway/index.js';
import { defaultConfig, getTransport, RPCClient, RPCServer, Target } from '../../src/index.js';
import { sleep, until } from '../support/assert.js';
import { type GatewayBroker, harness, harnessSuite, http, type Json, keysFileFor, Users, userRoutes } from './gateway-cases.js';

const ASYNC = { prefer: 'respond-async' };

export function gatewayJobSuite(title: string, broker: () => Promise<GatewayBroker>) {
  const t = harnessSuite(title, broker);
  const withRender = (topic: string) => ({ routes: [...userRoutes(topic), { topic, method: 'render', summary: 'A long render' }] });

  t('Prefer: respond-async answers 202 with a sealed reference; GET polls it to the result', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, withRender);
    const { base, topic } = ctx.h;
    const t0 = Date.now();
    const started = await http(base, 'POST', `/v1/${topic}/render`, { ms: 1500 }, ASYNC);
    const startMs = Date.now() - t0;
    assert.is(started.status, 202, JSON.stringify(started.json));
    assert.ok(startMs < 1200, `the 202 came before the 1500 ms job ended (${startMs} ms)`);
    const ref: string = started.json.job;
    assert.match(ref, /^[A-Za-z0-9_-]{100,}$/);
    assert.is(started.headers.get('location'), `/v1/jobs/${ref}`);
    assert.is(started.json.href, `/v1/jobs/${ref}`);
    assert.is(started.json.method, `${topic}.render`);
    assert.is(started.headers.get('preference-applied'), 'respond-async');
    // Sealed: the server's name, topic and job id are not readable from the reference. Looked
    // for as JSON strings: a bare 'u1' is two bytes, which the ciphertext held by chance about
    // once in 500 runs (a CI run failed so).
    const bytes = Buffer.from(ref, 'base64url').toString('latin1');
    for (const secret of [topic, 'u1', 'openstack'].map((x) => JSON.stringify(x)))
      assert.not.ok(bytes.includes(secret), `${secret} readable in the reference`);

    // Not a poll: with ?wait it held the request for an answer it threw away.
    assert.is((await fetch(`${base}/v1/jobs/${ref}?wait=10`, { method: 'HEAD' })).status, 404);
    const running = await http(base, 'GET', `/v1/jobs/${ref}`);
    assert.is(running.status, 200, JSON.stringify(running.json));
    assert.match(running.headers.get('vary') ?? '', /prefer/i, 'a poll answer depends on Prefer: wait');
    assert.ok(['pending', 'running'].includes(running.json.state), running.json.state);
    assert.is(running.json.done, false);
    assert.is(running.json.result, undefined);
    assert.is(running.json.job, ref);
    assert.is(running.json.method, `${topic}.render`);
    assert.type(running.json.createdAt, 'string');

    const t1 = Date.now();
    const done = await http(base, 'GET', `/v1/jobs/${ref}?wait=10`);
    const waitedMs = Date.now() - t1;
    assert.is(done.status, 200);
    assert.is(done.json.state, 'succeeded', JSON.stringify(done.json));
    assert.is(done.json.done, true);
    assert.is(done.json.result, 1500);
    assert.type(done.json.endedAt, 'string');
    assert.ok(waitedMs < 5000, `?wait answered when the job ended (${waitedMs} ms)`);
    // Read again: the result stays until the server's resultTtl.
    const again = await http(base, 'GET', `/v1/jobs/${ref}`, undefined, { prefer: 'wait=3' });
    assert.is(again.json.result, 1500);
    console.log(`    ${ctx.broker.url.split(':')[0]}: 202 in ${startMs} ms, the 1500 ms job's result by ?wait ${waitedMs} ms after`);
  });

  t('any method can be started; wait=N answers 200 with the result when it ends in time', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, withRender);
    const { base, topic } = ctx.h;
    const quick = await http(base, 'POST', `/v1/${topic}/get`, { id: 4 }, { prefer: 'respond-async, wait=5' });
    assert.is(quick.status, 200, JSON.stringify(quick.json));
    assert.equal(quick.json, { result: { id: 4, name: 'user-4', verbose: false, by: 'u1' } });
    assert.is(quick.headers.get('preference-applied'), null);
    // The alias route and a plain method, started without waiting.
    const alias = await http(base, 'GET', '/users/5', undefined, ASYNC);
    assert.is(alias.status, 202);
    const polled = await http(base, 'GET', `${alias.headers.get('location')}?wait=5`);
    assert.is(polled.json.result.id, 5);
    // A wait shorter than the job: 202 after it, and the job runs on.
    const t0 = Date.now();
    const slow = await http(base, 'POST', `/v1/${topic}/render`, { ms: 2500 }, { prefer: 'wait=1; x=y, respond-async' });
    assert.is(slow.status, 202);
    assert.ok(Date.now() - t0 >= 900, `waited ${Date.now() - t0} ms of wait=1`);
    const end = await http(base, 'GET', `/v1/jobs/${slow.json.job}?wait=10`);
    assert.is(end.json.result, 2500);
    // Casts ignore it (they answer at once anyway); unknown preferences are ignored.
    const cast = await http(base, 'POST', `/v1/${topic}/touch`, { n: 1 }, ASYNC);
    assert.is(cast.status, 202);
    assert.is(cast.json.accepted, true);
    const other = await http(base, 'POST', `/v1/${topic}/get`, { id: 6 }, { prefer: 'return=minimal, handling=strict' });
    assert.is(other.status, 200);
  });

  t(
    'a job route ("job": true) starts every call as a job, Prefer or not, on REST and JSON-RPC; Prefer: wait=N still waits',
    async (ctx) => {
      ctx.h = await harness(ctx.broker.url, (topic) => ({
        routes: [{ topic, method: 'render', job: true, alias: 'POST /renders' }],
      }));
      const { base, topic } = ctx.h;
      const plain = await http(base, 'POST', '/renders', { ms: 10 });
      assert.is(plain.status, 202, JSON.stringify(plain.json));
      assert.match(plain.headers.get('location') ?? '', /^\/v1\/jobs\//);
      assert.is((await http(base, 'GET', `${plain.json.href}?wait=5`)).json.result, 10);
      const waited = await http(base, 'POST', `/v1/${topic}/render`, { ms: 10 }, { prefer: 'wait=5' });
      assert.equal([waited.status, waited.json], [200, { result: 10 }]);
      assert.is(waited.headers.get('preference-applied'), null, 'not asked for respond-async');
      // JSON-RPC follows the same rule: a job without Prefer, the result within wait=N.
      const call = (headers: Record<string, string> = {}) =>
        http(base, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: `${topic}.render`, params: { ms: 10 }, id: 1 }, headers);
      const rpcJob = await call();
      assert.match(rpcJob.json.result.href, /^\/v1\/jobs\//, JSON.stringify(rpcJob.json));
      assert.is(rpcJob.headers.get('preference-applied'), null);
      const rpcWaited = await call({ prefer: 'wait=5' });
      assert.equal(rpcWaited.json, { jsonrpc: '2.0', result: 10, id: 1 });
      assert.is(rpcWaited.headers.get('preference-applied'), null);
      const rpcAsked = await call({ prefer: 'respond-async' });
      assert.is(rpcAsked.headers.get('preference-applied'), 'respond-async');
      const doc = await http(base, 'GET', '/openapi.json');
      assert.is(doc.json.paths['/renders'].post['x-hermod-job'], true);
      // The document offers a job route no `?cast` (refused: it takes no cast), and its 202 is a job.
      const post = doc.json.paths[`/v1/${topic}/render`].post;
      assert.equal(
        post.parameters.map((p: { name: string }) => p.name),
        ['server', 'namespace', 'version', 'timeout', 'Prefer'],
      );
      assert.equal(Object.keys(post.responses['202'].content['application/json'].schema.properties), [
        'job',
        'href',
        'method',
        'requestId',
      ]);
      assert.is((await http(base, 'POST', `/v1/${topic}/render?cast=1`, { ms: 10 })).status, 400);
    },
  );

  t('JSON-RPC: Prefer: respond-async answers each call with its job; rpc.job and rpc.cancel_job read and cancel', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, withRender);
    const { base, topic } = ctx.h;
    const rpc = (body: unknown, headers: Record<string, string> = {}) => http(base, 'POST', '/jsonrpc', body, headers);
    const batch = await rpc(
      [
        { jsonrpc: '2.0', method: `${topic}.render`, params: { ms: 300 }, id: 'r' },
        { jsonrpc: '2.0', method: 'getUser', params: { id: 3 }, id: 'g' },
        { jsonrpc: '2.0', method: `${topic}.render`, params: { ms: 60_000 }, id: 'long' },
      ],
      ASYNC,
    );
    assert.is(batch.status, 200);
    assert.is(batch.headers.get('preference-applied'), 'respond-async');
    const by = new Map<string, Json>(batch.json.map((x: Json) => [x.id, x.result]));
    assert.is(by.get('r').method, `${topic}.render`);
    assert.is(by.get('r').href, `/v1/jobs/${by.get('r').job}`);
    // As the README shows it: no state, since the job may have moved on already (a poll says).
    assert.equal(Object.keys(by.get('r')).sort(), ['href', 'job', 'method']);
    const done = await rpc({ jsonrpc: '2.0', method: 'rpc.job', params: { job: by.get('r').job, wait: 5 }, id: 1 });
    assert.is(done.json.result.state, 'succeeded', JSON.stringify(done.json));
    assert.is(done.json.result.result, 300);
    // The REST face reads the same reference.
    assert.is((await http(base, 'GET', `${by.get('g').href}?wait=5`)).json.result.id, 3);
    const cancel = await rpc({ jsonrpc: '2.0', method: 'rpc.cancel_job', params: { job: by.get('long').job }, id: 2 });
    assert.is(cancel.json.result.cancelRequested, true, JSON.stringify(cancel.json));
    const ended = await rpc({ jsonrpc: '2.0', method: 'rpc.job', params: { job: by.get('long').job, wait: 5 }, id: 3 });
    assert.is(ended.json.result.state, 'cancelled');
    const twice = await rpc({ jsonrpc: '2.0', method: 'rpc.cancel_job', params: { job: by.get('long').job }, id: 4 });
    assert.is(twice.json.error.code, -32008);
    assert.is(twice.json.error.data.code, 'HERMOD_ERR_JOB_FINISHED');
    const unknown = await rpc({ jsonrpc: '2.0', method: 'rpc.job', params: { job: 'nope' }, id: 5 });
    assert.is(unknown.json.error.code, -32007);
    const noParams = await rpc({ jsonrpc: '2.0', method: 'rpc.job', id: 6 });
    assert.is(noParams.json.error.code, -32602);
    const extra = await rpc({ jsonrpc: '2.0', method: 'rpc.cancel_job', params: { job: 'x', wait: 1 }, id: 7 });
    assert.is(extra.json.error.code, -32602);
    const other = await rpc({ jsonrpc: '2.0', method: 'rpc.discover', id: 8 });
    assert.is(other.json.error.code, -32601);
    // Without the preference, calls are answered as before.
    const plain = await rpc({ jsonrpc: '2.0', method: 'getUser', params: { id: 4 }, id: 9 });
    assert.is(plain.json.result.id, 4);
    assert.is(plain.headers.get('preference-applied'), null);
  });

  t("a result shaped like a job token is data: never followed, cancelled or sealed (an echo of another job's token)", async (ctx) => {
    ctx.h = await harness(ctx.broker.url, (topic) => ({ routes: [...withRender(topic).routes, { topic, method: 'echo' }] }));
    const { base, topic, transport } = ctx.h;
    // A real job of the same service, whose token a client got hold of.
    const job = await new RPCClient(transport, new Target({ topic })).start({}, 'render', { ms: 60_000 });
    const echoed = await http(base, 'POST', `/v1/${topic}/echo?timeout=1000`, { value: job.token });
    assert.is(echoed.status, 200, JSON.stringify(echoed.json));
    assert.equal(echoed.json.result, job.token, 'answered as data');
    assert.is((await job.status()).state, 'running', 'not followed into a cancel at the timeout');
    // A token of another topic, server or method is data too (the forged one names none of them).
    for (const forged of [
      { ...job.token, topic: 'elsewhere' },
      { ...job.token, method: 'echo' },
      { ...job.token, exchange: 'x' },
    ]) {
      const r = await http(base, 'POST', `/v1/${topic}/echo`, { value: forged });
      assert.equal([r.status, r.json.result], [200, forged]);
    }
    await job.cancel();
  });

  t("a reply marked as a job's whose token names another job (a rogue server of the route's topic) is data", async (ctx) => {
    // From a review: the gateway followed and sealed any marked token, so a peer answering for
    // one topic handed out another service's job, polled under its own route's roles.
    const rogue = `rogue-${randomBytes(4).toString('hex')}`;
    ctx.h = await harness(ctx.broker.url, (topic) => ({ routes: [...withRender(topic).routes, { topic: rogue, method: 'render' }] }));
    const { base, topic, transport } = ctx.h;
    const victim = await new RPCClient(transport, new Target({ topic })).start({}, 'render', { ms: 60_000 });
    const listener = await transport.driver.listen(new Target({ topic: rogue, server: 'r1' }), {
      prefetch: 10,
      onMessage: async (m) => {
        m.acknowledge();
        if (m.expectsReply) await m.reply({ result: victim.token, job: true });
        m.done();
      },
    });
    try {
      const started = await http(base, 'POST', `/v1/${rogue}/render`, {}, { prefer: 'respond-async' });
      assert.equal([started.status, started.json.result], [200, victim.token], JSON.stringify(started.json));
      assert.is(started.json.job, undefined, 'no reference handed out');
      const plain = await http(base, 'POST', `/v1/${rogue}/render?timeout=1000`, {});
      assert.equal([plain.status, plain.json.result], [200, victim.token], 'answered as data, not followed');
      assert.is((await victim.status()).state, 'running');
    } finally {
      await listener.close();
      await victim.cancel();
    }
  });

  t('messages of job errors name no server, topic or job id', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, withRender);
    const { base, topic } = ctx.h;
    const started = await http(base, 'POST', `/v1/${topic}/render`, { ms: 60_000 }, ASYNC);
    const ref = started.json.job;
    assert.is((await http(base, 'DELETE', `/v1/jobs/${ref}`)).status, 202);
    const ended = await http(base, 'GET', `/v1/jobs/${ref}?wait=5`);
    const again = await http(base, 'DELETE', `/v1/jobs/${ref}`);
    assert.is(again.status, 409);
    for (const [what, text] of [
      ['cancelled', JSON.stringify(ended.json.error)],
      ['finished', JSON.stringify(again.json.error)],
    ] as const) {
      for (const secret of [topic, 'u1', 'openstack', /[0-9a-f]{32}/] as const) {
        assert.not.ok(typeof secret === 'string' ? text.includes(secret) : secret.test(text), `${what}: ${secret} in ${text}`);
      }
    }
    assert.is(ended.json.error.message, 'the job was cancelled');
  });

  t("owners: an authenticate hook's context fields (a tenant) bind the reference too", async (ctx) => {
    ctx.h = await harness(ctx.broker.url, (topic) => ({
      ...withRender(topic),
      // No user or project: the tenant alone tells callers apart.
      authenticate: (req) => (req.headers['x-tenant'] ? { roles: [], context: { tenant: String(req.headers['x-tenant']) } } : null),
    }));
    const { base, topic } = ctx.h;
    const started = await http(base, 'POST', `/v1/${topic}/render`, { ms: 10 }, { ...ASYNC, 'x-tenant': 'a' });
    assert.is(started.status, 202);
    assert.is((await http(base, 'GET', started.json.href, undefined, { 'x-tenant': 'b' })).status, 404);
    assert.is((await http(base, 'DELETE', started.json.href, undefined, { 'x-tenant': 'b' })).status, 404);
    assert.is((await http(base, 'GET', `${started.json.href}?wait=5`, undefined, { 'x-tenant': 'a' })).json.result, 10);
  });

  t('RFC 7240: the first of a repeated preference counts; Preference-Applied only to who asked; job routes take no cast', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, (topic) => ({
      routes: [
        { topic, method: 'render' },
        { topic, method: 'sleep', job: true, alias: 'GET /naps' },
        { topic, method: 'touch', job: true },
      ],
    }));
    const { base, topic } = ctx.h;
    // A JSON-RPC notification to a job route starts the job (its token unasked for); before, it
    // was sent as a cast, refused, the refusal swallowed: 204, and the method never ran.
    const note = await http(base, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: `${topic}.touch`, params: { n: 1 } });
    assert.is(note.status, 204);
    await until(() => ctx.h.users.touched.length === 1, 'the notified job to run');
    assert.equal(ctx.h.users.touched[0]!.args, { n: 1 });
    const t0 = Date.now();
    const first = await http(base, 'POST', `/v1/${topic}/render`, { ms: 3000 }, { prefer: 'respond-async, wait=1, wait=10' });
    assert.is(first.status, 202);
    assert.ok(Date.now() - t0 < 2500, `wait=1 counted, not wait=10 (${Date.now() - t0} ms)`);
    // A wait past what the gateway allows is its longest wait, not no wait at all (ten digits were ignored).
    const long = await http(base, 'GET', '/naps?ms=300', undefined, { prefer: 'wait=99999999999' });
    assert.equal([long.status, long.json], [200, { result: '300' }]);
    const job = await http(base, 'GET', '/naps?ms=5');
    assert.is(job.status, 202);
    assert.is(job.headers.get('preference-applied'), null, 'nobody asked');
    assert.match(job.headers.get('vary') ?? '', /prefer/i, 'a GET answer varies with Prefer');
    const cast = await http(base, 'GET', '/naps?ms=5', undefined, { 'x-hermod-cast': '1' });
    assert.is(cast.status, 400);
    assert.match(cast.json.error.message, /runs as a job: it takes no cast/);
    const nowhere = await http(base, 'PUT', '/v1/jobs/abc');
    assert.is(nowhere.status, 404);
    assert.is(nowhere.json.error.code, 'HERMOD_ERR_NOT_FOUND');
    await http(base, 'DELETE', `/v1/jobs/${first.json.job}`);
  });

  t('a failed job reads as state failed with the error of a call; schemas apply to job results too', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, withRender);
    const { base, topic } = ctx.h;
    const started = await http(base, 'POST', `/v1/${topic}/fail`, { message: 'boom' }, ASYNC);
    assert.is(started.status, 202);
    const r = await http(base, 'GET', `/v1/jobs/${started.json.job}?wait=5`);
    assert.is(r.status, 200);
    assert.is(r.json.state, 'failed');
    assert.is(r.json.done, true);
    assert.is(r.json.error.code, 'HERMOD_ERR_REMOTE');
    assert.is(r.json.error.type, 'TypeError');
    assert.is(r.json.error.message, 'boom');
    assert.is(r.json.error.remote.traceback, undefined);
    assert.is(r.json.result, undefined);
    const broken = await http(base, 'POST', `/v1/${topic}/broken`, {}, ASYNC);
    const b = await http(base, 'GET', `/v1/jobs/${broken.json.job}?wait=5`);
    assert.is(b.json.state, 'succeeded');
    assert.is(b.json.error.code, 'HERMOD_ERR_BAD_RESULT', JSON.stringify(b.json));
    assert.is(b.json.result, undefined, 'a result that breaks the schema is not passed on');
    // A method that fails within wait=N answers as the call would.
    const quick = await http(base, 'POST', `/v1/${topic}/fail`, { message: 'now' }, { prefer: 'respond-async, wait=5' });
    assert.is(quick.status, 502);
    assert.is(quick.json.error.message, 'now');
    // A job that failed with a MessagingTimeout of its own (its call elsewhere timed out) failed:
    // the poll that read it did not time out (it was taken for the server gone, 503).
    const timedOut = await http(base, 'POST', `/v1/${topic}/fail`, { message: 'db slow', timeout: true }, ASYNC);
    const tr = await http(base, 'GET', `/v1/jobs/${timedOut.json.job}?wait=5`);
    assert.is(tr.status, 200, JSON.stringify(tr.json));
    assert.is(tr.json.state, 'failed');
    assert.is(tr.json.error.type, 'MessagingTimeout');
    assert.is(tr.json.error.message, 'db slow');
    const quickTimeout = await http(
      base,
      'POST',
      `/v1/${topic}/fail`,
      { message: 'db slow', timeout: true },
      { prefer: 'respond-async, wait=5' },
    );
    assert.is(quickTimeout.status, 502, JSON.stringify(quickTimeout.json));
  });

  t('DELETE cancels (202); the job ends cancelled; a second DELETE is 409', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, withRender);
    const { base, topic, users } = ctx.h;
    const started = await http(base, 'POST', `/v1/${topic}/render`, { ms: 60_000 }, ASYNC);
    const ref = started.json.job;
    const c = await http(base, 'DELETE', `/v1/jobs/${ref}`);
    assert.is(c.status, 202, JSON.stringify(c.json));
    assert.is(c.json.cancelRequested, true);
    const r = await http(base, 'GET', `/v1/jobs/${ref}?wait=5`);
    assert.is(r.json.state, 'cancelled', JSON.stringify(r.json));
    assert.is(r.json.error.code, 'HERMOD_ERR_JOB_CANCELLED');
    await until(() => users.cancelled === 1, 'the method saw its signal abort');
    const twice = await http(base, 'DELETE', `/v1/jobs/${ref}`);
    assert.is(twice.status, 409);
    assert.is(twice.json.error.code, 'HERMOD_ERR_JOB_FINISHED');
  });

  t('references: forged, damaged or foreign ones are 404; a gateway with the same key reads them; bad ?wait 400', async (ctx) => {
    const key = randomBytes(32).toString('base64');
    ctx.h = await harness(ctx.broker.url, (topic) => ({ ...withRender(topic), jobsKey: key }));
    const { base, topic } = ctx.h;
    const started = await http(base, 'POST', `/v1/${topic}/sleep`, { ms: 10 }, ASYNC);
    const ref: string = started.json.job;
    for (const bad of ['x', 'A'.repeat(300), `${ref.slice(0, 40)}${ref[40] === 'A' ? 'B' : 'A'}${ref.slice(41)}`, `${ref}A`, `${ref}==`]) {
      const r = await http(base, 'GET', `/v1/jobs/${bad}`);
      assert.is(r.status, 404, `${bad.slice(0, 50)}: ${r.status}`);
      assert.is(r.json.error.code, 'HERMOD_ERR_JOB_NOT_FOUND');
      assert.ok(r.text.length < 500, 'the reference is not echoed');
    }
    // Past the longest reference this gateway makes, or with a path in it: no job, refused by its
    // length and characters before any decoding.
    for (const bad of ['a'.repeat(5000), `${ref}/x`, `x/${ref}`]) {
      const r = await http(base, 'GET', `/v1/jobs/${bad}`);
      assert.equal([r.status, r.json?.error?.code], [404, 'HERMOD_ERR_JOB_NOT_FOUND'], bad.slice(0, 50));
      assert.ok(r.text.length < 500, 'the reference is not echoed');
    }
    // A malformed escape in a path parameter: the gateway's error shape, the path not quoted back.
    const badUrl = await http(base, 'GET', `/users/%zz${'q'.repeat(3000)}`);
    assert.is(badUrl.status, 400, badUrl.text.slice(0, 200));
    assert.is(badUrl.json.error.code, 'FST_ERR_BAD_URL');
    assert.ok(badUrl.text.length < 500, `${badUrl.text.length} bytes`);
    assert.is((await http(base, 'DELETE', '/v1/jobs/x')).status, 404);
    assert.is((await http(base, 'GET', `/v1/jobs/${ref}?wait=abc`)).status, 400);
    // Whole seconds of any length are capped, as Prefer's wait and rpc.job's (was 400 past 9 digits).
    const long = await http(base, 'GET', `/v1/jobs/${ref}?wait=${'9'.repeat(12)}`);
    assert.equal([long.status, long.json.result], [200, 10], long.text);
    assert.is((await http(base, 'GET', `/v1/jobs/${ref}?timeout=1`)).status, 400);
    // Another gateway on the same bus: its own random key does not open the reference; the same key does.
    const tr = await getTransport(ctx.broker.url, { config: defaultConfig() });
    const stranger = createGateway(tr, { ...withRender(topic), listen: { port: 0 } });
    const twin = createGateway(tr, { ...withRender(topic), listen: { port: 0 }, jobsKey: key });
    try {
      const s = await stranger.start();
      const w = await twin.start();
      assert.is((await http(s.url, 'GET', `/v1/jobs/${ref}`)).status, 404);
      const read = await http(w.url, 'GET', `/v1/jobs/${ref}?wait=5`);
      assert.is(read.status, 200);
      assert.is(read.json.result, 10);
    } finally {
      await stranger.stop(1000);
      await twin.stop(1000);
      await tr.close();
    }
  });

  t('owners: a job started with one key is not found with another; no credentials 401; roles still apply', async (ctx) => {
    const {
      file: keysFile,
      keys: { alice, bob },
    } = keysFileFor([
      { id: 'alice', roles: ['render'], project: 'p1' },
      { id: 'bob', roles: ['render'], project: 'p1' },
    ]);
    ctx.h = await harness(ctx.broker.url, (topic) => ({
      auth: { keysFile },
      routes: [{ topic, method: 'render', roles: ['render'] }],
    }));
    const { base, topic } = ctx.h;
    const as = (k: string) => ({ authorization: `Bearer ${k}` });
    const started = await http(base, 'POST', `/v1/${topic}/render`, { ms: 300 }, { ...ASYNC, ...as(alice) });
    assert.is(started.status, 202);
    const ref = started.json.job;
    const byBob = await http(base, 'GET', `/v1/jobs/${ref}`, undefined, as(bob));
    assert.is(byBob.status, 404);
    assert.is(byBob.json.error.code, 'HERMOD_ERR_JOB_NOT_FOUND');
    assert.is((await http(base, 'DELETE', `/v1/jobs/${ref}`, undefined, as(bob))).status, 404, 'bob cannot cancel it');
    assert.is((await http(base, 'GET', `/v1/jobs/${ref}`)).status, 401);
    const byAlice = await http(base, 'GET', `/v1/jobs/${ref}?wait=5`, undefined, as(alice));
    assert.is(byAlice.status, 200);
    assert.is(byAlice.json.result, 300);
  });

  t('a stop answers the requests waiting for a job at once (200 with the state, 202 with a reference); the job runs on', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, withRender);
    const { base, topic, gateway } = ctx.h;
    const started = await http(base, 'POST', `/v1/${topic}/render`, { ms: 60_000 }, ASYNC);
    const ref = started.json.job;
    const polling = http(base, 'GET', `/v1/jobs/${ref}?wait=30`);
    const starting = http(base, 'POST', `/v1/${topic}/render`, { ms: 60_000 }, { prefer: 'respond-async, wait=30' });
    await until(() => gateway.inFlight === 2, 'both waiting');
    const t0 = Date.now();
    const stopped = await gateway.stop(10_000);
    const stopMs = Date.now() - t0;
    assert.equal(stopped, { aborted: 0 });
    const [poll, start] = await Promise.all([polling, starting]);
    assert.is(poll.status, 200, JSON.stringify(poll.json));
    assert.is(poll.json.state, 'running');
    assert.is(poll.json.done, false);
    assert.is(start.status, 202, JSON.stringify(start.json));
    assert.match(start.headers.get('location') ?? '', /^\/v1\/jobs\//);
    assert.ok(stopMs < 5000, `stopped in ${stopMs} ms, not at the 10 s deadline`);
    assert.is(ctx.h.users.cancelled, 0, 'the jobs run on: the gateway holds no job of its own');
  });

  t('CORS: a browser may send Prefer, read Location, and DELETE a job', async (ctx) => {
    const origin = 'http://app.example';
    ctx.h = await harness(ctx.broker.url, (topic) => ({ ...withRender(topic), cors: { origins: [origin] } }));
    const { base, topic } = ctx.h;
    const pre = await http(base, 'OPTIONS', `/v1/${topic}/render`, undefined, {
      origin,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'prefer,content-type',
    });
    assert.is(pre.status, 204);
    assert.match(pre.headers.get('access-control-allow-headers') ?? '', /(^|,\s*)prefer(\s*,|$)/);
    const started = await http(base, 'POST', `/v1/${topic}/render`, { ms: 10 }, { ...ASYNC, origin });
    assert.is(started.status, 202);
    assert.match(started.headers.get('access-control-expose-headers') ?? '', /location/);
    const del = await http(base, 'OPTIONS', started.headers.get('location')!, undefined, {
      origin,
      'access-control-request-method': 'DELETE',
    });
    assert.is(del.status, 204);
    assert.match(del.headers.get('access-control-allow-methods') ?? '', /DELETE/);
  });

  t('jobs.enabled false: Prefer is ignored and there are no job routes', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, (topic) => ({ ...withRender(topic), jobs: { enabled: false } }));
    const { base, topic } = ctx.h;
    const r = await http(base, 'POST', `/v1/${topic}/get`, { id: 1 }, ASYNC);
    assert.is(r.status, 200);
    assert.is(r.json.result.id, 1);
    assert.is((await http(base, 'GET', '/v1/jobs/abc')).status, 404);
    const doc = await http(base, 'GET', '/openapi.json');
    assert.is(doc.json.paths['/v1/jobs/{ref}'], undefined);
  });

  t("the server's jobs.max: a start beyond it is 503 TooManyJobs with Retry-After", async (ctx) => {
    const topic = `jobs-max-${process.pid}-${Date.now()}`;
    const serverTr = await getTransport(ctx.broker.url, { config: defaultConfig(), overrides: { 'jobs.max': 1 } });
    const server = new RPCServer(serverTr, new Target({ topic, server: 'u1' }), [new Users()]);
    await server.start();
    const tr = await getTransport(ctx.broker.url, { config: defaultConfig() });
    const gw = createGateway(tr, { ...withRender(topic), listen: { port: 0 } });
    try {
      const { url } = await gw.start();
      const first = await http(url, 'POST', `/v1/${topic}/render`, { ms: 60_000 }, ASYNC);
      assert.is(first.status, 202);
      const second = await http(url, 'POST', `/v1/${topic}/render`, { ms: 10 }, ASYNC);
      assert.is(second.status, 503, JSON.stringify(second.json));
      assert.is(second.json.error.code, 'HERMOD_ERR_TOO_MANY_JOBS');
      assert.is(second.headers.get('retry-after'), '5');
      assert.is((await http(url, 'DELETE', `/v1/jobs/${first.json.job}`)).status, 202);
    } finally {
      await gw.stop(1000);
      await server.stop();
      await server.wait(1000);
      await tr.close();
      await serverTr.close();
    }
  });

  t("the server's jobs.maxPendingBytes: a start refused by it is 503 TooManyJobs naming that bound, not jobs.max", async (ctx) => {
    const topic = `jobs-pending-${process.pid}-${Date.now()}`;
    const serverTr = await getTransport(ctx.broker.url, {
      config: defaultConfig(),
      overrides: { 'jobs.maxPendingBytes': 1000 },
    });
    // One job slot: the first job runs, the second waits pending with its request held.
    const server = new RPCServer(serverTr, new Target({ topic, server: 'u1' }), [new Users()], { concurrency: 1 });
    await server.start();
    const tr = await getTransport(ctx.broker.url, { config: defaultConfig() });
    const gw = createGateway(tr, { routes: [{ topic, method: 'render' }], listen: { port: 0 } });
    try {
      const { url } = await gw.start();
      for (const ms of [60_000, 60_000]) {
        const r = await http(url, 'POST', `/v1/${topic}/render`, { ms }, ASYNC);
        assert.is(r.status, 202, JSON.stringify(r.json));
      }
      // 2,000 bytes of arguments behind a pending job: past the 1,000 of jobs.maxPendingBytes.
      const third = await http(url, 'POST', `/v1/${topic}/render`, { ms: 10, pad: 'x'.repeat(2000) }, ASYNC);
      assert.is(third.status, 503, JSON.stringify(third.json));
      assert.is(third.json.error.code, 'HERMOD_ERR_TOO_MANY_JOBS');
      assert.is(third.headers.get('retry-after'), '5');
      assert.match(third.json.error.message, /jobs\.maxPendingBytes/);
      assert.not.match(third.json.error.message, /jobs\.max\b(?!P)/);
      for (const secret of [topic, 'u1']) assert.not.ok(third.text.includes(secret), `${secret} in ${third.text}`);
    } finally {
      await gw.stop(1000);
      await server.stop({ jobs: 'abort' });
      await server.wait(1000);
      await tr.close();
      await serverTr.close();
    }
  });

  /**
   * A server whose job polls the test can slow down or hold (as a loaded server, one sending a
   * large result, or a SIGSTOPped one answers them), and a gateway with `pollTimeout`.
   */
  const slowPolls = async (url: string, pollTimeout: number) => {
    const topic = `jobs-slow-${process.pid}-${Date.now()}`;
    const serverTr = await getTransport(url, { config: defaultConfig() });
    const server = new RPCServer(serverTr, new Target({ topic, server: 'u1' }), [new Users()]);
    await server.start();
    const tr = await getTransport(url, { config: defaultConfig(), overrides: { 'jobs.pollTimeout': pollTimeout } });
    const gw = createGateway(tr, { routes: [{ topic, method: 'render' }], listen: { port: 0 } });
    const { url: base } = await gw.start();
    // The server's own jobs endpoint, the one its dispatcher calls for the hermod namespace.
    const endpoint = (server as unknown as { jobs: { endpoint: Record<string, (...a: unknown[]) => Promise<unknown>> } }).jobs.endpoint;
    const held = new Set<() => void>();
    return {
      base,
      topic,
      /** Each later `method` poll is answered only after `ms` (Infinity: when released). */
      delay(method: 'job_status' | 'job_result', ms: number) {
        const original = endpoint[method]!.bind(endpoint);
        endpoint[method] = async (...a: unknown[]) => {
          await (ms === Infinity ? new Promise<void>((r) => held.add(r)) : sleep(ms));
          return original(...a);
        };
      },
      /** Once a job_result was answered, job_status polls go unanswered (as a stopping server that exits once its jobs' outcomes were read). */
      silentAfterResult() {
        const status = endpoint.job_status!.bind(endpoint);
        const result = endpoint.job_result!.bind(endpoint);
        let read = false;
        endpoint.job_result = async (...a: unknown[]) => {
          const r = await result(...a);
          read = true;
          return r;
        };
        endpoint.job_status = async (...a: unknown[]) => {
          if (read) await new Promise<void>((r) => held.add(r));
          return status(...a);
        };
      },
      async close() {
        for (const release of held) release();
        await gw.stop(1000);
        await server.stop({ jobs: 'abort' });
        await server.wait(1000);
        await tr.close();
        await serverTr.close();
      },
    };
  };
  const secrets = (topic: string) => [topic, 'u1', /[0-9a-f]{32}/] as const;
  const assertNoSecrets = (topic: string, text: string) => {
    for (const secret of secrets(topic))
      assert.not.ok(typeof secret === 'string' ? text.includes(secret) : secret.test(text), `${secret} in ${text}`);
  };

  t('a poll of an ended job reads its result with a poll timeout of its own (REST and rpc.job)', async (ctx) => {
    const s = await slowPolls(ctx.broker.url, 2500);
    try {
      const started = await http(s.base, 'POST', `/v1/${s.topic}/render`, { ms: 10 }, ASYNC);
      const ref = started.json.job;
      assert.is((await http(s.base, 'GET', `/v1/jobs/${ref}?wait=5`)).json.state, 'succeeded');
      // Each poll takes 1.5 s: a status and a result fit in one 2.5 s poll timeout each, not
      // both in one (they shared it, and the poll answered 504 with the server's own message).
      s.delay('job_status', 1500);
      s.delay('job_result', 1500);
      const polled = await http(s.base, 'GET', `/v1/jobs/${ref}`);
      assertNoSecrets(s.topic, JSON.stringify(polled.json.error ?? null));
      assert.is(polled.status, 200, polled.text);
      assert.equal([polled.json.state, polled.json.result], ['succeeded', 10]);
      const rpc = await http(s.base, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: 'rpc.job', params: { job: ref }, id: 1 });
      assertNoSecrets(s.topic, JSON.stringify(rpc.json.error ?? null));
      assert.equal([rpc.json.result?.state, rpc.json.result?.result], ['succeeded', 10], rpc.text);
    } finally {
      await s.close();
    }
  });

  t(
    '?wait=N answers with the final status its wait read: no poll after the result, which a stopping server may no longer answer',
    async (ctx) => {
      const s = await slowPolls(ctx.broker.url, 1500);
      try {
        const started = await http(s.base, 'POST', `/v1/${s.topic}/render`, { ms: 300 }, ASYNC);
        // Before, the gateway polled job_status once more after reading the result: a server that
        // had exited meanwhile (its last job's outcome read) made the answer a 503 after pollTimeout.
        s.silentAfterResult();
        const polled = await http(s.base, 'GET', `/v1/jobs/${started.json.job}?wait=10`);
        assert.is(polled.status, 200, polled.text);
        assert.equal([polled.json.state, polled.json.result], ['succeeded', 300]);
      } finally {
        await s.close();
      }
    },
  );

  t('?wait=N on a job whose server does not answer is answered about N s later (REST and rpc.job), not N + pollTimeout', async (ctx) => {
    // pollTimeout 6 s: the old answer came after 1 + 6 s; now 1 s + one 1 s poll.
    const s = await slowPolls(ctx.broker.url, 6000);
    try {
      const started = await http(s.base, 'POST', `/v1/${s.topic}/render`, { ms: 60_000 }, ASYNC);
      const ref = started.json.job;
      s.delay('job_status', Infinity);
      s.delay('job_result', Infinity);
      const t0 = Date.now();
      const polled = await http(s.base, 'GET', `/v1/jobs/${ref}?wait=1`);
      const restMs = Date.now() - t0;
      assert.is(polled.status, 503, polled.text);
      assert.is(polled.json.error.code, 'HERMOD_ERR_SERVER_UNAVAILABLE');
      assertNoSecrets(s.topic, polled.text);
      const t1 = Date.now();
      const rpc = await http(s.base, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: 'rpc.job', params: { job: ref, wait: 1 }, id: 1 });
      const rpcMs = Date.now() - t1;
      assert.is(rpc.json.error?.data?.code, 'HERMOD_ERR_SERVER_UNAVAILABLE', rpc.text);
      assertNoSecrets(s.topic, rpc.text);
      console.log(`    ?wait=1 on a silent server: 503 after ${restMs} ms (REST), ${rpcMs} ms (rpc.job)`);
      assert.ok(restMs >= 900 && restMs < 4000, `REST answered after ${restMs} ms`);
      assert.ok(rpcMs >= 900 && rpcMs < 4000, `rpc.job answered after ${rpcMs} ms`);
    } finally {
      await s.close();
    }
  });

  t(
    "a call whose timeout ends before the server's deferAfter: the job its server makes after is cancelled (no one holds its token)",
    async (ctx) => {
      // The server learns its caller's deadline from the request's ttl, which the memory driver
      // does not carry (AMQP 1.0 and RabbitMQ do).
      if (ctx.broker.url.startsWith('memory:')) return;
      ctx.h = await harness(ctx.broker.url, withRender);
      const { base, topic, users } = ctx.h;
      const t0 = Date.now();
      // render is long: the server makes it a job at jobs.deferAfter (1 s), after this call's 400 ms.
      const r = await http(base, 'POST', `/v1/${topic}/render`, { ms: 60_000 }, { 'x-hermod-timeout': '400' });
      assert.is(r.status, 504, r.text);
      await until(() => users.cancelled === 1, 'the orphan job cancelled', 10_000);
      console.log(`    a 400 ms call of a job deferred at 1 s: its job cancelled ${Date.now() - t0} ms after the call`);
    },
  );

  return t;
}
