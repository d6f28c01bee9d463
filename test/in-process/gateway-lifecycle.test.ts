import net from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createGateway } from '../../src/gateway/index.js';
import { ClosedError, defaultConfig, getTransport, RPCServer, Target } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { rejects, until } from '../support/assert.js';
import { harness, harnessSuite, http, IN_PROCESS, Users, userRoutes } from './gateway-cases.js';

// /healthz, /readyz and stop(deadline): running calls finish, new requests are refused, and
// what outlives the deadline is cut and counted.

for (const [name, broker] of IN_PROCESS) {
  const t = harnessSuite(`gateway lifecycle over ${name}`, broker);

  t('healthz and readyz answer 200 while serving', async (ctx) => {
    ctx.h = await harness(ctx.broker.url);
    await http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/get`, { id: 1 });
    const health = await http(ctx.h.base, 'GET', '/healthz');
    assert.equal([health.status, health.json], [200, { status: 'ok' }]);
    const ready = await http(ctx.h.base, 'GET', '/readyz');
    assert.is(ready.status, 200);
    assert.is(ready.json.status, 'ready');
  });

  t(
    'a long method that becomes a job is followed within the request timeout: 504 at the timeout, the job cancelled, the slot freed',
    async (ctx) => {
      // The gateway followed such a job with no bound (jobs.jobTimeout 0): a request with
      // ?timeout=2000 answered after 151 s, and abandoned requests held every in-flight slot.
      ctx.h = await harness(ctx.broker.url, (topic) => ({ routes: [...userRoutes(topic), { topic, method: 'render' }] }));
      const quick = await http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/render`, { ms: 1300 });
      assert.equal([quick.status, quick.json], [200, { result: 1300 }], 'a job that ends in time answers its result');
      const t0 = Date.now();
      const late = await http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/render?timeout=1500`, { ms: 60_000 });
      const took = Date.now() - t0;
      assert.is(late.status, 504, JSON.stringify(late.json));
      assert.is(late.json.error.code, 'HERMOD_ERR_TIMEOUT');
      assert.ok(took >= 1400 && took < 5000, `answered after ${took} ms with a 1500 ms timeout`);
      await until(() => ctx.h.users.cancelled === 1, 'the job given up on is cancelled');
      assert.is(ctx.h.gateway.inFlight, 0);
    },
  );

  t('stop(deadline): the running call finishes, new connections are refused, readyz says 503 meanwhile', async (ctx) => {
    ctx.h = await harness(ctx.broker.url);
    const running = http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/sleep`, { ms: 300 });
    // The call running at the gateway, not a fixed wait: on a loaded machine 80 ms was not always enough.
    await until(() => ctx.h.gateway.inFlight === 1, 'the call in flight at the gateway');
    const t0 = Date.now();
    const stopping = ctx.h.gateway.stop(3000);
    const during = await ctx.h.gateway.app.inject({ method: 'GET', url: '/readyz' });
    assert.is(during.statusCode, 503);
    let refused = false;
    await http(ctx.h.base, 'GET', '/healthz').catch(() => {
      refused = true;
    });
    assert.ok(refused, 'no new connections while stopping');
    const r = await running;
    assert.is(r.status, 200);
    assert.equal(r.json, { result: 300 });
    // The response ends its keep-alive connection, so the stop ends with the call instead of
    // waiting for the client to hang up or for the deadline.
    assert.is(r.headers.get('connection'), 'close');
    assert.equal(await stopping, { aborted: 0 });
    assert.ok(Date.now() - t0 < 2500, `stop took ${Date.now() - t0} ms for a call of 300 ms (deadline 3000)`);
  });

  t(
    "stop: a request that finishes arriving on an open connection meanwhile gets the gateway's 503 (Retry-After, code, request id)",
    async (ctx) => {
      ctx.h = await harness(ctx.broker.url);
      const { port } = ctx.h.gateway.address!;
      const running = http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/sleep`, { ms: 600 });
      await until(() => ctx.h.gateway.inFlight === 1, 'the call in flight at the gateway');
      const body = JSON.stringify({ id: 1 });
      const request = `POST /v1/${ctx.h.topic}/get HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
      const late = net.connect(port, '127.0.0.1');
      let got = '';
      late.on('data', (d) => (got += d));
      await new Promise((r) => late.once('connect', r));
      // Its headers still arriving when the stop begins.
      late.write(request.slice(0, 20));
      await until(() => ctx.h.gateway.connections.open >= 2, 'both connections open');
      const stopping = ctx.h.gateway.stop(3000);
      late.write(request.slice(20));
      await until(() => /\r\n\r\n\{.*\}$/s.test(got), `the late request answered (${got})`);
      late.destroy();
      // Before: fastify's {"error":"Service Unavailable",…}, with none of these.
      assert.match(got, /^HTTP\/1\.1 503 /);
      assert.match(got, /\r\nretry-after: 1\r\n/i);
      assert.match(got, /\r\nx-request-id: \S+\r\n/i);
      assert.match(got, /"code":"HERMOD_ERR_UNAVAILABLE"/);
      assert.is((await running).status, 200);
      assert.equal(await stopping, { aborted: 0 });
    },
  );

  t('stop(deadline): a call outliving the deadline is answered 504 CallCut and counted, in REST and in a JSON-RPC batch', async (ctx) => {
    ctx.h = await harness(ctx.broker.url);
    const running = http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/sleep`, { ms: 1500 });
    // The REST call in flight first: a batch read before it could make the count 2 on its own.
    await until(() => ctx.h.gateway.inFlight === 1, 'the REST call in flight at the gateway');
    const batch = http(ctx.h.base, 'POST', '/jsonrpc', [
      { jsonrpc: '2.0', id: 1, method: `${ctx.h.topic}.get`, params: { id: 1 } },
      { jsonrpc: '2.0', id: 2, method: `${ctx.h.topic}.sleep`, params: { ms: 1500 } },
    ]);
    // The calls running at the gateway, not a fixed wait: on a loaded machine 80 ms was not always enough.
    await until(() => ctx.h.gateway.inFlight === 2, 'the two sleeps in flight at the gateway');
    const t0 = Date.now();
    assert.equal(await ctx.h.gateway.stop(200), { aborted: 2 });
    assert.ok(Date.now() - t0 < 800, `stop took ${Date.now() - t0} ms`);
    // An answer, not a connection cut: the client learns the gateway went away mid-call.
    const r = await running;
    // 504 without Retry-After, unlike "the gateway is stopping" (never sent, safe to retry):
    // a client or proxy retrying 503s must not resend a call that may have run.
    assert.is(r.status, 504, JSON.stringify(r.json));
    assert.is(r.json.error.code, 'HERMOD_ERR_CALL_CUT');
    assert.is(r.headers.get('retry-after'), null);
    assert.match(r.json.error.message, /stopped before the call finished \(its shutdown deadline passed\); the method may have run/);
    assert.is(r.headers.get('connection'), 'close');
    const b = await batch;
    assert.is(b.status, 200);
    assert.is(b.json[0].result.id, 1);
    assert.is(b.json[1].id, 2);
    assert.match(b.json[1].error.message, /stopped before the call finished/);
    assert.is(b.json[1].error.code, -32000);
  });

  t('abort() during a stop ends its wait now: the running call is answered 504 CallCut, not cut', async (ctx) => {
    ctx.h = await harness(ctx.broker.url);
    const running = http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/sleep`, { ms: 5000 });
    await until(() => ctx.h.gateway.inFlight === 1, 'the call in flight at the gateway');
    const t0 = Date.now();
    const stopping = ctx.h.gateway.stop(30_000);
    // hermod-gateway's second signal: before, its connections were closed with no answer.
    assert.equal(await ctx.h.gateway.abort(), { aborted: 1 });
    assert.equal(await stopping, { aborted: 1 });
    assert.ok(Date.now() - t0 < 3000, `the abort took ${Date.now() - t0} ms`);
    const r = await running;
    assert.is(r.status, 504, JSON.stringify(r.json));
    assert.is(r.json.error.code, 'HERMOD_ERR_CALL_CUT');
    // Its text says why: no deadline passed here.
    assert.match(r.json.error.message, /told to stop at once/);
  });
  t.run();
}

const r = suite('gateway over the embedded router: transport down');
r('a lost router turns calls into prompt 503s with Retry-After, and readyz into 503', async () => {
  const router = new Router({ port: 0 });
  const port = await router.start();
  const url = `amqp://127.0.0.1:${port}/`;
  const topic = `down-${process.pid}`;
  const st = await getTransport(url, { config: defaultConfig() });
  const server = new RPCServer(st, new Target({ topic, server: 'u1' }), [new Users()]);
  await server.start();
  const tr = await getTransport(url, { config: defaultConfig() });
  const gw = createGateway(tr, { listen: { port: 0 }, routes: userRoutes(topic) });
  try {
    const { url: base } = await gw.start();
    assert.is((await http(base, 'POST', `/v1/${topic}/get`, { id: 1 })).status, 200);
    await router.stop();
    await until(() => tr.state.state !== 'connected', 'the gateway transport to notice');
    const t0 = Date.now();
    const down = await http(base, 'POST', `/v1/${topic}/get`, { id: 1 });
    assert.is(down.status, 503);
    assert.is(down.json.error.code, 'HERMOD_ERR_UNAVAILABLE');
    assert.is(down.headers.get('retry-after'), '1');
    assert.ok(Date.now() - t0 < 2000, `answered after ${Date.now() - t0} ms: at once, not after the call timeout`);
    const j = await http(base, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: 'getUser', params: { id: 1 }, id: 7 });
    assert.is(j.json.error.code, -32002);
    const ready = await http(base, 'GET', '/readyz');
    assert.is(ready.status, 503);
    assert.match(ready.json.transport, /disconnected|reconnecting/);
  } finally {
    await gw.stop(500);
    await server.stop();
    await server.wait(500);
    await tr.close();
    await st.close();
  }
});
r('readyz is 503 until the transport first connects (it said ready before any connection); the gateway connects at start', async () => {
  // A port nothing listens on yet; the router comes up there later.
  const probe = new Router({ port: 0 });
  const port = await probe.start();
  await probe.stop();
  const tr = await getTransport(`amqp://127.0.0.1:${port}/`, {
    config: defaultConfig(),
    overrides: { 'amqp1.retryInterval': 50, 'amqp1.intervalMax': 200 },
  });
  const gw = createGateway(tr, { listen: { port: 0 }, routes: userRoutes('nobody') });
  let router: Router | undefined;
  try {
    const { url: base } = await gw.start();
    const before = await http(base, 'GET', '/readyz');
    assert.is(before.status, 503, JSON.stringify(before.json));
    assert.match(before.json.transport, /idle|reconnecting/);
    router = new Router({ port });
    await router.start();
    // No request in between: the gateway opened the connection itself.
    await until(() => tr.state.state === 'connected', 'the connection the gateway opened', 10_000);
    assert.is((await http(base, 'GET', '/readyz')).status, 200);
  } finally {
    await gw.stop(500);
    await tr.close();
    await router?.stop();
  }
});
r.run();

const early = suite('gateway: stop while starting');
early('stop() during start() leaves nothing listening and start() rejects with ClosedError', async () => {
  const tr = await getTransport('memory://', { config: defaultConfig() });
  const gw = createGateway(tr, { listen: { port: 0 }, routes: [] });
  try {
    const starting = gw.start();
    starting.catch(() => undefined);
    assert.equal(await gw.stop(500), { aborted: 0 });
    // Resolved stop means the port is closed, not closing later.
    assert.is(gw.app.server.listening, false);
    await rejects(starting, ClosedError.CODE, /stopped while starting/);
    await rejects(() => gw.start(), ClosedError.CODE, /the gateway was stopped/);
  } finally {
    await tr.close();
  }
});
early.run();
