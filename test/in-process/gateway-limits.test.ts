import { spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import net from 'node:net';
import * as assert from 'uvu/assert';
import { type ConnectionRefusedEvent, resolveGatewayConfig } from '../../src/gateway/index.js';
import { sleep, until } from '../support/assert.js';
import {
  halfSentPost,
  harness,
  harnessSuite,
  http,
  IN_PROCESS,
  type Json,
  type KeepAlive,
  keepAlive,
  keysFileFor,
} from './gateway-cases.js';

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
    // A preflight keeps its keep-alive connection for the call it announces. Before: every one
    // answered `Connection: close` and the call paid a new connection.
    const conn = await keepAlive(ctx.h.gateway.address!.port);
    try {
      const preflight = await conn.send(
        `OPTIONS /v1/${ctx.h.topic}/get HTTP/1.1\r\nHost: x\r\nOrigin: http://app.example\r\nAccess-Control-Request-Method: POST\r\n\r\n`,
      );
      assert.match(preflight, /^HTTP\/1\.1 204 /);
      assert.not.match(preflight, /\r\nconnection: close\r\n/i);
      assert.match(await conn.get('/healthz'), /^HTTP\/1\.1 200 /, 'the same connection serves the next request');
      // A request answered before its body was read still closes (in-process/gateway-auth).
      const refused = await conn.send(
        `POST /v1/${ctx.h.topic}/get HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"id":`,
      );
      assert.match(refused, /^HTTP\/1\.1 401 /);
      assert.match(refused, /\r\nconnection: close\r\n/i);
      await conn.closed;
    } finally {
      conn.socket.destroy();
    }
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

  t('rate limit and JSON-RPC batches: the calls of batches count too (a batch was one request of up to maxBatch calls)', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, { rateLimit: { max: 10, windowMs: 60_000 } });
    const batch = (n: number, from: number) =>
      http(
        ctx.h.base,
        'POST',
        '/jsonrpc',
        Array.from({ length: n }, (_, i) => ({ jsonrpc: '2.0', id: from + i, method: `${ctx.h.topic}.get`, params: { id: 1 } })),
      );
    const first = await batch(8, 0);
    assert.is(first.status, 200);
    assert.is(first.json.length, 8);
    // 7 extra calls counted so far; 6 more would make 13 past 10.
    const over = await batch(7, 100);
    assert.is(over.status, 429, JSON.stringify(over.json));
    assert.is(over.json.error.data.code, 'HERMOD_ERR_RATE_LIMITED');
    assert.is(over.json.error.code, -32002);
    assert.ok(Number(over.headers.get('retry-after')) > 0);
    assert.is(ctx.h.users.seen.length, 8, 'nothing of the refused batch was sent');
  });

  t('rate limit and bad credentials: refusals count per address, past max it is 429 before any key is checked', async (ctx) => {
    let checked = 0;
    ctx.h = await harness(ctx.broker.url, {
      rateLimit: { max: 3, windowMs: 2000 },
      authenticate: (req) => {
        checked++;
        return req.headers['x-api-key'] === 'good' ? { user: 'u', roles: [] } : null;
      },
    });
    const get = (key?: string) => http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/get`, { id: 1 }, key ? { 'x-api-key': key } : {});
    // Before: 401s were never counted (the limit's hook runs after authentication), so keys
    // could be tried as fast as the gateway answered.
    for (const key of ['guess-1', 'guess-2', undefined]) assert.is((await get(key)).status, 401);
    const limited = await get('guess-4');
    assert.is(limited.status, 429, JSON.stringify(limited.json));
    assert.is(limited.json.error.code, 'HERMOD_ERR_RATE_LIMITED');
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
    assert.is(checked, 3, 'the fourth key was not even checked');
    assert.is((await get('good')).status, 429, 'the address is held for the rest of the window');
    assert.is((await http(ctx.h.base, 'GET', '/healthz')).status, 200, 'public routes stay open');
    await sleep(2100);
    assert.is((await get('good')).status, 200);
  });

  t('trustProxy: behind a proxy each forwarded client address has its own budget of failed credentials', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, {
      rateLimit: { max: 2, windowMs: 60_000 },
      trustProxy: 'loopback',
      authenticate: (req) => (req.headers['x-api-key'] === 'good' ? { user: 'u', roles: [] } : null),
    });
    const get = (from: string, key: string) =>
      http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/get`, { id: 1 }, { 'x-api-key': key, 'x-forwarded-for': from });
    for (let i = 0; i < 2; i++) assert.is((await get('203.0.113.5', 'guess')).status, 401);
    assert.is((await get('203.0.113.5', 'guess')).status, 429);
    assert.is((await get('198.51.100.7', 'good')).status, 200, 'another client behind the same proxy goes on');
    assert.throws(() => resolveGatewayConfig({ trustProxy: 0 }), /trustProxy/);
  });

  t('failed credentials: an IPv6 client counts by its /64; a flood from 10 000 addresses locks out no other client', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, {
      rateLimit: { max: 2, windowMs: 60_000 },
      trustProxy: 'loopback',
      // Each good key its own user: the rate limit proper counts per identity.
      authenticate: (req) => {
        const key = String(req.headers['x-api-key']);
        return key.startsWith('good') ? { user: key, roles: [] } : null;
      },
    });
    const get = (from: string, key: string) =>
      ctx.h.gateway.app.inject({
        method: 'POST',
        url: `/v1/${ctx.h.topic}/get`,
        payload: { id: 1 },
        headers: { 'x-api-key': key, 'x-forwarded-for': from },
      });
    // One subscriber's /64 is one client: a new address in it does not get a fresh budget.
    assert.is((await get('2001:db8:1:2::a', 'guess')).statusCode, 401);
    assert.is((await get('2001:db8:1:2:ffff:1:2:3', 'guess')).statusCode, 401);
    assert.is((await get('2001:db8:1:2::c', 'good-1')).statusCode, 429);
    assert.is((await get('2001:db8:1:3::1', 'good-2')).statusCode, 200, 'the next /64 is another client');
    // `::` filling zero groups inside the first four: 2001::1:2:3:4:5 is in 2001:0:0:1::/64.
    assert.is((await get('2001::1:2:3:4:5', 'guess')).statusCode, 401);
    assert.is((await get('2001::1:2:3:4:6', 'guess')).statusCode, 401);
    assert.is((await get('2001:0:0:1::7', 'good-4')).statusCode, 429);
    assert.is((await get('2001::2:9:9:9:9', 'good-5')).statusCode, 200, 'another /64');
    // Wrong keys from 10 000 addresses: before, every address past them shared one count,
    // used up at once, and a new client with a valid key got 429 for the rest of the window.
    for (let i = 0; i < 10_000; i++) {
      const r = await get(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 'guess');
      if (r.statusCode !== 401) assert.unreachable(`${r.statusCode} for flood request ${i}`);
    }
    for (const from of ['192.0.2.9', '198.51.100.1', '2001:db8:9::1']) {
      // The body too: a 503 and a 429 here in loaded runs could not be told apart by the status alone.
      const r = await get(from, `good-${from}`);
      assert.is(r.statusCode, 200, `${from}: ${r.body}`);
    }
    // A tracked address is still held.
    assert.is((await get('10.0.0.1', 'guess')).statusCode, 401);
    assert.is((await get('10.0.0.1', 'good-3')).statusCode, 429);
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
    // The driver's message nests the arguments 1 (RabbitMQ) or 2 levels deep, within the same 128.
    assert.match(r.json.error.message, /deeper than 12[67] levels \(maxJsonDepth 128, less [12] for the message around the arguments\)/);
    const j = await http(ctx.h.base, 'POST', '/jsonrpc', `{"jsonrpc":"2.0","method":"getUser","params":${deep},"id":1}`);
    // Refused as a whole, as the error table says: 400, with the code in data (was 200, no data).
    assert.is(j.status, 400);
    assert.is(j.json.id, null);
    assert.is(j.json.error.code, -32600);
    assert.is(j.json.error.data.code, 'HERMOD_ERR_NESTING_TOO_DEEP');
    assert.match(
      j.json.error.message,
      /deeper than 12[78] levels \(maxJsonDepth 128, less [12] for the message around the arguments, plus 1 for the request object\)/,
    );
    const ms = performance.now() - t0;
    console.log(`    two 1 MB bodies of ${depth} levels refused in ${ms.toFixed(0)} ms`);
    assert.is(ctx.h.users.seen.length, 0, 'nothing sent');
    // Prototype keys are refused as arguments, naming the key, on every face (fastify's parser
    // said "Body is not valid JSON"; JSON-RPC sent them on to the server; an alias's query
    // dropped `__proto__` silently); sane bodies pass, nested ones too.
    const ctxRoute = `/v1/${ctx.h.topic}/ctx`;
    for (const [what, r] of [
      ['REST body', await http(ctx.h.base, 'POST', ctxRoute, '{"id":1,"__proto__":{"x":1}}')],
      ['REST nested', await http(ctx.h.base, 'POST', ctxRoute, '{"a":[{"constructor":{"prototype":{"x":1}}}]}')],
      ['alias query', await http(ctx.h.base, 'GET', '/users/5?__proto__=1')],
    ] as const) {
      assert.is(r.status, 400, `${what}: ${r.text}`);
      assert.is(r.json.error.code, 'HERMOD_ERR_INVALID_ARGUMENT', what);
      assert.match(r.json.error.message, /refused: args(\.a\[0\]\.constructor\.prototype|\.__proto__) would set a prototype/, what);
    }
    const pj = await http(ctx.h.base, 'POST', '/jsonrpc', '{"jsonrpc":"2.0","method":"getUser","params":{"id":1,"__proto__":{}},"id":7}');
    assert.is(pj.json.error.code, -32602, pj.text);
    assert.is(pj.json.id, 7);
    assert.is(ctx.h.users.seen.length, 0, 'none of them sent');
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

  t('body limit: a multi-MB body over it gets its 413 every time; the gateway reads and drops the rest, within bounds', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, { bodyLimit: 64 * 1024 });
    const { base, topic, gateway } = ctx.h;
    const { port } = gateway.address!;
    // The clients run in a process of their own, as a real client does: in this one, the
    // gateway could not close the socket while the client was writing to it.
    const clients = `
      const http = require('node:http');
      const [base, port, topic] = process.argv.slice(1);
      const body = Buffer.alloc(4 * 1024 * 1024, 0x20);
      const seen = {};
      const count = (k) => { seen[k] = (seen[k] ?? 0) + 1; };
      (async () => {
        for (let i = 0; i < 20; i++) {
          for (const path of ['/v1/' + topic + '/get', '/jsonrpc']) {
            try {
              const r = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
              await r.text();
              count('fetch ' + r.status);
            } catch (err) {
              count('fetch ' + (err.cause?.code ?? err.message));
            }
          }
          count(await new Promise((resolve) => {
            const req = http.request({ host: '127.0.0.1', port: Number(port), method: 'POST', path: '/v1/' + topic + '/get', agent: false,
              headers: { 'content-type': 'application/json' } }, (res) => {
              res.resume();
              res.on('end', () => resolve('node:http ' + res.statusCode));
            });
            req.on('error', (err) => resolve('node:http ' + err.code));
            req.end(body);
          }));
        }
        process.stdout.write(JSON.stringify(seen));
      })();
    `;
    const child = spawn(process.execPath, ['-e', clients, base, String(port), topic], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
    });
    await new Promise((r) => child.once('close', r));
    // Before: Node closed the socket as the 413 was written, the unread body made the kernel
    // reset it, and a client still sending got EPIPE (fetch 14 of 20, node:http 5 of 20).
    const seen = JSON.parse(out);
    assert.equal(seen, { 'fetch 413': 40, 'node:http 413': 20 });
    assert.is(ctx.h.users.seen.length, 0);
    await until(() => gateway.connections.open === 0, 'every connection closed');
    // A client that keeps sending (and does not close when the gateway does) is cut all the
    // same: it had its 413, and the gateway reads for a few seconds at most, not for ever.
    const t0 = Date.now();
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    s.on('error', () => undefined);
    let head = '';
    s.on('data', (d) => {
      head += d;
    });
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    s.write(`POST /v1/${topic}/get HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${1 << 30}\r\n\r\n`);
    const drip = setInterval(() => s.write(Buffer.alloc(16 * 1024, 0x20)), 20);
    try {
      await closed;
    } finally {
      clearInterval(drip);
    }
    assert.match(head, /^HTTP\/1\.1 413 /);
    assert.ok(Date.now() - t0 < 12_000, `cut after ${Date.now() - t0} ms`);
    // A request sent after a refused body on the same connection is not run: its answer could
    // not be written (the 413 said Connection: close).
    const raw = await new Promise<string>((resolve) => {
      const c = net.connect(port, '127.0.0.1');
      let data = '';
      c.on('data', (d) => {
        data += d;
      });
      c.on('error', () => undefined);
      c.on('close', () => resolve(data));
      const next = JSON.stringify({ n: 'after' });
      c.write(
        `POST /v1/${topic}/touch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n${' '.repeat(100_000)}` +
          `POST /v1/${topic}/touch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${next.length}\r\n\r\n${next}`,
      );
    });
    assert.match(raw, /^HTTP\/1\.1 413 /);
    assert.is(raw.match(/HTTP\/1\.1/g)?.length, 1, raw);
    await sleep(1000);
    assert.is(ctx.h.users.touched.length, 0);
  });

  t('in-flight bound: calls beyond maxInFlight get 503 with Retry-After at once', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, { maxInFlight: 2 });
    // Calls of 2 s: "at once" is then told from "when a slot came back" by a margin a loaded
    // machine does not eat (400 ms against a 200 ms bound was not).
    const slow = [1, 2].map(() => http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/sleep`, { ms: 2000 }));
    await until(() => ctx.h.gateway.inFlight === 2, 'both calls in flight at the gateway');
    const t0 = Date.now();
    const over = await http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/get`, { id: 1 });
    assert.is(over.status, 503);
    assert.is(over.json.error.code, 'HERMOD_ERR_TOO_MANY_IN_FLIGHT');
    assert.is(over.headers.get('retry-after'), '1');
    assert.ok(Date.now() - t0 < 1000, `refused after ${Date.now() - t0} ms, not at once`);
    for (const r of await Promise.all(slow)) assert.is(r.status, 200);
    assert.is((await http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/get`, { id: 1 })).status, 200, 'slots come back');
  });

  t('per-client share: past maxInFlightPerClient a client gets 429 at once, while another client still gets through', async (ctx) => {
    const { file: keysFile, keys } = keysFileFor([{ id: 'alice' }, { id: 'bob' }]);
    // Below maxBatch (100 by default) it is refused: a batch's calls count one by one.
    assert.throws(() => resolveGatewayConfig({ maxInFlightPerClient: 2 }), /maxInFlightPerClient \(2\) is below maxBatch \(100\)/);
    ctx.h = await harness(ctx.broker.url, { maxInFlight: 10, maxInFlightPerClient: 2, maxBatch: 2, auth: { keysFile } });
    const { base, topic } = ctx.h;
    const as = (key: string) => ({ authorization: `Bearer ${key}` });
    // Alice's two calls must outlast the checks below, the batch and bob's call included.
    const slow = [1, 2].map(() => http(base, 'POST', `/v1/${topic}/sleep`, { ms: 2500 }, as(keys.alice!)));
    await until(() => ctx.h.gateway.inFlight === 2, "alice's two calls in flight");
    const t0 = Date.now();
    const over = await http(base, 'POST', `/v1/${topic}/get`, { id: 1 }, as(keys.alice!));
    assert.is(over.status, 429, JSON.stringify(over.json));
    assert.is(over.json.error.code, 'HERMOD_ERR_CLIENT_BUSY');
    assert.is(over.headers.get('retry-after'), '1');
    assert.ok(Date.now() - t0 < 1000, `refused after ${Date.now() - t0} ms, not at once`);
    // The same bound per call of a JSON-RPC batch, with its own code.
    const batch = await http(
      base,
      'POST',
      '/jsonrpc',
      [1, 2].map((id) => ({ jsonrpc: '2.0', method: `${topic}.get`, params: { id }, id })),
      as(keys.alice!),
    );
    assert.equal(
      batch.json.map((x: Json) => [x.error?.code, x.error?.data?.code]),
      [
        [-32009, 'HERMOD_ERR_CLIENT_BUSY'],
        [-32009, 'HERMOD_ERR_CLIENT_BUSY'],
      ],
    );
    const other = await http(base, 'POST', `/v1/${topic}/get`, { id: 1 }, as(keys.bob!));
    assert.is(other.status, 200, 'another client is not held back by the first');
    for (const r of await Promise.all(slow)) assert.is(r.status, 200);
    assert.is((await http(base, 'POST', `/v1/${topic}/get`, { id: 1 }, as(keys.alice!))).status, 200, 'the share comes back');
    assert.is(ctx.h.gateway.inFlight, 0);
  });

  t('timeouts: a call timeout above maxCallTimeout is refused; a client too slow to send its body gets 408', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, { maxCallTimeout: 5000, callTimeout: 2000, requestTimeout: 300 });
    const r = await http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/get?timeout=6000`, { id: 1 });
    assert.is(r.status, 400);
    assert.match(r.json.error.message, /timeout must be whole milliseconds from 1 to 5000/);
    const { port } = ctx.h.gateway.address!;
    const t0 = Date.now();
    const answer = await halfSentPost(port, `/v1/${ctx.h.topic}/get`);
    assert.match(answer, /^HTTP\/1\.1 408/);
    assert.is(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).error.code, 'ERR_HTTP_REQUEST_TIMEOUT');
    assert.ok(Date.now() - t0 < 1500, `408 after ${Date.now() - t0} ms`);
  });
  t('controls: a long value is refused for its length and quoted back cut short; a header sent twice is named', async (ctx) => {
    ctx.h = await harness(ctx.broker.url);
    // Before: 400 "server has characters a server name cannot have: aaaa…", all 8,000 of them.
    const long = await http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/get?server=${'a'.repeat(8000)}`, { id: 1 });
    assert.is(long.status, 400);
    assert.is(long.json.error.message, 'server is 8000 characters long; at most 255');
    const bad = await http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/get?version=${'9'.repeat(300)}x`, { id: 1 });
    assert.is(bad.status, 400);
    assert.ok(bad.text.length < 600, `${bad.text.length} bytes`);
    assert.match(bad.json.error.message, /^version must look like X\.Y or X\.Y\.Z, got "9{100}"… \(301 characters\)$/);
    // Node joins a header given twice with ", ": it was refused as the joined value.
    const { port } = ctx.h.gateway.address!;
    const twice = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        {
          port,
          host: '127.0.0.1',
          method: 'POST',
          path: `/v1/${ctx.h.topic}/get`,
          headers: { 'content-type': 'application/json', 'x-hermod-version': ['1.0', '1.0'] },
        },
        (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        },
      );
      req.on('error', reject);
      req.end('{"id":1}');
    });
    assert.is(twice.status, 400);
    assert.is(JSON.parse(twice.body).error.message, 'the x-hermod-version header is given 2 times; give it once');
    assert.is(ctx.h.users.seen.length, 0, 'nothing sent');
  });

  t(
    "what Node answered by itself is answered in the gateway's shape: no Host, Expect other than 100-continue, CONNECT; a body too large for Expect: 100-continue gets its 413 before any 100",
    async (ctx) => {
      ctx.h = await harness(ctx.broker.url, { bodyLimit: 1024 });
      const { port } = ctx.h.gateway.address!;
      /** Writes `text` on a fresh socket; resolves with all the gateway wrote until it closed (or 3 s). */
      const exchange = (text: string, then?: (got: string, socket: net.Socket) => void) =>
        new Promise<string>((resolve) => {
          const socket = net.connect(port, '127.0.0.1');
          let got = '';
          socket.on('data', (d) => {
            got += d;
            then?.(got, socket);
          });
          socket.on('error', () => {});
          const timer = setTimeout(() => socket.destroy(), 3000);
          socket.on('close', () => {
            clearTimeout(timer);
            resolve(got);
          });
          socket.write(text);
        });
      const bodyOf = (answer: string) =>
        JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { error: { code: string; message: string } };
      const path = `/v1/${ctx.h.topic}/get`;
      // Before: Node's bare 400 with an empty chunked body.
      const noHost = await exchange(
        `POST ${path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 8\r\nConnection: close\r\n\r\n{"id":1}`,
      );
      assert.match(noHost, /^HTTP\/1\.1 400 /);
      assert.equal(bodyOf(noHost).error.code, 'HTTP_HOST_REQUIRED');
      // Before: a bare 417.
      const expect = await exchange(`POST ${path} HTTP/1.1\r\nHost: x\r\nExpect: foo\r\nContent-Length: 8\r\n\r\n{"id":1}`);
      assert.match(expect, /^HTTP\/1\.1 417 /);
      assert.is(bodyOf(expect).error.code, 'HTTP_EXPECTATION_FAILED');
      // Before: the connection cut with no answer.
      const tunnel = await exchange('CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n');
      assert.match(tunnel, /^HTTP\/1\.1 405 /);
      assert.is(bodyOf(tunnel).error.code, 'HTTP_METHOD_NOT_ALLOWED');
      // Before: 100 Continue, then 413 once the client had started its upload.
      const big = await exchange(
        `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 5000000\r\n\r\n`,
      );
      assert.match(big, /^HTTP\/1\.1 413 /);
      assert.not.match(big, /100 Continue/);
      // A body within the limit gets its 100, then its answer.
      const small = await exchange(
        `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 8\r\nConnection: close\r\n\r\n`,
        (got, socket) => {
          if (got === 'HTTP/1.1 100 Continue\r\n\r\n') socket.write('{"id":1}');
        },
      );
      assert.match(small, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
      assert.is(ctx.h.users.seen.length, 1, 'only the last one was called');
    },
  );

  t("headers over Node's limit: 431 in the gateway's error shape, and the connection closed", async (ctx) => {
    ctx.h = await harness(ctx.broker.url);
    const conn = await keepAlive(ctx.h.gateway.address!.port);
    try {
      const answer = await conn.send(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
      assert.match(answer, /^HTTP\/1\.1 431 /);
      // Before: fastify's own {"error": "Request Header Fields Too Large", "statusCode": 431}.
      const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4));
      assert.equal(Object.keys(body.error), ['code', 'type', 'message', 'requestId']);
      assert.is(body.error.code, 'HPE_HEADER_OVERFLOW');
      assert.match(body.error.message, /headers are larger than the \d+ bytes the gateway reads/);
      assert.match(answer, new RegExp(`\r\nx-request-id: ${body.error.requestId}\r\n`, 'i'));
      await conn.closed;
    } finally {
      conn.socket.destroy();
    }
    // Nor is a request Node cannot parse answered in fastify's shape.
    const bad = await keepAlive(ctx.h.gateway.address!.port);
    try {
      const answer = await bad.send('GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n');
      assert.match(answer, /^HTTP\/1\.1 400 /);
      assert.is(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).error.type, 'BadRequest');
    } finally {
      bad.socket.destroy();
    }
  });
  t(
    'connection limit: past maxConnections a connection is closed as accepted and reported, unless an idle keep-alive one can make room; a freed slot takes the next one',
    async (ctx) => {
      const refusals: ConnectionRefusedEvent[] = [];
      ctx.h = await harness(ctx.broker.url, { maxConnections: 3, onConnectionRefused: (e) => refusals.push(e) });
      const { port } = ctx.h.gateway.address!;
      const held: KeepAlive[] = [];
      try {
        // Three connections that have sent nothing yet: none is idle (a fresh one has its
        // requestTimeout), so a fourth has no room.
        for (let i = 0; i < 3; i++) held.push(await keepAlive(port));
        await until(() => ctx.h.gateway.connections.open === 3, 'three open');
        assert.equal(ctx.h.gateway.connections, { open: 3, refused: 0, evictedIdle: 0 });
        const over = await keepAlive(port);
        held.push(over);
        assert.is(await over.get('/healthz'), '', 'the fourth connection is closed without an answer');
        assert.is(ctx.h.gateway.connections.refused, 1);
        assert.equal(refusals, [{ limit: 3, refused: 1, remoteAddress: '127.0.0.1' }]);
        // The held connections work, calls included.
        assert.match(await held[0]!.get('/readyz'), /^HTTP\/1\.1 200 /);
        assert.match(
          await held[1]!.send(
            `POST /v1/${ctx.h.topic}/get HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n{"id":1}`,
          ),
          /^HTTP\/1\.1 200 /,
        );
        // Idle for less than a second, neither is closed for room: a busy client's next request
        // may be on its way.
        const early = await keepAlive(port);
        held.push(early);
        assert.is(await early.get('/healthz'), '', 'refused while the idle ones are recent');
        assert.is(ctx.h.gateway.connections.refused, 2);
        await sleep(1100);
        // Both idle for a second now: a newcomer closes the one idle the longest (held[0]) and gets
        // in. Before, idle keep-alive connections of a few addresses held every slot for keepAliveTimeout.
        const newcomer = await keepAlive(port);
        held.push(newcomer);
        assert.match(await newcomer.get('/healthz'), /^HTTP\/1\.1 200 /, 'the newcomer is served');
        await held[0]!.closed;
        assert.is(held[1]!.socket.destroyed, false, 'the more recently used one stays');
        assert.equal(ctx.h.gateway.connections, { open: 3, refused: 2, evictedIdle: 1 });
        held[2]!.socket.destroy();
        await until(() => ctx.h.gateway.connections.open === 2, 'the slot freed');
        const next = await keepAlive(port);
        held.push(next);
        assert.match(await next.get('/healthz'), /^HTTP\/1\.1 200 /, 'a freed slot takes a new connection');
        assert.equal(ctx.h.gateway.connections, { open: 3, refused: 2, evictedIdle: 1 });
      } finally {
        for (const c of held) c.socket.destroy();
      }
    },
  );

  t(
    'per address: past maxConnectionsPerAddress a connection from that address is closed, unless one of its own is idle; another address still gets in',
    async (ctx) => {
      const refusals: ConnectionRefusedEvent[] = [];
      ctx.h = await harness(ctx.broker.url, { maxConnectionsPerAddress: 2, onConnectionRefused: (e) => refusals.push(e) });
      const { port } = ctx.h.gateway.address!;
      const held: KeepAlive[] = [];
      try {
        for (let i = 0; i < 2; i++) held.push(await keepAlive(port));
        await until(() => ctx.h.gateway.connections.open === 2, 'two open');
        const over = await keepAlive(port);
        held.push(over);
        assert.is(await over.get('/healthz'), '', 'a third from 127.0.0.1 is closed without an answer');
        assert.equal(refusals, [{ limit: 2, refused: 1, perAddress: true, remoteAddress: '127.0.0.1' }]);
        // Loopback is a /8: 127.0.0.2 is another client to the gateway, and its idle connection
        // is not 127.0.0.1's to take.
        const other = await keepAlive(port, '127.0.0.2');
        held.push(other);
        assert.match(await other.get('/healthz'), /^HTTP\/1\.1 200 /, 'another address is served');
        const again = await keepAlive(port);
        held.push(again);
        assert.is(await again.get('/healthz'), '', 'still none of its own idle');
        // One of its own goes idle (for a second): the next from 127.0.0.1 takes its place.
        assert.match(await held[0]!.get('/healthz'), /^HTTP\/1\.1 200 /);
        await sleep(1100);
        const third = await keepAlive(port);
        held.push(third);
        assert.match(await third.get('/healthz'), /^HTTP\/1\.1 200 /);
        await held[0]!.closed;
        assert.is(other.socket.destroyed, false);
      } finally {
        for (const c of held) c.socket.destroy();
      }
    },
  );

  t("at both limits at once one idle connection makes room, the address's own; another client's stays", async (ctx) => {
    ctx.h = await harness(ctx.broker.url, { maxConnections: 2, maxConnectionsPerAddress: 1 });
    const { port } = ctx.h.gateway.address!;
    const other = await keepAlive(port, '127.0.0.2');
    const own = await keepAlive(port);
    try {
      assert.match(await other.get('/healthz'), /^HTTP\/1\.1 200 /);
      assert.match(await own.get('/healthz'), /^HTTP\/1\.1 200 /);
      await sleep(1100);
      const newcomer = await keepAlive(port);
      try {
        assert.match(await newcomer.get('/healthz'), /^HTTP\/1\.1 200 /);
        await own.closed;
        // Before: the total was checked again before the first close came, and 127.0.0.2's went too.
        assert.is(other.socket.destroyed, false);
        assert.is(ctx.h.gateway.connections.evictedIdle, 1);
      } finally {
        newcomer.socket.destroy();
      }
    } finally {
      other.socket.destroy();
      own.socket.destroy();
    }
  });

  t(
    'a pipelined request refused for its Expect is answered in its turn, after the one before it; on /jsonrpc in its shape',
    async (ctx) => {
      ctx.h = await harness(ctx.broker.url, { bodyLimit: 1024 });
      const { port } = ctx.h.gateway.address!;
      const answers = await new Promise<string>((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        let got = '';
        socket.on('data', (d) => {
          got += d;
        });
        socket.on('error', () => {});
        const timer = setTimeout(() => socket.destroy(), 5000);
        socket.on('close', () => {
          clearTimeout(timer);
          resolve(got);
        });
        const slow = `POST /v1/${ctx.h.topic}/sleep HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{"ms":300}`;
        const expect =
          'POST /jsonrpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 5000000\r\n\r\n';
        socket.write(slow + expect);
      });
      // Before: the 413 went to the socket while the sleep's answer was pending, and nowhere: the
      // second request was never answered and the connection held.
      const statuses = [...answers.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
      assert.equal(statuses, ['200', '413'], answers);
      const last = JSON.parse(answers.slice(answers.lastIndexOf('\r\n\r\n') + 4));
      assert.equal([last.error.code, last.error.data.code], [-32600, 'FST_ERR_CTP_BODY_TOO_LARGE']);
    },
  );

  t('pipelining: a connection with more than maxPipelined requests unanswered is closed; the gateway holds nothing for it', async (ctx) => {
    // A client that pipelined 20,000 GETs of /openapi.json on each of 200 connections and read
    // nothing took the gateway past 3 GB and out of memory: Node parses them all and keeps each
    // answer until the ones before it are sent.
    const refusals: ConnectionRefusedEvent[] = [];
    ctx.h = await harness(ctx.broker.url, { maxPipelined: 8, onConnectionRefused: (e) => refusals.push(e) });
    const { port } = ctx.h.gateway.address!;
    const flood = net.connect(port, '127.0.0.1');
    flood.on('error', () => undefined);
    // Read nothing: the answers back up as they would for such a client.
    flood.pause();
    const closed = new Promise<void>((r) => flood.once('close', () => r()));
    await new Promise((r) => flood.once('connect', r));
    flood.write('GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(5000));
    await until(() => refusals.some((e) => e.pipelined && e.limit === 8), 'the flood refused');
    // Reading now: a few answers at most, then the end of the connection.
    let answers = 0;
    flood.on('data', (d: Buffer) => {
      answers += (d.toString('latin1').match(/HTTP\/1\.1 200 /g) ?? []).length;
    });
    flood.resume();
    await closed;
    assert.ok(answers <= 8, `${answers} answers`);
    // A client that pipelines a few is served in order.
    const polite = net.connect(port, '127.0.0.1');
    let got = '';
    polite.on('data', (d) => (got += d));
    await new Promise((r) => polite.once('connect', r));
    polite.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(4));
    await until(() => (got.match(/HTTP\/1\.1 200 /g) ?? []).length === 4, 'four answers');
    polite.destroy();
    assert.is((await http(ctx.h.base, 'POST', `/v1/${ctx.h.topic}/get`, { id: 1 })).status, 200);
    // Calls pipelined past the limit in one write are not run: the connection is cut, and only the
    // 8 already admitted may have run. Before, the ninth and every request Node had parsed from
    // the same read (hundreds) ran their calls, for a client that never saw an answer.
    const seen = ctx.h.users.seen.length;
    const calls = net.connect(port, '127.0.0.1');
    calls.on('error', () => undefined);
    const cut = new Promise<void>((r) => calls.once('close', () => r()));
    await new Promise((r) => calls.once('connect', r));
    const body = JSON.stringify({ id: 5 });
    calls.write(
      `POST /v1/${ctx.h.topic}/get HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`.repeat(
        500,
      ),
    );
    await cut;
    await sleep(300);
    const ran = ctx.h.users.seen.length - seen;
    assert.ok(ran <= 8, `${ran} calls ran`);
  });

  t('keepAliveTimeout: an idle keep-alive connection is closed by the gateway, its slot freed', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, { keepAliveTimeout: 200, maxConnections: 1 });
    const { port } = ctx.h.gateway.address!;
    const c = await keepAlive(port);
    try {
      assert.match(await c.get('/healthz'), /^HTTP\/1\.1 200 /);
      const t0 = Date.now();
      await c.closed;
      const idle = Date.now() - t0;
      assert.ok(idle >= 150 && idle < 2000, `closed after ${idle} ms idle`);
      await until(() => ctx.h.gateway.connections.open === 0, 'the slot freed');
      const again = await keepAlive(port);
      try {
        assert.match(await again.get('/healthz'), /^HTTP\/1\.1 200 /);
      } finally {
        again.socket.destroy();
      }
    } finally {
      c.socket.destroy();
    }
  });
  t.run();
}
