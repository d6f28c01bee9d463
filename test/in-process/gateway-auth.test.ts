import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createGateway, hashApiKey } from '../../src/gateway/index.js';
import { defaultConfig, getTransport } from '../../src/index.js';
import { rejects } from '../support/assert.js';
import { halfSentPost, harness, harnessSuite, http, IN_PROCESS, type Json, keepAlive, keysFileFor } from './gateway-cases.js';

// API keys from a file of SHA-256 hashes, per-route roles, the authenticate hook, and what of the
// identity reaches the RPC context — over real HTTP, on memory and through the embedded router.

const {
  file: keysFile,
  keys: { reader, admin },
} = keysFileFor([
  { id: 'reader', roles: ['reader'], user: 'u-reader', project: 'p1' },
  { id: 'admin', roles: ['admin', 'reader'] },
]);
const dir = path.dirname(keysFile);

for (const [name, broker] of IN_PROCESS) {
  const t = harnessSuite(`gateway auth over ${name}`, broker);

  t('keys file: 401 without or with an unknown key, Bearer and X-API-Key accepted, roles per route', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, (topic) => ({
      auth: { keysFile },
      routes: [
        { topic, method: 'get', rpcName: 'getUser' },
        { topic, method: 'ctx', roles: ['admin'] },
      ],
    }));
    const { base, topic } = ctx.h;
    const none = await http(base, 'POST', `/v1/${topic}/get`, { id: 1 });
    assert.is(none.status, 401);
    assert.is(none.json.error.code, 'HERMOD_ERR_UNAUTHENTICATED');
    assert.is(none.headers.get('www-authenticate'), 'Bearer');
    const wrong = await http(
      base,
      'POST',
      `/v1/${topic}/get`,
      { id: 1 },
      { authorization: `Bearer ${randomBytes(32).toString('base64url')}` },
    );
    assert.is(wrong.status, 401);
    assert.match(none.json.error.message, /^credentials required/);
    assert.match(wrong.json.error.message, /^the credentials sent are not valid/);
    assert.is(ctx.h.users.seen.length, 0, 'nothing sent for unauthenticated requests');
    const bearer = await http(base, 'POST', `/v1/${topic}/get`, { id: 1 }, { authorization: `Bearer ${reader}` });
    assert.is(bearer.status, 200);
    const apiKey = await http(base, 'POST', `/v1/${topic}/get`, { id: 2 }, { 'x-api-key': reader });
    assert.is(apiKey.status, 200);
    const forbidden = await http(base, 'POST', `/v1/${topic}/ctx`, {}, { authorization: `Bearer ${reader}` });
    assert.is(forbidden.status, 403);
    assert.is(forbidden.json.error.code, 'HERMOD_ERR_FORBIDDEN');
    const allowed = await http(base, 'POST', `/v1/${topic}/ctx`, {}, { authorization: `Bearer ${admin}`, 'x-request-id': 'r-1' });
    assert.is(allowed.status, 200);
    assert.equal(allowed.json.result, { request_id: 'r-1', user_id: 'admin', roles: ['admin', 'reader'] });
    // The reader's context: user and project from the keys file.
    assert.equal(ctx.h.users.seen[0], {
      request_id: bearer.headers.get('x-request-id'),
      user_id: 'u-reader',
      project_id: 'p1',
      roles: ['reader'],
    });
    // Health is public.
    assert.is((await http(base, 'GET', '/healthz')).status, 200);
  });

  t('JSON-RPC: a forbidden item fails alone (-32003) while the rest of the batch runs', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, (topic) => ({
      auth: { keysFile },
      routes: [
        { topic, method: 'get', rpcName: 'getUser' },
        { topic, method: 'ctx', roles: ['admin'] },
      ],
    }));
    const r = await http(
      ctx.h.base,
      'POST',
      '/jsonrpc',
      [
        { jsonrpc: '2.0', method: 'getUser', params: { id: 1 }, id: 1 },
        { jsonrpc: '2.0', method: `${ctx.h.topic}.ctx`, id: 2 },
      ],
      { authorization: `Bearer ${reader}` },
    );
    assert.is(r.status, 200);
    const byId = new Map<number, Json>(r.json.map((x: Json) => [x.id, x]));
    assert.is(byId.get(1).result.id, 1);
    assert.is(byId.get(2).error.code, -32003);
    assert.is(byId.get(2).error.data.status, 403);
    const anon = await http(ctx.h.base, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: 'getUser', params: { id: 1 }, id: 1 });
    assert.is(anon.status, 401);
    assert.is(anon.json.error.code, -32006);
    assert.is(anon.json.id, null);
  });

  t('authenticate hook: its identity (and only its) becomes the context; anonymous allowed where configured', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, (topic) => ({
      auth: { allowAnonymous: true },
      authenticate: (req) =>
        req.headers['x-test-user'] === 'carol' ? { user: 'carol', project: 'p9', roles: ['ops'], context: { domain: 'd1' } } : null,
      routes: [
        { topic, method: 'ctx' },
        { topic, method: 'get', roles: ['ops'] },
      ],
    }));
    const { base, topic } = ctx.h;
    const anon = await http(base, 'POST', `/v1/${topic}/ctx`, {});
    assert.is(anon.status, 200);
    assert.equal(Object.keys(anon.json.result), ['request_id']);
    const carol = await http(base, 'POST', `/v1/${topic}/ctx`, {}, { 'x-test-user': 'carol' });
    assert.equal(carol.json.result, {
      domain: 'd1',
      request_id: carol.headers.get('x-request-id'),
      user_id: 'carol',
      project_id: 'p9',
      roles: ['ops'],
    });
    assert.is((await http(base, 'POST', `/v1/${topic}/get`, { id: 1 })).status, 401, 'a role route needs an identity');
    assert.is((await http(base, 'POST', `/v1/${topic}/get`, { id: 1 }, { 'x-test-user': 'carol' })).status, 200);
    // Credentials the hook does not accept are refused, not taken for anonymous.
    for (const bad of [{ authorization: 'Bearer not-a-key' }, { 'x-api-key': 'nope' }] as Array<Record<string, string>>) {
      const r = await http(base, 'POST', `/v1/${topic}/ctx`, {}, bad);
      assert.is(r.status, 401, JSON.stringify(bad));
      assert.match(r.json.error.message, /^the credentials sent are not valid/);
    }
  });

  t('a request refused before its body is read closes its connection: one answer, no 408 after it', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, { auth: { keysFile }, requestTimeout: 1000 });
    const { port } = ctx.h.gateway.address!;
    const t0 = Date.now();
    // Part of the body: the 401 comes from the headers alone.
    const answer = await halfSentPost(port, `/v1/${ctx.h.topic}/get`);
    assert.match(answer, /^HTTP\/1\.1 401 /);
    assert.match(answer, /\r\nconnection: close\r\n/i);
    assert.is(answer.match(/HTTP\/1\.1 /g)?.length, 1, `one response: ${answer}`);
    assert.ok(Date.now() - t0 < 900, `closed after ${Date.now() - t0} ms, before the request timeout`);
    // A complete request keeps its keep-alive connection.
    const c = await keepAlive(port);
    try {
      assert.match(await c.get('/healthz'), /^HTTP\/1\.1 200 /);
      assert.match(await c.get('/healthz'), /^HTTP\/1\.1 200 /, 'the same connection serves a second request');
    } finally {
      c.socket.destroy();
    }
  });
  t.run();
}

const c = suite('gateway auth configuration');
c('a keys file with an unknown field or a plain-text key is refused, naming it', async () => {
  const tr = await getTransport('memory://', { config: defaultConfig() });
  try {
    const bad = path.join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ keys: [{ id: 'x', sha256: hashApiKey('k'), role: ['a'] }] }));
    await rejects(() => createGateway(tr, { auth: { keysFile: bad } }), 'HERMOD_ERR_CONFIG', /unknown key 'role'/);
    writeFileSync(bad, JSON.stringify({ keys: [{ id: 'x', sha256: 'my-secret-key' }] }));
    await rejects(() => createGateway(tr, { auth: { keysFile: bad } }), 'HERMOD_ERR_CONFIG', /keys\/0\/sha256/);
    await rejects(
      () => createGateway(tr, { auth: { keysFile: path.join(dir, 'absent.json') } }),
      'HERMOD_ERR_CONFIG',
      /cannot read keys file/,
    );
  } finally {
    await tr.close();
  }
});
c.run();
