import net from 'node:net';
import { Writable } from 'node:stream';
import cors from '@fastify/cors';
import swagger from '@fastify/swagger';
import Fastify from 'fastify';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { hermodGateway } from '../../src/gateway/index.js';
import { ConfigError, defaultConfig, getTransport, RPCServer, Target } from '../../src/index.js';
import { harnessSuite, http, IN_PROCESS, type MountedHarness, mountedHarness, Users, userRoutes } from './gateway-cases.js';

// The gateway as a fastify plugin in an application's own server: real HTTP on one port to the
// application's routes and the gateway's, under a prefix, against real RPC servers.

/** Polls `check` until it holds, for at most 10 s. */
async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  const until = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const [name, broker] of IN_PROCESS) {
  const t = harnessSuite<MountedHarness>(`gateway plugin over ${name}`, broker);

  t("under a prefix beside the application's routes: REST, aliases, JSON-RPC, health and the document", async (ctx) => {
    ctx.h = await mountedHarness(ctx.broker.url, '/rpc');
    const { base, root, topic } = ctx.h;
    const rest = await http(base, 'POST', `/v1/${topic}/get`, { id: 7 });
    assert.equal([rest.status, rest.json], [200, { result: { id: 7, name: 'user-7', verbose: false, by: 'u1' } }], rest.text);
    const alias = await http(base, 'GET', '/users/8?verbose=true');
    assert.equal([alias.status, alias.json?.result?.verbose], [200, true], alias.text);
    const batch = await http(base, 'POST', '/jsonrpc', [
      { jsonrpc: '2.0', method: 'getUser', params: { id: 1 }, id: 1 },
      { jsonrpc: '2.0', method: `${topic}.nope`, params: {}, id: 2 },
    ]);
    assert.is(batch.status, 200, batch.text);
    assert.equal(batch.json[0], { jsonrpc: '2.0', result: { id: 1, name: 'user-1', verbose: false, by: 'u1' }, id: 1 });
    assert.is(batch.json[1].error.code, -32601, batch.text);
    assert.equal((await http(base, 'GET', '/healthz')).json, { status: 'ok' });
    await eventually(async () => (await http(base, 'GET', '/readyz')).json?.status === 'ready', 'readyz 200');
    // The document's paths are the routes' own, under a server URL of the prefix (Swagger UI
    // sends "try it out" calls there; the docs page in headless Chromium: gateway-docs).
    const doc = (await http(base, 'GET', '/openapi.json')).json;
    assert.equal(doc.servers, [{ url: '/rpc' }]);
    assert.ok(doc.paths[`/v1/${topic}/get`] && doc.paths['/users/{id}'] && doc.paths['/jsonrpc'], Object.keys(doc.paths).join());
    assert.is((await http(base, 'GET', '/docs/')).status, 200);
    // Unrouted under the prefix: the gateway's 404; elsewhere the application's own.
    const under = await http(base, 'GET', '/nope');
    assert.equal([under.status, under.json?.error?.code], [404, 'HERMOD_ERR_NOT_FOUND'], under.text);
    const outside = await http(root, 'GET', '/nope');
    assert.equal([outside.status, outside.json?.error?.code, outside.json?.message], [404, undefined, 'Route GET:/nope not found']);
    // Nothing of the gateway's only path exists at the root.
    assert.is((await http(root, 'POST', `/v1/${topic}/get`, { id: 1 })).status, 404);
    assert.is((await http(root, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: 'getUser', id: 1 })).status, 404);
  });

  t("the gateway's parsers, error shape, credentials and limits stay in its scope", async (ctx) => {
    ctx.h = await mountedHarness(ctx.broker.url, '/rpc', {
      authenticate: (request) => (request.headers['x-user'] === 'ann' ? { user: 'ann', roles: [] } : null),
      rateLimit: { max: 2, windowMs: 60_000 },
      bodyLimit: 1024,
    });
    const { base, root, topic } = ctx.h;
    const ann = { 'x-user': 'ann' };
    const none = await http(base, 'POST', `/v1/${topic}/get`, { id: 1 });
    assert.equal([none.status, none.json?.error?.code], [401, 'HERMOD_ERR_UNAUTHENTICATED'], none.text);
    // The gateway's bodyLimit is its routes': 2 KiB is over it there, and the application's
    // route (fastify's 1 MiB) takes it.
    const big = { id: 1, pad: 'x'.repeat(2048) };
    const refused = await http(base, 'POST', `/v1/${topic}/get`, big, ann);
    assert.equal([refused.status, refused.json?.error?.code], [413, 'FST_ERR_CTP_BODY_TOO_LARGE'], refused.text);
    const echoed = await http(root, 'POST', '/app/echo', big);
    assert.equal([echoed.status, echoed.json?.body?.pad?.length], [200, 2048]);
    // The application's text/plain parser is untouched; the gateway reads JSON only.
    const text = await http(root, 'POST', '/app/echo', 'hello', { 'content-type': 'text/plain' });
    assert.equal(text.json, { body: 'hello' });
    const asText = await http(base, 'POST', `/v1/${topic}/get`, '{"id":1}', { ...ann, 'content-type': 'text/plain' });
    assert.is(asText.status, 415, asText.text);
    // The application's error handler answers its own routes' errors; the gateway's shape its own.
    const badJson = await http(root, 'POST', '/app/echo', '{', { 'content-type': 'application/json' });
    assert.equal([badJson.status, badJson.json?.app], [418, 'error'], badJson.text);
    // Two requests per minute at the gateway (the 413 and the 415 above; a 401 counts apart, as
    // failed credentials): the third is refused.
    const limited = await http(base, 'POST', `/v1/${topic}/get`, { id: 2 }, ann);
    assert.equal([limited.status, limited.json?.error?.code], [429, 'HERMOD_ERR_RATE_LIMITED'], limited.text);
    // None of it reaches the application's routes: no credentials, no limit, no request id header.
    for (let i = 0; i < 5; i++) {
      const hello = await http(root, 'GET', '/app/hello');
      assert.equal([hello.status, hello.json, hello.headers.get('x-request-id')], [200, { hello: 'app' }, null]);
    }
  });

  t('a job started through the plugin is polled under its prefix (Location, href)', async (ctx) => {
    ctx.h = await mountedHarness(ctx.broker.url, '/rpc', (topic) => ({ routes: [...userRoutes(topic), { topic, method: 'render' }] }));
    const { base, root, topic } = ctx.h;
    const started = await http(base, 'POST', `/v1/${topic}/render`, { ms: 1300 }, { prefer: 'respond-async' });
    assert.is(started.status, 202, started.text);
    const ref: string = started.json.job;
    assert.is(started.headers.get('location'), `/rpc/v1/jobs/${ref}`);
    assert.is(started.json.href, `/rpc/v1/jobs/${ref}`);
    const done = await http(root, 'GET', `${started.headers.get('location')}?wait=10`);
    assert.equal([done.status, done.json?.state, done.json?.result], [200, 'succeeded', 1300], done.text);
  });

  t("a caller's X-Request-Id is its calls' request_id (gatewayRequestId), and a new req-<uuid> otherwise", async (ctx) => {
    ctx.h = await mountedHarness(ctx.broker.url, '/rpc');
    const { base, topic, users } = ctx.h;
    const given = await http(base, 'POST', `/v1/${topic}/get`, { id: 1 }, { 'x-request-id': 'order-42' });
    assert.is(given.headers.get('x-request-id'), 'order-42');
    const fresh = await http(base, 'POST', `/v1/${topic}/get`, { id: 2 });
    const id = fresh.headers.get('x-request-id') ?? '';
    assert.match(id, /^req-[0-9a-f-]{36}$/);
    assert.equal(
      users.seen.map((c) => c.request_id),
      ['order-42', id],
    );
  });

  t("the application's close() stops the gateway: new calls 503, running ones answered at closeDeadline", async (ctx) => {
    ctx.h = await mountedHarness(ctx.broker.url, '/rpc', { closeDeadline: 400 });
    const { base, topic } = ctx.h;
    // One call that ends within the deadline, one that would not.
    const quick = http(base, 'POST', `/v1/${topic}/sleep`, { ms: 200 });
    const slow = http(base, 'POST', `/v1/${topic}/sleep`, { ms: 1500 });
    await eventually(
      async () => JSON.parse((await ctx.h.app.inject({ method: 'GET', url: '/rpc/readyz' })).body).inFlight === 2,
      'two calls in flight',
    );
    const t0 = Date.now();
    const closing = ctx.h.app.close();
    const late = await ctx.h.app.inject({ method: 'POST', url: `/rpc/v1/${topic}/get`, payload: { id: 1 } });
    assert.is(late.statusCode, 503, late.body);
    const [q, s] = await Promise.all([quick, slow]);
    await closing;
    const took = Date.now() - t0;
    assert.equal([q.status, q.json?.result, q.headers.get('connection')], [200, 200, 'close'], q.text);
    assert.equal([s.status, s.json?.error?.code], [504, 'HERMOD_ERR_CALL_CUT'], s.text);
    assert.ok(took >= 350 && took < 1400, `closed in ${took} ms`);
  });

  t("a body still arriving at closeDeadline is cut: the application's close() is not held by it", async (ctx) => {
    // fastify's requestTimeout is none by default: without the cut, close() waited for the client.
    ctx.h = await mountedHarness(ctx.broker.url, '/rpc', { closeDeadline: 300 });
    const { port } = ctx.h.app.server.address() as { port: number };
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    socket.write(
      `POST /rpc/v1/${ctx.h.topic}/get HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"id":`,
    );
    // Time for the request's head to be read (its hooks run before the body is).
    await new Promise((resolve) => setTimeout(resolve, 100));
    const t0 = Date.now();
    const closing = ctx.h.app.close();
    let timer: NodeJS.Timeout | undefined;
    const verdict = await Promise.race([
      Promise.all([ended, closing]).then(() => 'closed'),
      new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve('close() still held by the upload after 3 s'), 3000);
      }),
    ]);
    clearTimeout(timer);
    // Let the harness's close() end either way.
    socket.destroy();
    assert.is(verdict, 'closed');
    const took = Date.now() - t0;
    assert.ok(took >= 250 && took < 2000, `closed in ${took} ms`);
  });

  t.run();
}

const o = suite('gateway plugin options');

o('server settings, unknown keys and a missing transport are refused at registration, naming the key', async () => {
  const transport = await getTransport('memory://', { config: defaultConfig() });
  try {
    const refusedWith = async (options: Record<string, unknown>) => {
      const app = Fastify();
      try {
        await app.register(hermodGateway, options as never);
        await app.ready();
      } catch (err) {
        return err as ConfigError;
      } finally {
        await app.close().catch(() => undefined);
      }
      throw new Error(`not refused: ${JSON.stringify(Object.keys(options))}`);
    };
    for (const key of [
      'listen',
      'maxConnections',
      'maxConnectionsPerAddress',
      'maxPipelined',
      'requestTimeout',
      'keepAliveTimeout',
      'trustProxy',
      'accessLog',
    ]) {
      const err = await refusedWith({ transport, [key]: key === 'listen' ? { port: 1 } : 5 });
      assert.instance(err, ConfigError);
      assert.is(err.key, key);
      assert.match(err.message, /Fastify\(\.\.\.\)/);
    }
    const typo = await refusedWith({ transport, rotues: [] });
    assert.instance(typo, ConfigError);
    assert.match(typo.message, /routes/);
    const without = await refusedWith({ routes: [] });
    assert.instance(without, ConfigError);
    assert.is(without.key, 'transport');
    for (const closeDeadline of [-1, 2 ** 31, Number.POSITIVE_INFINITY]) {
      // 2^31 ms is past what a timer takes: Node fired it at once and cut the running calls.
      assert.is((await refusedWith({ transport, closeDeadline })).key, 'closeDeadline');
    }
    // CORS at the application's root, where its preflight route would answer for every path.
    const rootCors = await refusedWith({ transport, cors: { origins: ['http://a.test'] } });
    assert.equal([rootCors.key, rootCors instanceof ConfigError], ['cors', true]);
  } finally {
    await transport.close();
  }
});

o("two gateways in one application, one of them at the root, where the 404s stay the application's", async () => {
  const transport = await getTransport('memory://', { config: defaultConfig() });
  const a = new Users('a');
  const b = new Users('b');
  const servers = [
    new RPCServer(transport, new Target({ topic: 'pa', server: 'a' }), [a]),
    new RPCServer(transport, new Target({ topic: 'pb', server: 'b' }), [b]),
  ];
  for (const s of servers) await s.start();
  const app = Fastify();
  app.get('/hello', async () => ({ hello: 'app' }));
  try {
    await app.register(hermodGateway, { transport, routes: userRoutes('pa').slice(0, 1) });
    await app.register(hermodGateway, { transport, prefix: '/b', routes: userRoutes('pb').slice(0, 1) });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const root = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    assert.equal((await http(root, 'GET', '/users/1')).json?.result?.by, 'a');
    assert.equal((await http(root, 'GET', '/b/users/1')).json?.result?.by, 'b');
    // Each exposes only its own routes.
    assert.is((await http(root, 'POST', '/v1/pb/get', { id: 1 })).status, 404);
    assert.is((await http(root, 'POST', '/b/v1/pa/get', { id: 1 })).status, 404);
    assert.equal((await http(root, 'GET', '/hello')).json, { hello: 'app' });
    assert.is((await http(root, 'GET', '/nope')).json?.message, 'Route GET:/nope not found');
    assert.is((await http(root, 'GET', '/b/nope')).json?.error?.code, 'HERMOD_ERR_NOT_FOUND');
    assert.equal([a.seen.length, b.seen.length], [1, 1]);
  } finally {
    await app.close();
    for (const s of servers) {
      await s.stop();
      await s.wait(1000);
    }
    await transport.close();
  }
});

o(
  "beside the application's own @fastify/cors: the gateway's cors is a ConfigError (it threw from a decorator and took the process down)",
  async () => {
    const transport = await getTransport('memory://', { config: defaultConfig() });
    const app = Fastify();
    try {
      await app.register(cors, { origin: ['http://app.test'] });
      const err = await app
        .register(hermodGateway, { transport, prefix: '/rpc', cors: { origins: ['http://gw.test'] } })
        .then(() => app.ready())
        .then(
          () => undefined,
          (e: Error) => e,
        );
      assert.instance(err, ConfigError);
      assert.is((err as ConfigError).key, 'cors');
      assert.match(err!.message, /@fastify\/cors/);
    } finally {
      await app.close().catch(() => undefined);
      await transport.close();
    }
  },
);

o("the application's own @fastify/swagger document leaves the gateway's routes out; the gateway's own document has them", async () => {
  const transport = await getTransport('memory://', { config: defaultConfig() });
  const app = Fastify();
  try {
    await app.register(swagger, { openapi: { info: { title: 'app', version: '1' } } });
    app.get('/hello', async () => ({ hello: 'app' }));
    await app.register(hermodGateway, { transport, prefix: '/rpc', routes: userRoutes('sw') });
    await app.ready();
    const paths = Object.keys((app.swagger() as { paths?: Record<string, unknown> }).paths ?? {});
    assert.ok(paths.includes('/hello'), paths.join());
    assert.equal(
      paths.filter((p) => p.startsWith('/rpc')),
      [],
    );
    const own = JSON.parse((await app.inject({ method: 'GET', url: '/rpc/openapi.json' })).body);
    assert.ok(own.paths['/v1/sw/get'] && own.paths['/users/{id}'], Object.keys(own.paths).join());
  } finally {
    await app.close();
    await transport.close();
  }
});

o(
  "an application's own hooks tell the gateway's routes by their mark; its 5xx answers reach the application's logger; one gateway per prefix",
  async () => {
    const transport = await getTransport('memory://', { config: defaultConfig() });
    const users = new Users();
    const server = new RPCServer(transport, new Target({ topic: 'mk', server: 'u1' }), [users]);
    await server.start();
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    // One gateway per prefix: a second at '/rpc/' (the same prefix) is refused. A failed
    // registration leaves an application unusable (fastify's own rule), so it has one of its own.
    const taken = Fastify();
    try {
      await taken.register(hermodGateway, { transport, prefix: '/rpc', routes: userRoutes('mk') });
      const second = await taken
        .register(hermodGateway, { transport, prefix: '/rpc/', routes: userRoutes('mk') })
        .then(() => taken.ready())
        .then(
          () => undefined,
          (e: Error) => e,
        );
      assert.instance(second, ConfigError, String(second));
      assert.is((second as ConfigError).key, 'prefix');
    } finally {
      await taken.close().catch(() => undefined);
    }
    const app2 = Fastify({ logger: { level: 'warn', stream } });
    // An app-wide credentials hook, as an application has: the gateway's routes are left to the
    // gateway's own authenticate, its open ones (health, docs, preflights) to nobody.
    app2.addHook('onRequest', async (request, reply) => {
      if (request.routeOptions.config.hermodGateway) return;
      if (request.headers['x-app-token'] !== 'ok') return reply.code(401).send({ app: 'no token' });
    });
    app2.get('/mine', async () => ({ mine: true }));
    try {
      await app2.register(hermodGateway, {
        transport,
        prefix: '/rpc',
        authenticate: (request) => (request.headers['x-user'] ? { user: String(request.headers['x-user']) } : null),
        routes: userRoutes('mk'),
      });
      await app2.ready();
      const marks: Record<string, unknown> = {};
      for (const url of ['/rpc/healthz', '/rpc/docs/static/index.html', '/mine']) {
        const r = await app2.inject({ method: 'GET', url });
        marks[url] = r.statusCode;
      }
      // Open: health and docs (the docs' index redirects); the app's own route needs its token;
      // the gateway's call route its own credentials (401 in the gateway's shape, not the app's).
      assert.equal(marks, { '/rpc/healthz': 200, '/rpc/docs/static/index.html': 302, '/mine': 401 });
      const call = await app2.inject({ method: 'POST', url: '/rpc/v1/mk/get', payload: { id: 1 } });
      assert.equal([call.statusCode, JSON.parse(call.body).error?.code], [401, 'HERMOD_ERR_UNAUTHENTICATED']);
      const ok = await app2.inject({ method: 'POST', url: '/rpc/v1/mk/get', headers: { 'x-user': 'ann' }, payload: { id: 1 } });
      assert.is(ok.statusCode, 200, ok.body);
      // A call that times out: 504, and a warning in the application's log with the error.
      const late = await app2.inject({
        method: 'POST',
        url: '/rpc/v1/mk/sleep?timeout=200',
        headers: { 'x-user': 'ann' },
        payload: { ms: 1500 },
      });
      assert.is(late.statusCode, 504, late.body);
      const warned = lines.map((l) => JSON.parse(l)).filter((l) => l.level === 40);
      assert.is(warned.length, 1, lines.join(''));
      assert.match(warned[0].msg, /POST \/rpc\/v1\/:topic\/:method: .*timed out/i);
      assert.is(warned[0].err?.type, 'MessagingTimeout');
    } finally {
      await app2.close();
      await server.stop();
      await server.wait(3000);
      await transport.close();
    }
  },
);

o(
  "prefixes as fastify takes them: '/rpc/' is /rpc, '/' the root, and a gateway inside an application's /api plugin leaves /api's 404s alone",
  async () => {
    const transport = await getTransport('memory://', { config: defaultConfig() });
    const users = new Users();
    const server = new RPCServer(transport, new Target({ topic: 'pp', server: 'u1' }), [users]);
    await server.start();
    const authenticate = (request: { headers: Record<string, unknown> }) => (request.headers['x-user'] ? { user: 'ann' } : null);
    const routes = [...userRoutes('pp').slice(0, 1), { topic: 'pp', method: 'render', job: true }];
    const app = Fastify();
    app.get('/hello', async () => ({ hello: 'app' }));
    try {
      await app.register(hermodGateway, { transport, prefix: '/rpc/', authenticate, routes });
      await app.register(hermodGateway, { transport, prefix: '/', routes: userRoutes('pp').slice(0, 1) });
      await app.register(
        async (api) => {
          api.get('/users', async () => ['app']);
          await api.register(hermodGateway, { transport, authenticate, routes });
        },
        { prefix: '/api' },
      );
      await app.listen({ host: '127.0.0.1', port: 0 });
      const root = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
      const ann = { 'x-user': 'ann' };
      for (const base of [`${root}/rpc`, `${root}/api`]) {
        // Public without credentials (they were 401 under '/rpc/'), and the document's server URL.
        assert.is((await http(base, 'GET', '/healthz')).status, 200, base);
        const doc = await http(base, 'GET', '/openapi.json');
        assert.equal(doc.json?.servers, [{ url: new URL(base).pathname }]);
        // The JSON-RPC envelope on a refusal (it was the REST shape).
        const rpc = await http(base, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: 'getUser', params: { id: 1 }, id: 1 });
        assert.equal([rpc.status, rpc.json?.jsonrpc, rpc.json?.error?.data?.code], [401, '2.0', 'HERMOD_ERR_UNAUTHENTICATED'], rpc.text);
        // A job's link is under the prefix, once, and polls there.
        const started = await http(base, 'POST', '/v1/pp/render', { ms: 10 }, ann);
        assert.is(started.status, 202, started.text);
        assert.is(started.json.href, `${new URL(base).pathname}/v1/jobs/${started.json.job}`);
        const done = await http(root, 'GET', `${started.json.href}?wait=5`, undefined, ann);
        assert.equal([done.status, done.json?.result], [200, 10], done.text);
      }
      // '/' is the root: its routes there, and the 404s the application's.
      assert.equal((await http(root, 'GET', '/users/4')).json?.result?.id, 4);
      assert.equal((await http(root, 'GET', '/nope')).json?.message, 'Route GET:/nope not found');
      // Inside /api without a prefix of its own: /api's misses are the application's, not a 401.
      assert.equal((await http(root, 'GET', '/api/users')).json, ['app']);
      const miss = await http(root, 'GET', '/api/userz');
      assert.equal([miss.status, miss.json?.message], [404, 'Route GET:/api/userz not found'], miss.text);
    } finally {
      await app.close();
      await server.stop();
      await server.wait(1000);
      await transport.close();
    }
  },
);

o(
  "an identity without roles has none; roles that are no array of strings are the hook's mistake (500), never matched by substring",
  async () => {
    const transport = await getTransport('memory://', { config: defaultConfig() });
    const users = new Users();
    const server = new RPCServer(transport, new Target({ topic: 'pr', server: 'u1' }), [users]);
    await server.start();
    const app = Fastify();
    try {
      await app.register(hermodGateway, {
        transport,
        prefix: '/rpc',
        authenticate: (request) =>
          request.headers['x-user'] === 'plain' ? ({ user: 'plain' } as never) : ({ user: 'odd', roles: 'superadmin' } as never),
        routes: [
          { topic: 'pr', method: 'get' },
          { topic: 'pr', method: 'ctx', roles: ['admin'] },
        ],
      });
      const plain = await app.inject({ method: 'POST', url: '/rpc/v1/pr/get', headers: { 'x-user': 'plain' }, payload: { id: 1 } });
      assert.is(plain.statusCode, 200, plain.body);
      const forbidden = await app.inject({ method: 'POST', url: '/rpc/v1/pr/ctx', headers: { 'x-user': 'plain' }, payload: {} });
      assert.is(forbidden.statusCode, 403, forbidden.body);
      const odd = await app.inject({ method: 'POST', url: '/rpc/v1/pr/ctx', headers: { 'x-user': 'odd' }, payload: {} });
      assert.equal([odd.statusCode, JSON.parse(odd.body).error.code], [500, 'HERMOD_ERR_INTERNAL'], odd.body);
      assert.is(users.seen.length, 1);
    } finally {
      await app.close();
      await server.stop();
      await server.wait(1000);
      await transport.close();
    }
  },
);

o(
  "contracts load within fastify's pluginTimeout: a broker that never answers leaves the routes without them, the application starts",
  async () => {
    // A port that takes the connection and never speaks AMQP.
    const accepted = new Set<net.Socket>();
    const silent = net.createServer((socket) => {
      accepted.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => accepted.delete(socket));
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as net.AddressInfo).port;
    const transport = await getTransport(`amqp://127.0.0.1:${port}/`, { config: defaultConfig() });
    const app = Fastify({ pluginTimeout: 3000 });
    const t0 = Date.now();
    try {
      await app.register(hermodGateway, { transport, prefix: '/rpc', contractTimeout: 2000, routes: [{ topic: 'x', method: 'y' }] });
      await app.ready();
      const took = Date.now() - t0;
      assert.ok(took < 3000, `ready in ${took} ms`);
      assert.is((await app.inject({ method: 'GET', url: '/rpc/healthz' })).statusCode, 200);
    } finally {
      await app.close();
      await transport.close();
      for (const s of accepted) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  },
);

o.run();
