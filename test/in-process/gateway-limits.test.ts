import net from 'node:net';
import * as assert from 'uvu/assert';
import { harness, harnessSuite, http, IN_PROCESS } from './gateway-cases.js';

// CORS (off by default), per-client rate limits, the body limit, the receive timeout, the call
// timeout cap and the in-flight bound — over real HTTP, on memory and through the embedded router.

for (const [name, broker] of IN_PROCESS) {
  const t = harnessSuite(`gateway limits over ${name}`, broker);

  t('CORS is off by default: no Access-Control headers, preflight not answered', async (ctx) => {
    ctx.h = await harness(ctx.broker.url);
    const r = await http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/get`, { id: 1 }, { origin: 'http://evil.example' });
    assert.is(r.status, 200);
    assert.is(r.headers.get('access-control-allow-origin'), null);
    const pre = await http(ctx.h.base, 'OPTIONS', `/v1/${ctx.h.topic}/get`, undefined, {
      origin: 'http://evil.example',
      'access-control-request-method': 'POST',
    });
    assert.is(pre.status, 404);
    assert.is(pre.headers.get('access-control-allow-origin'), null);
  });

  t('CORS when configured: listed origins only; the preflight needs no credentials', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, { cors: { origins: ['http://app.example'] }, authenticate: () => null });
    const pre = await http(ctx.h.base, 'OPTIONS', `/v1/${ctx.h.topic}/get`, undefined, {
      origin: 'http://app.example',
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization,content-type',
    });
    assert.is(pre.status, 204);
    assert.is(pre.headers.get('access-control-allow-origin'), 'http://app.example');
    assert.match(pre.headers.get('access-control-allow-headers') ?? '', /authorization/);
    const other = await http(ctx.h.base, 'OPTIONS', `/v1/${ctx.h.topic}/get`, undefined, {
      origin: 'http://evil.example',
      'access-control-request-method': 'POST',
    });
    assert.is(other.headers.get('access-control-allow-origin'), null);
  });

  t('rate limit per client: 429 with Retry-After past the budget; another client and /healthz unaffected', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, {
      rateLimit: { max: 3, windowMs: 60_000 },
      auth: { allowAnonymous: true },
      authenticate: (req) => (req.headers['x-test-user'] ? { user: String(req.headers['x-test-user']), roles: [] } : null),
    });
    const call = (user: string) => http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/get`, { id: 1 }, { 'x-test-user': user });
    for (let i = 0; i < 3; i++) assert.is((await call('a')).status, 200);
    const limited = await call('a');
    assert.is(limited.status, 429);
    assert.is(limited.json.error.code, 'HERMOD_ERR_RATE_LIMITED');
    assert.ok(Number(limited.headers.get('retry-after')) > 0);
    assert.is(ctx.h.users.seen.length, 3, 'the limited request was not sent');
    assert.is((await call('b')).status, 200, 'b has its own budget');
    for (let i = 0; i < 5; i++) assert.is((await http(ctx.h.base, 'GET', '/healthz')).status, 200);
  });

  t('a deeply nested body → 400 on REST and an Invalid Request on JSON-RPC, refused before parsing; nothing sent', async (ctx) => {
    ctx.h = await harness(ctx.broker.url);
    // 500,000 levels in 1 MB: JSON.parse alone would hold the event loop for a second or more.
    const depth = 500_000;
    const deep = `{"id":1,"pad":${'['.repeat(depth)}${']'.repeat(depth)}}`;
    const t0 = performance.now();
    const r = await http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/get`, deep);
    assert.is(r.status, 400, r.text);
    assert.is(r.json.error.code, 'HERMOD_ERR_NESTING_TOO_DEEP');
    assert.match(r.json.error.message, /deeper than 128 levels/);
    const j = await http(ctx.h.base, 'POST', '/jsonrpc', `{"jsonrpc":"2.0","method":"getUser","params":${deep},"id":1}`);
    assert.is(j.status, 200);
    assert.is(j.json.id, null);
    assert.is(j.json.error.code, -32600);
    assert.match(j.json.error.message, /deeper than 128 levels/);
    const ms = performance.now() - t0;
    console.log(`    two 1 MB bodies of ${depth} levels refused in ${ms.toFixed(0)} ms`);
    assert.is(ctx.h.users.seen.length, 0, 'nothing sent');
    // Prototype keys stay refused by fastify's own parser; sane bodies pass, nested ones too.
    const proto = await http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/get`, '{"id":1,"__proto__":{"x":1}}');
    assert.is(proto.status, 400, proto.text);
    assert.is((await http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/get`, { id: 1 })).status, 200);
    const nested = await http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/ctx`, { pad: [[[{ a: [[1]] }]]] });
    assert.is(nested.status, 200, nested.text);
  });

  t('body limit → 413 on REST and JSON-RPC; nothing sent', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, { bodyLimit: 1024 });
    const big = { id: 1, pad: 'x'.repeat(2000) };
    const r = await http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/get`, big);
    assert.is(r.status, 413);
    assert.is(r.json.error.code, 'FST_ERR_CTP_BODY_TOO_LARGE');
    const j = await http(ctx.h.base, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: 'getUser', params: big, id: 1 });
    assert.is(j.status, 413);
    assert.is(j.json.id, null);
    assert.is(j.json.error.code, -32600);
    assert.is(ctx.h.users.seen.length, 0);
  });

  t('in-flight bound: calls beyond maxInFlight get 503 with Retry-After at once', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, { maxInFlight: 2 });
    const slow = [1, 2].map(() => http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/sleep`, { ms: 400 }));
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    const over = await http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/get`, { id: 1 });
    assert.is(over.status, 503);
    assert.is(over.json.error.code, 'HERMOD_ERR_TOO_MANY_IN_FLIGHT');
    assert.is(over.headers.get('retry-after'), '1');
    assert.ok(Date.now() - t0 < 200, 'refused at once');
    for (const r of await Promise.all(slow)) assert.is(r.status, 200);
    assert.is((await http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/get`, { id: 1 })).status, 200, 'slots come back');
  });

  t('timeouts: a call timeout above maxCallTimeout is refused; a client too slow to send its body gets 408', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, { maxCallTimeout: 5000, callTimeout: 2000, requestTimeout: 300 });
    const r = await http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/get?timeout=6000`, { id: 1 });
    assert.is(r.status, 400);
    assert.match(r.json.error.message, /timeout must be whole milliseconds from 1 to 5000/);
    const { port } = ctx.h.gateway.address!;
    const t0 = Date.now();
    let guard: NodeJS.Timeout | undefined;
    const answer = await new Promise<string>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.write(`POST /v1/${ctx.h.topic}/get HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"id":`);
      });
      let data = '';
      s.on('data', (d) => {
        data += d;
      });
      s.on('close', () => resolve(data));
      s.on('error', reject);
      guard = setTimeout(() => s.destroy(new Error('no answer within 3 s')), 3000);
    }).finally(() => clearTimeout(guard));
    assert.match(answer, /^HTTP\/1\.1 408/);
    assert.ok(Date.now() - t0 < 1500, `408 after ${Date.now() - t0} ms`);
  });
  t.run();
}
