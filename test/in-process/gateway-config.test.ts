import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { alive } from '../../scripts/rabbit-node.js';
import { createGateway, readGatewayConfig, resolveGatewayConfig } from '../../src/gateway/index.js';
import { jobsKey } from '../../src/gateway/job-refs.js';
import { defaultConfig, getTransport, RPCServer, Target, type Transport } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { rejects, sleep, until } from '../support/assert.js';
import { scratchDir } from '../support/scratch.js';
import { harness, http, IN_PROCESS, type KeepAlive, keepAlive, keysFileFor, Users, userRoutes } from './gateway-cases.js';

// The gateway configuration: strict validation naming the key, the mapping policy, and the
// hermod-gateway bin reading it (a subprocess against the embedded router).

const c = suite<{ tr: Transport }>('gateway configuration', {} as never);
c.before(async (ctx) => {
  ctx.tr = await getTransport('memory://', { config: defaultConfig() });
});
c.after(async (ctx) => {
  await ctx.tr.close();
});

c('unknown keys are refused, naming the key and the nearest known one', async (ctx) => {
  await rejects(
    () => resolveGatewayConfig({ mapingPolicy: 'any' }),
    'HERMOD_ERR_CONFIG',
    /unknown gateway configuration key 'mapingPolicy'.*did you mean 'mappingPolicy'/,
  );
  await rejects(
    () => createGateway(ctx.tr, { routes: [{ topic: 't', method: 'm', rols: ['a'] } as never] }),
    'HERMOD_ERR_CONFIG',
    /unknown gateway configuration key 'routes\[0\]\.rols'.*did you mean 'roles'/,
  );
  // A misspelt required key is named as unknown, not reported as the key it lacks ("must have
  // required property 'windowMs'" before).
  await rejects(
    () => resolveGatewayConfig({ rateLimit: { max: 1, window: 5 } }),
    'HERMOD_ERR_CONFIG',
    /unknown gateway configuration key 'rateLimit\.window'.*did you mean 'windowMs'/,
  );
  await rejects(
    () => resolveGatewayConfig({ routes: [{ topic: 't', mthod: 'm' }] }),
    'HERMOD_ERR_CONFIG',
    /unknown gateway configuration key 'routes\[0\]\.mthod'.*did you mean 'method'/,
  );
  await rejects(
    () => resolveGatewayConfig({ routes: [{ topic: 't' }] }),
    'HERMOD_ERR_CONFIG',
    /routes\[0\].*must have required property 'method'/,
  );
  await rejects(() => resolveGatewayConfig({ mappingPolicy: 'everything' }), 'HERMOD_ERR_CONFIG', /mappingPolicy/);
  await rejects(() => resolveGatewayConfig({ routes: [{ topic: 't', method: 'm', alias: 'FETCH /x' }] }), 'HERMOD_ERR_CONFIG', /alias/);
  // The gateway's own paths, and two aliases the router cannot tell apart: refused here, named.
  // Before, an alias under /docs skipped authentication (and answered 500), and a collision
  // failed start() with fastify's raw FST_ERR_DUPLICATED_ROUTE (exit 1, not 2).
  for (const [alias, why] of [
    ['GET /docs/:id', /alias GET \/docs\/:id: \/docs is the gateway's own/],
    ['POST /healthz', /\/healthz is the gateway's own/],
    ['GET /readyz', /\/readyz is the gateway's own/],
    ['POST /jsonrpc', /\/jsonrpc is the gateway's own/],
    ['GET /v1/jobs/:ref', /\/v1\/jobs is the gateway's own/],
    // Before: accepted, and POST /v1/demo/add ran the alias's method instead of demo.add (the
    // router prefers the more static route), while /openapi.json still said demo.add.
    ['POST /v1/demo/:anything', /alias POST \/v1\/demo\/:anything is within the gateway's POST \/v1\/\{topic\}\/\{method\}/],
    ['POST /v1/demo/add', /is within the gateway's POST \/v1\/\{topic\}\/\{method\}/],
    ['POST /v1/:t/add', /is within the gateway's POST \/v1\/\{topic\}\/\{method\}/],
    ['POST /v1/demo/*', /is within the gateway's POST \/v1\/\{topic\}\/\{method\}/],
    ['POST /v1/:a/:b', /is within the gateway's POST \/v1\/\{topic\}\/\{method\}/],
  ] as const)
    await rejects(() => resolveGatewayConfig({ routes: [{ topic: 't', method: 'm', alias }] }), 'HERMOD_ERR_CONFIG', why);
  await rejects(
    () =>
      resolveGatewayConfig({
        routes: [
          { topic: 't', method: 'a', alias: 'GET /u/:id' },
          { topic: 't', method: 'b', alias: 'GET /u/:name' },
        ],
      }),
    'HERMOD_ERR_CONFIG',
    /routes\[1\].*alias GET \/u\/:name is the same route as routes\[0\]'s alias/,
  );
  // A path parameter the route's own schema refuses: every request was a 400, while
  // /openapi.json listed the path.
  const closed = { type: 'object', properties: { a: { type: 'number' } }, additionalProperties: false };
  for (const [alias, args, why] of [
    ['GET /a/:x', closed, /routes\[0\].*alias GET \/a\/:x: its path parameter x .*additionalProperties: false and no property x/],
    ['GET /a/:a/:x(^\\d+$)', closed, /its path parameter x /],
    ['DELETE /a/:lat-:lng', { ...closed, properties: { lat: {} } }, /its path parameter lng /],
    ['GET /files/*', closed, /its path parameter \* /],
    ['GET /a/:a', { type: 'object', properties: { a: false } }, /its path parameter a .*properties\.a: false/],
    ['GET /a/:xy', { type: 'object', patternProperties: { '^x': false }, additionalProperties: true }, /patternProperties \^x/],
  ] as const)
    await rejects(() => resolveGatewayConfig({ routes: [{ topic: 't', method: 'm', alias, args }] }), 'HERMOD_ERR_CONFIG', why);
  // A property, a pattern or an open schema takes the parameter.
  resolveGatewayConfig({
    routes: [
      { topic: 't', method: 'a', alias: 'GET /a/:a', args: closed },
      {
        topic: 't',
        method: 'b',
        alias: 'GET /b/:xy',
        args: { type: 'object', patternProperties: { '^x': {} }, additionalProperties: false },
      },
      { topic: 't', method: 'c', alias: 'GET /c/:x', args: { type: 'object', properties: { a: { type: 'number' } } } },
      { topic: 't', method: 'd', alias: 'GET /d/:x' },
      { topic: 't', method: 'e', alias: 'GET /e/::x', args: closed },
    ],
  });
  // Near misses are fine: another verb, a longer path, a static segment beside a parameter.
  resolveGatewayConfig({
    routes: [
      { topic: 't', method: 'a', alias: 'GET /u/:id' },
      { topic: 't', method: 'b', alias: 'DELETE /u/:id' },
      { topic: 't', method: 'c', alias: 'GET /u/me' },
      { topic: 't', method: 'd', alias: 'GET /docsearch' },
      { topic: 't', method: 'e', alias: 'GET /v1/users/:id' },
      { topic: 't', method: 'f', alias: 'POST /v1/users' },
      { topic: 't', method: 'g', alias: 'POST /v1/users/:id/avatar' },
    ],
  });
  await rejects(
    () =>
      resolveGatewayConfig({
        routes: [
          { topic: 't', method: 'm' },
          { topic: 'u', method: 'n', rpcName: 't.m' },
        ],
      }),
    'HERMOD_ERR_CONFIG',
    /t\.m is declared twice/,
  );
  // Accepted before, listed in /openapi.json, and answered -32601 (JSON-RPC's reserved rpc.* names).
  await rejects(
    () => resolveGatewayConfig({ routes: [{ topic: 't', method: 'add', rpcName: 'rpc.add' }] }),
    'HERMOD_ERR_CONFIG',
    /routes\[0\].*rpcName rpc\.add begins with "rpc\.", which JSON-RPC reserves/,
  );
  for (const topic of ['rpc', 'rpc.v2'])
    await rejects(
      () => resolveGatewayConfig({ routes: [{ topic, method: 'add' }] }),
      'HERMOD_ERR_CONFIG',
      new RegExp(
        `its JSON-RPC name ${topic.replace('.', '\\.')}\\.add begins with "rpc\\.", which JSON-RPC reserves; give the route an rpcName`,
      ),
    );
  resolveGatewayConfig({
    routes: [
      { topic: 'rpc', method: 'add', rpcName: 'add' },
      { topic: 'rpcx', method: 'add' },
    ],
  });
  await rejects(() => resolveGatewayConfig({ callTimeout: 9000, maxCallTimeout: 5000 }), 'HERMOD_ERR_CONFIG', /exceeds maxCallTimeout/);
  // A route's timeout likewise: it was accepted and cut to maxCallTimeout at every call, silently.
  await rejects(
    () =>
      resolveGatewayConfig({
        routes: [
          { topic: 't', method: 'a' },
          { topic: 't', method: 'sleep', timeout: 120_000 },
        ],
      }),
    'HERMOD_ERR_CONFIG',
    /routes\[1\].*timeout \(120000\) exceeds maxCallTimeout \(60000\)/,
  );
  await rejects(
    () => resolveGatewayConfig({ maxCallTimeout: 5000, callTimeout: 1000, routes: [{ topic: 't', method: 'm', timeout: 5001 }] }),
    'HERMOD_ERR_CONFIG',
    /routes\[0\].*timeout \(5001\) exceeds maxCallTimeout \(5000\)/,
  );
  resolveGatewayConfig({ maxCallTimeout: 120_000, routes: [{ topic: 't', method: 'sleep', timeout: 120_000 }] });
  await rejects(() => resolveGatewayConfig({ maxConnections: 0 }), 'HERMOD_ERR_CONFIG', /'maxConnections'.*must be >= 1/);
  await rejects(() => resolveGatewayConfig({ keepAliveTimeout: 'long' }), 'HERMOD_ERR_CONFIG', /'keepAliveTimeout'.*must be integer/);
  // Schemas are compiled strictly at creation: a typo in a schema is a configuration error, not a silent pass.
  await rejects(
    () => createGateway(ctx.tr, { routes: [{ topic: 't', method: 'm', args: { type: 'object', propertys: {} } }] }),
    'HERMOD_ERR_CONFIG',
    /routes\[0\]\.args is not a usable JSON Schema.*propertys/,
  );
  const d = resolveGatewayConfig({});
  assert.is(d.mappingPolicy, 'declared');
  assert.is(d.cors, undefined);
  assert.is(d.rateLimit, undefined);
  assert.is(d.exposeTracebacks, false);
  assert.is(d.maxConnections, 1000);
  assert.is(d.keepAliveTimeout, 72_000);
});
c("a relative auth.keysFile is read from the gateway file's directory, not the working directory", async () => {
  const dir = scratchDir('hermod-gw-keys-');
  const file = path.join(dir, 'gw.json');
  writeFileSync(file, JSON.stringify({ auth: { keysFile: 'keys.json', allowAnonymous: true } }));
  assert.equal(readGatewayConfig(file).auth, { keysFile: path.join(dir, 'keys.json'), allowAnonymous: true });
  writeFileSync(file, JSON.stringify({ auth: { keysFile: '/etc/hermod/keys.json' } }));
  assert.equal(readGatewayConfig(file).auth, { keysFile: '/etc/hermod/keys.json' });
  writeFileSync(file, JSON.stringify({ jobs: { keyFile: 'jobs.key' } }));
  assert.equal(readGatewayConfig(file).jobs, { keyFile: path.join(dir, 'jobs.key') });
});
c(
  'the jobs key: from the jobsKey option, jobs.keyFile or HERMOD_GATEWAY_JOBS_KEY; short or unreadable is a ConfigError naming it',
  async (ctx) => {
    const dir = scratchDir('hermod-gw-jobskey-');
    const good = 'k'.repeat(32);
    writeFileSync(path.join(dir, 'good.key'), `${good}\n`);
    writeFileSync(path.join(dir, 'short.key'), 'secret\n');
    const same = jobsKey({ keyFile: path.join(dir, 'good.key') });
    assert.equal(jobsKey({ text: good }), same, 'the file (trimmed) and the option give one key');
    assert.equal(jobsKey({ env: { HERMOD_GATEWAY_JOBS_KEY: good } }), same);
    assert.equal(jobsKey({ text: good, keyFile: path.join(dir, 'short.key') }), same, 'the option wins');
    assert.is(jobsKey({ env: {} }).length, 32);
    assert.not.equal(jobsKey({ env: {} }), jobsKey({ env: {} }), 'random without one');
    await rejects(
      () => jobsKey({ keyFile: path.join(dir, 'short.key') }),
      'HERMOD_ERR_CONFIG',
      /jobs\.keyFile .*short\.key holds 6 characters; a jobs key needs at least 32/,
    );
    await rejects(() => jobsKey({ keyFile: path.join(dir, 'none.key') }), 'HERMOD_ERR_CONFIG', /cannot read jobs\.keyFile .*none\.key/);
    await rejects(
      () => jobsKey({ env: { HERMOD_GATEWAY_JOBS_KEY: 'abc' } }),
      'HERMOD_ERR_CONFIG',
      /the HERMOD_GATEWAY_JOBS_KEY variable holds 3/,
    );
    await rejects(() => createGateway(ctx.tr, { jobsKey: 'abc' }), 'HERMOD_ERR_CONFIG', /the jobsKey option holds 3/);
    await rejects(
      () => createGateway(ctx.tr, { routes: [{ topic: 't', method: 'm', job: true, cast: true }] }),
      'HERMOD_ERR_CONFIG',
      /routes\[0\] \(from options\): a route is either a cast or a job/,
    );
    await rejects(
      () => createGateway(ctx.tr, { routes: [{ topic: 't', method: 'm', job: true, fanout: true }] }),
      'HERMOD_ERR_CONFIG',
      /routes\[0\] \(from options\): a job route takes no fanout casts/,
    );
    await rejects(
      () => createGateway(ctx.tr, { routes: [{ topic: 't', method: 'm', job: true }], jobs: { enabled: false } }),
      'HERMOD_ERR_CONFIG',
      /routes\[0\] \(from options\): job routes need jobs\.enabled/,
    );
    // Off: no key is needed, a bad file is not read.
    createGateway(ctx.tr, { jobs: { enabled: false, keyFile: path.join(dir, 'none.key') } });
  },
);
c.run();

for (const [name, broker] of IN_PROCESS) {
  const p = suite(`gateway mapping policy over ${name}`);
  p('"declared" (default) exposes only the routes; "any" reaches any topic.method, with anyRoles', async () => {
    const b = await broker();
    const declared = await harness(b.url, (topic) => ({ routes: [{ topic, method: 'get' }] }));
    const any = await harness(b.url, {
      mappingPolicy: 'any',
      routes: [],
      anyRoles: ['ops'],
      authenticate: (req) => (req.headers['x-test-user'] ? { user: 'x', roles: ['ops'] } : null),
      auth: { allowAnonymous: true },
    });
    try {
      assert.is((await http(declared.base, 'POST', `/v1/${declared.topic}/get`, { id: 1 })).status, 200);
      assert.is((await http(declared.base, 'POST', `/v1/${declared.topic}/text`, {})).status, 404);
      // The "any" gateway reaches the users service of the declared harness (same broker).
      assert.is((await http(any.base, 'POST', `/v1/${declared.topic}/text`, {})).status, 401, 'anyRoles need an identity');
      const ok = await http(any.base, 'POST', `/v1/${declared.topic}/text`, {}, { 'x-test-user': '1' });
      assert.equal([ok.status, ok.json], [200, { result: 'plain' }]);
      const j = await http(
        any.base,
        'POST',
        '/jsonrpc',
        { jsonrpc: '2.0', method: `${declared.topic}.text`, id: 1 },
        { 'x-test-user': '1' },
      );
      assert.is(j.json.result, 'plain');
      // A method name without a topic is not a call: before, "text" called method text on topic "tex".
      const bare = await http(any.base, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: 'text', id: 2 }, { 'x-test-user': '1' });
      assert.equal([bare.json.error?.code, bare.json.error?.message], [-32601, 'text is not exposed by this gateway']);
      assert.is((await http(any.base, 'POST', '/v1/bad topic/x', {}, { 'x-test-user': '1' })).status, 404);
    } finally {
      await any.close();
      await declared.close();
      await b.stop();
    }
  });
  p('"any" never reaches a declared route by another spelling of its queue (topic.server), which skipped its roles', async () => {
    const b = await broker();
    const gw = await harness(b.url, (topic) => ({
      mappingPolicy: 'any',
      routes: [{ topic, method: 'text', roles: ['admin'] }],
      authenticate: () => ({ user: 'reader', roles: ['reader'] }),
    }));
    try {
      const { topic } = gw;
      assert.is((await http(gw.base, 'POST', `/v1/${topic}/text`, {})).status, 403);
      assert.is((await http(gw.base, 'POST', `/v1/${topic}/text?server=u1`, {})).status, 403);
      // Before: 200 {"result":"plain"}, the server u1 of the declared topic, without the admin role.
      for (const [path, name] of [
        [`/v1/${topic}.u1/text`, `${topic}.u1.text`],
        [`/v1/${topic}.u1.x/text`, `${topic}.u1.x.text`],
      ]) {
        const r = await http(gw.base, 'POST', path!, {});
        assert.equal([r.status, r.json.error?.code], [404, 'HERMOD_ERR_NOT_EXPOSED'], path);
        assert.match(r.json.error?.message, `${name} reaches the servers of the declared route ${topic}.text`);
      }
      const j = await http(gw.base, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: `${topic}.u1.text`, id: 1 });
      assert.is(j.json.error?.code, -32601);
      // Other methods of the topic stay reachable under "any", as documented.
      assert.equal((await http(gw.base, 'POST', `/v1/${topic}/get?server=u1`, { id: 1 })).status, 200);
    } finally {
      await gw.close();
      await b.stop();
    }
  });
  p('the reserved hermod namespace is refused under "any" and on declared routes, unless a route declares it', async () => {
    const b = await broker();
    const gw = await harness(b.url, (topic) => ({
      mappingPolicy: 'any',
      anyRoles: ['ops'],
      routes: [
        { topic, method: 'get' },
        { topic, method: 'ping', namespace: 'hermod', version: '1.0', rpcName: 'ping' },
      ],
      authenticate: () => ({ user: 'op', roles: ['ops'] }),
    }));
    try {
      const { topic } = gw;
      // Before: 200 with the server's host and pid, every caller's job ids, and any job's state
      // or its cancellation by id, past the sealed references that keep users' jobs apart.
      for (const [path, body] of [
        [`/v1/${topic}/describe?namespace=hermod&server=u1`, {}],
        [`/v1/${topic}/jobs?namespace=hermod`, {}],
        [`/v1/${topic}/job_status?namespace=hermod&server=u1`, { job_id: 'x' }],
        [`/v1/${topic}/job_cancel?namespace=hermod&server=u1`, { job_id: 'x' }],
        // A declared route in another namespace is not moved into hermod's either.
        [`/v1/${topic}/get?namespace=hermod`, { id: 1 }],
      ] as const) {
        const r = await http(gw.base, 'POST', path, body);
        assert.equal([r.status, r.json.error?.code], [404, 'HERMOD_ERR_NOT_EXPOSED'], path);
        assert.match(r.json.error?.message, 'namespace hermod is reserved');
      }
      const h = await http(gw.base, 'POST', `/v1/${topic}/describe`, {}, { 'x-hermod-namespace': 'hermod' });
      assert.equal([h.status, h.json.error?.code], [404, 'HERMOD_ERR_NOT_EXPOSED']);
      const j = await http(gw.base, 'POST', '/jsonrpc?namespace=hermod', { jsonrpc: '2.0', method: `${topic}.describe`, id: 1 });
      assert.equal([j.json.error?.code, j.json.error?.data?.code], [-32601, 'HERMOD_ERR_NOT_EXPOSED']);
      // The operator's explicit route into it is served, and the rest of "any" still works.
      assert.is((await http(gw.base, 'POST', `/v1/${topic}/ping`, {})).json.result?.pong, true);
      assert.is((await http(gw.base, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: 'ping', id: 2 })).json.result?.pong, true);
      assert.equal((await http(gw.base, 'POST', `/v1/${topic}/text?server=u1`, {})).json, { result: 'plain' });
    } finally {
      await gw.close();
      await b.stop();
    }
  });
  p.run();
}

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'hermod-gateway.js');
function start(args: string[], env: Record<string, string> = {}) {
  const child: ChildProcess = spawn(process.execPath, [bin, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // The assertions read the plain log lines.
    env: {
      ...process.env,
      HERMOD_TRANSPORT_URL: undefined,
      HERMOD_LOG_JSON: undefined,
      HERMOD_GATEWAY_JOBS_KEY: undefined,
      ...env,
    } as never,
  });
  // 'close', not 'exit': every line written (workers' too, on the inherited pipes) has been read.
  const p = { child, out: '', err: '', exited: new Promise<number | null>((r) => child.once('close', (code) => r(code))) };
  child.stdout!.on('data', (d) => {
    p.out += d;
  });
  child.stderr!.on('data', (d) => {
    p.err += d;
  });
  return p;
}

const cli = suite('hermod-gateway (subprocess, embedded router)');
cli('serves the routes of --config-file, takes hermod options from its "hermod" section, stops on SIGTERM', async () => {
  const dir = scratchDir('hermod-gw-cli-');
  const router = new Router({ port: 0 });
  const port = await router.start();
  const url = `amqp://127.0.0.1:${port}/`;
  const topic = `cli-${process.pid}`;
  const st = await getTransport(url, { config: defaultConfig() });
  const server = new RPCServer(st, new Target({ topic, server: 'u1' }), [new Users()]);
  await server.start();
  const file = path.join(dir, 'gw.json');
  writeFileSync(
    file,
    JSON.stringify({
      listen: { port: 8080 },
      routes: userRoutes(topic),
      hermod: { rpc: { responseTimeout: 4000 }, log: { level: 'info' } },
    }),
  );
  // A second file laid on the first key by key, into its sections: its `auth` adds to the
  // first file's (a shallow merge dropped keysFile, and with it authentication), its `listen`
  // keeps the first file's host.
  const { file: keysFile, keys } = keysFileFor([{ id: 'ops', roles: ['ops'] }]);
  const base1 = path.join(dir, 'base.json');
  writeFileSync(base1, JSON.stringify({ listen: { host: '127.0.0.1', port: 8080 }, auth: { keysFile }, routes: userRoutes(topic) }));
  const over = path.join(dir, 'over.json');
  writeFileSync(over, JSON.stringify({ auth: { allowAnonymous: false }, listen: { port: 0 } }));
  const two = start(['--config-file', base1, '--config-file', over, '--transport-url', url]);
  try {
    await until(() => /listening on (http:\/\/\S+)/.test(two.out), `the gateway of two files to listen (${two.err})`, 30_000);
    const at = /listening on (http:\/\/\S+)/.exec(two.out)![1]!;
    assert.match(at, /^http:\/\/127\.0\.0\.1:\d+$/);
    const anonymous = await http(at, 'GET', '/users/3');
    assert.is(anonymous.status, 401, 'no key, no call');
    const wrong = await http(at, 'GET', '/users/3', undefined, { authorization: 'Bearer nope' });
    assert.is(wrong.status, 401);
    const ok = await http(at, 'GET', '/users/3', undefined, { authorization: `Bearer ${keys.ops}` });
    assert.equal([ok.status, ok.json.result.name], [200, 'user-3']);
  } finally {
    two.child.kill('SIGTERM');
    await two.exited;
  }
  const gw = start(['--config-file', file, '--port', '0', '--transport-url', url]);
  try {
    await until(() => /listening on (http:\/\/\S+)/.test(gw.out), 'the gateway to listen', 30_000);
    const base = /listening on (http:\/\/\S+)/.exec(gw.out)![1]!;
    const r = await http(base, 'GET', '/users/3');
    assert.equal([r.status, r.json.result.name], [200, 'user-3']);
    const j = await http(base, 'POST', '/jsonrpc', [
      { jsonrpc: '2.0', method: 'getUser', params: { id: 1 }, id: 1 },
      { jsonrpc: '2.0', method: `${topic}.fail`, params: { message: 'x' }, id: 2 },
    ]);
    assert.is(j.json.length, 2);
    gw.child.kill('SIGTERM');
    assert.is(await gw.exited, 0);
    assert.match(gw.out, /stopped/);
  } finally {
    if (gw.child.exitCode === null) gw.child.kill('SIGKILL');
    await server.stop();
    await server.wait(500);
    await st.close();
    await router.stop();
  }
});
/** Established TCP connections to local `port` held by process `pid` (its socket inodes matched against /proc/net/tcp). */
function connectionsOf(pid: number, port: number): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  let n = 0;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 9 && Number.parseInt(f[1]!.split(':')[1]!, 16) === port && f[3] === '01' && inodes.has(f[9]!)) n++;
  }
  return n;
}

/** One HTTP exchange on a connection of its own (so that node:cluster may hand it to either worker). */
function once(base: string, method: string, url: string, body?: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = request(
      `${base}${url}`,
      { method, agent: false, headers: { ...headers, ...(body ? { 'content-type': 'application/json' } : {}) } },
      (res) => {
        let text = '';
        res.on('data', (d) => {
          text += d;
        });
        res.on('end', () => resolve({ status: res.statusCode!, text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

cli('--workers 2: both workers answer on the one port, a killed worker is replaced, SIGTERM stops them all', async () => {
  const dir = scratchDir('hermod-gw-cli-');
  const router = new Router({ port: 0 });
  const port = await router.start();
  const url = `amqp://127.0.0.1:${port}/`;
  const topic = `workers-${process.pid}`;
  const st = await getTransport(url, { config: defaultConfig() });
  const server = new RPCServer(st, new Target({ topic, server: 'u1' }), [new Users()]);
  await server.start();
  const file = path.join(dir, 'gw.json');
  const { file: keysFile, keys } = keysFileFor([{ id: 'ops', roles: [] }]);
  writeFileSync(
    file,
    JSON.stringify({ routes: userRoutes(topic), auth: { keysFile, allowAnonymous: true }, hermod: { log: { level: 'info' } } }),
  );
  const gw = start(['--config-file', file, '--port', '0', '--transport-url', url, '--workers', '2']);
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  const get = (base: string, id: number) =>
    new Promise<{ status: number; body: { result?: { name: string } } }>((resolve, reject) => {
      const req = request(`${base}/users/${id}`, { agent }, (res) => {
        let text = '';
        res.on('data', (d) => {
          text += d;
        });
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
      });
      req.on('error', reject);
      req.end();
    });
  const pids = () => [...gw.out.matchAll(/worker (\d) started \(pid (\d+)\)/g)].map((m) => ({ n: Number(m[1]), pid: Number(m[2]) }));
  try {
    // Two processes loading fastify and connecting on a loaded 2-core machine: once over 15 s in CI.
    await until(() => (gw.out.match(/listening on http/g) ?? []).length === 2, `both workers to listen (${gw.out}${gw.err})`, 40_000);
    const base = /listening on (http:\/\/\S+)/.exec(gw.out)![1]!;
    const gwPort = Number(new URL(base).port);
    const answers = await Promise.all(Array.from({ length: 32 }, (_, i) => get(base, i + 1)));
    assert.equal(
      answers.map((a) => [a.status, a.body.result?.name ?? JSON.stringify(a.body)]),
      answers.map((_, i) => [200, `user-${i + 1}`]),
    );
    // The primary hands each accepted connection to a worker that is free for it (round-robin
    // among the free ones, so not always 4 and 4): all 8 keep-alive connections, both workers.
    const [w1, w2] = pids();
    assert.equal([w1!.n, w2!.n].sort(), [1, 2]);
    const held = [connectionsOf(w1!.pid, gwPort), connectionsOf(w2!.pid, gwPort)];
    assert.is(held[0]! + held[1]!, 8, String(held));
    assert.ok(held[0]! > 0 && held[1]! > 0, `connections per worker: ${held}`);
    // A job started through one worker is read through any: the workers seal job references
    // with the one key the primary made for the run. Each poll on a connection of its own.
    const started = await once(base, 'POST', `/v1/${topic}/sleep`, '{"ms":10}', { prefer: 'respond-async' });
    assert.is(started.status, 202, started.text);
    const jobUrl = JSON.parse(started.text).href as string;
    const polls = await Promise.all(Array.from({ length: 8 }, () => once(base, 'GET', `${jobUrl}?wait=5`)));
    assert.equal(
      polls.map((p) => [p.status, JSON.parse(p.text).result]),
      Array(8).fill([200, 10]),
    );

    agent.destroy();
    // The replacement serves the configuration the primary read at start, not the file as it is
    // on disk now (half written by an editor): before, it re-read it and failed at every restart.
    writeFileSync(file, '{ "routes": [ { "topic": ');
    writeFileSync(keysFile, '{ "keys": [ { "id": "op');
    process.kill(w1!.pid, 'SIGKILL');
    // Logged at error level, so on stderr.
    await until(() => /worker \d \(pid \d+\) died \(signal SIGKILL\)/.test(gw.err), 'the crash to be logged', 10_000);
    await until(() => pids().length === 3 && (gw.out.match(/listening on http/g) ?? []).length === 3, 'a replacement to listen', 15_000);
    const again = await Promise.all(Array.from({ length: 8 }, (_, i) => get(base, 100 + i)));
    assert.equal(
      again.map((a) => a.status),
      Array(8).fill(200),
    );
    // The replacement has the run's key too.
    const later = await Promise.all(Array.from({ length: 8 }, () => once(base, 'GET', jobUrl)));
    assert.equal(
      later.map((p) => p.status),
      Array(8).fill(200),
    );
    // And the API keys the run started with, on every worker.
    const keyed = await Promise.all(
      Array.from({ length: 8 }, () => once(base, 'GET', '/users/1', undefined, { authorization: `Bearer ${keys.ops}` })),
    );
    assert.equal(
      keyed.map((p) => p.status),
      Array(8).fill(200),
    );

    gw.child.kill('SIGTERM');
    assert.is(await gw.exited, 0);
    for (const { pid } of pids().slice(1)) assert.not.ok(alive(pid), `worker pid ${pid} still alive after the primary exited`);
    assert.is((gw.out.match(/hermod-gateway worker \d: stopped/g) ?? []).length, 2, gw.out);
  } finally {
    agent.destroy();
    if (gw.child.exitCode === null) gw.child.kill('SIGKILL');
    for (const { pid } of pids()) if (alive(pid)) process.kill(pid, 'SIGKILL');
    await server.stop();
    await server.wait(500);
    await st.close();
    await router.stop();
  }
});
cli('--workers takes a whole number from 1 or max, else exits 2', async () => {
  for (const bad of ['0', 'two', '1.5']) {
    const p = start(['--workers', bad]);
    assert.is(await p.exited, 2, bad);
    assert.match(p.err, /--workers: must be a whole number from 1 to 256 or "max"/);
  }
});
cli('--metrics-port: Prometheus text of the gateway (with --workers, every worker summed); a bad address exits 2', async () => {
  const bad = start(['--metrics-port', 'nine']);
  assert.is(await bad.exited, 2);
  assert.match(bad.err, /--metrics-port wants \[host:\]port, got "nine"/);
  for (const workers of ['1', '2']) {
    const p = start(['--port', '0', '--transport-url', 'memory://', '--metrics-port', '0', '--workers', workers, '--log-level', 'info']);
    try {
      await until(
        () => (p.out.match(/listening on http/g) ?? []).length === Number(workers),
        `the gateway listening (${p.out}${p.err})`,
        15_000,
      );
      const base = /listening on (http:\/\/\S+)/.exec(p.out)![1]!;
      const scrape = /metrics (?:of all workers )?at (http:\/\/\S+)/.exec(p.out)![1]!;
      // A connection each, so that the primary hands them to both workers.
      const answers = await Promise.all(Array.from({ length: 6 }, () => once(base, 'GET', '/healthz')));
      assert.equal(
        answers.map((a) => a.status),
        Array(6).fill(200),
      );
      const text = await (await fetch(scrape)).text();
      assert.match(text, /^hermod_gateway_requests_total\{route="\/healthz",method="GET",status="200"\} 6$/m, text.slice(0, 2000));
      assert.match(text, /^hermod_gateway_request_seconds_count\{route="\/healthz",method="GET"\} 6$/m);
      p.child.kill('SIGTERM');
      assert.is(await p.exited, 0, p.err);
    } finally {
      if (p.child.exitCode === null) p.child.kill('SIGKILL');
    }
  }
});
cli('accessLog: one bounded line per request at info (off by default)', async () => {
  const dir = scratchDir('hermod-gw-cli-');
  const file = path.join(dir, 'gw.json');
  for (const accessLog of [true, false]) {
    writeFileSync(file, JSON.stringify({ accessLog }));
    const p = start(['--config-file', file, '--port', '0', '--transport-url', 'memory://']);
    try {
      await until(() => /listening on http/.test(p.out), `the gateway listening (${p.out}${p.err})`, 15_000);
      const base = /listening on (http:\/\/\S+)/.exec(p.out)![1]!;
      assert.is((await once(base, 'GET', '/healthz', undefined, { 'x-request-id': 'abc-1' })).status, 200);
      assert.is((await once(base, 'GET', `/no/${'x'.repeat(5000)}?q=1`)).status, 404);
      if (accessLog) {
        await until(() => /GET \/no\//.test(p.out), 'the second line');
        assert.match(p.out, /INFO {2}hermod-gateway: GET \/healthz 200 [\d.]+ ms abc-1 127\.0\.0\.1\n/);
        const line = p.out.split('\n').find((l) => l.includes('GET /no/'))!;
        assert.match(line, / 404 [\d.]+ ms req-[0-9a-f-]{36} 127\.0\.0\.1$/);
        assert.ok(line.length < 500, `the 5,000-character path is cut (${line.length})`);
      }
      p.child.kill('SIGTERM');
      assert.is(await p.exited, 0, p.err);
      if (!accessLog) assert.not.match(p.out, /GET \/healthz/);
    } finally {
      if (p.child.exitCode === null) p.child.kill('SIGKILL');
    }
  }
});
cli('--shutdown-timeout takes seconds from 0, else exits 2', async () => {
  for (const bad of ['-1', 'soon', '']) {
    const p = start(['--shutdown-timeout', bad, '--port', '0', '--transport-url', 'memory://']);
    assert.is(await p.exited, 2, bad);
    assert.match(p.err, /--shutdown-timeout must be a number of seconds from 0/);
  }
});
cli('--workers 2: an unusable route schema exits 2 before any worker starts', async () => {
  const dir = scratchDir('hermod-gw-cli-');
  const file = path.join(dir, 'gw.json');
  writeFileSync(file, JSON.stringify({ routes: [{ topic: 't', method: 'm', args: { type: 'nope' } }] }));
  const p = start(['--config-file', file, '--port', '0', '--workers', '2', '--transport-url', 'memory://']);
  assert.is(await p.exited, 2);
  assert.match(p.err, /routes\[0\]\.args is not a usable JSON Schema/);
  assert.not.match(p.out, /worker \d started/);
});
cli('a route timeout above maxCallTimeout exits 2 naming the route, before anything listens', async () => {
  const dir = scratchDir('hermod-gw-cli-');
  const file = path.join(dir, 'gw.json');
  // Before: it started, and a 65 s call to the route got 504 at 60 000 ms.
  writeFileSync(
    file,
    JSON.stringify({
      routes: [
        { topic: 'demo', method: 'add' },
        { topic: 'demo', method: 'sleep', timeout: 120_000 },
      ],
    }),
  );
  const p = start(['--config-file', file, '--port', '0', '--transport-url', 'memory://']);
  // Bounded: without the check the gateway starts and would run on.
  const guard = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
  try {
    assert.is(await p.exited, 2, p.err);
  } finally {
    clearTimeout(guard);
  }
  assert.match(p.err, /routes\[1\] \(from .*gw\.json\): timeout \(120000\) exceeds maxCallTimeout \(60000\)/);
  assert.not.match(p.out, /listening on/);
});
cli('an alias whose path parameter its own args schema refuses exits 2 naming the route', async () => {
  const dir = scratchDir('hermod-gw-cli-');
  const file = path.join(dir, 'gw.json');
  // Before: it started, listed /a/{x} in /openapi.json, and answered every request 400.
  const args = { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } }, additionalProperties: false };
  writeFileSync(file, JSON.stringify({ routes: [{ topic: 'demo', method: 'add', alias: 'GET /a/:x', args }] }));
  const p = start(['--config-file', file, '--port', '0', '--transport-url', 'memory://']);
  const guard = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
  try {
    assert.is(await p.exited, 2, p.err);
  } finally {
    clearTimeout(guard);
  }
  assert.match(p.err, /routes\[0\] \(from .*gw\.json\): alias GET \/a\/:x: its path parameter x is an argument the route refuses/);
  assert.not.match(p.out, /listening on/);
});
cli('--workers 2: a port already taken ends the run with the worker exit status instead of restarting it', async () => {
  const taken = createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  const port = (taken.address() as AddressInfo).port;
  const p = start(['--port', String(port), '--workers', '2', '--transport-url', 'memory://']);
  let timer: NodeJS.Timeout | undefined;
  try {
    // A regression would restart the worker forever: bound the wait instead of the suite's.
    const code = await Promise.race([
      p.exited,
      new Promise<string>((r) => (timer = setTimeout(() => r('still running after 20 s'), 20_000))),
    ]);
    // The worker's own status (EADDRINUSE is no usage error: 1), carried to the primary's exit.
    assert.is(code, 1);
    assert.match(p.err, /cannot listen on 127\.0\.0\.1:\d+: the port is in use \(EADDRINUSE\); use --port/);
    assert.match(p.err, /before any worker listened; stopping/);
    // Not restarted, and not said to be.
    assert.not.match(p.err + p.out, /restarting in/);
    // Neither the first worker nor a replacement got to listen.
    assert.not.match(p.out, /listening on http/);
  } finally {
    clearTimeout(timer);
    if (p.child.exitCode === null) p.child.kill('SIGKILL');
    await new Promise((r) => taken.close(r));
  }
});
cli('--workers 2: SIGTERM while the workers still load their modules stops them at once, nothing killed', async () => {
  const p = start(['--port', '0', '--workers', '2', '--transport-url', 'memory://', '--shutdown-timeout', '30', '--log-level', 'info']);
  const pids = () => [...p.out.matchAll(/worker \d started \(pid (\d+)\)/g)].map((m) => Number(m[1]));
  try {
    // 'started' is node:cluster's online event: the worker process runs, its modules not loaded yet.
    await until(() => pids().length >= 1, 'a worker process to be up', 10_000);
    const t0 = Date.now();
    p.child.kill('SIGTERM');
    const code = await p.exited;
    const took = Date.now() - t0;
    // A stop request sent before a worker listened for it used to be lost: the primary waited
    // out the deadline (30 s + 1.5 s), killed the workers and exited 7. Loading the modules
    // takes a second or two on a busy machine; the bound leaves room for that.
    assert.is(code, 0, `${p.out}\n${p.err}`);
    assert.ok(took < 15_000, `stopped after ${took} ms:\n${p.out}\n${p.err}`);
    assert.not.match(p.err, /did not exit by the deadline/);
    // Seconds, as every bin's --shutdown-timeout (it took milliseconds here alone).
    assert.match(p.out + p.err, /deadline of each on stop 30 s/);
    for (const pid of pids()) assert.not.ok(alive(pid), `worker pid ${pid} still alive`);
  } finally {
    if (p.child.exitCode === null) p.child.kill('SIGKILL');
    for (const pid of pids()) if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
});
/** hermod-gateway --workers 2 in front of a server whose `sleep` calls are counted as they start. */
async function sleepyWorkers(tag: string) {
  const router = new Router({ port: 0 });
  const port = await router.start();
  const url = `amqp://127.0.0.1:${port}/`;
  const topic = `${tag}-${process.pid}`;
  const st = await getTransport(url, { config: defaultConfig() });
  class Counted extends Users {
    sleeping = 0;
    override async sleep(ctx: Parameters<Users['sleep']>[0], args: { ms: number }) {
      this.sleeping++;
      return super.sleep(ctx, args);
    }
  }
  const users = new Counted();
  const server = new RPCServer(st, new Target({ topic, server: 'u1' }), [users]);
  await server.start();
  const dir = scratchDir('hermod-gw-cli-');
  const file = path.join(dir, 'gw.json');
  writeFileSync(file, JSON.stringify({ routes: userRoutes(topic), hermod: { log: { level: 'info' } } }));
  const gw = start(['--config-file', file, '--port', '0', '--transport-url', url, '--workers', '2']);
  const pids = () => [...gw.out.matchAll(/worker \d started \(pid (\d+)\)/g)].map((m) => Number(m[1]));
  return {
    gw,
    users,
    pids,
    /** Once both workers listen: a 1.5 s call through the gateway, resolved when it runs on the server. */
    async sleeping() {
      // Two processes loading fastify and connecting on a loaded 2-core machine: once over 15 s in CI.
      await until(() => (gw.out.match(/listening on http/g) ?? []).length === 2, `both workers to listen (${gw.out}${gw.err})`, 40_000);
      const base = /listening on (http:\/\/\S+)/.exec(gw.out)![1]!;
      const call = http(base, 'POST', `/v1/${topic}/sleep`, { ms: 1500 });
      await until(() => users.sleeping === 1, 'the call to reach the server', 5000);
      return call;
    },
    async close() {
      if (gw.child.exitCode === null) gw.child.kill('SIGKILL');
      for (const pid of pids()) if (alive(pid)) process.kill(pid, 'SIGKILL');
      await server.stop();
      await server.wait(500);
      await st.close();
      await router.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
cli('--workers 2: a killed primary lets the workers finish the calls they run, then they exit', async () => {
  const w = await sleepyWorkers('orphan');
  try {
    const call = await w.sleeping();
    process.kill(w.gw.child.pid!, 'SIGKILL');
    // node:cluster's own handler would exit the worker at once (status 0), cutting the call.
    const r = await call;
    assert.equal([r.status, r.json.result], [200, 1500]);
    await until(() => w.pids().every((pid) => !alive(pid)), 'the workers to exit', 10_000);
    assert.match(w.gw.out, /the primary is gone/);
  } finally {
    await w.close();
  }
});
cli('--workers 2: Ctrl-C (SIGINT to the primary and each worker, as a terminal sends it) drains, nothing aborted', async () => {
  const w = await sleepyWorkers('ctrl-c');
  try {
    const call = await w.sleeping();
    w.gw.child.kill('SIGINT');
    await until(() => (w.gw.out.match(/asked by the primary/g) ?? []).length === 2, 'both workers asked to stop', 5000);
    // The group's signal after the primary's request: taken as a second signal, it cut the call.
    // The worker without the call may be gone already (at load it exited before this line).
    let signalled = 0;
    for (const pid of w.pids()) {
      try {
        process.kill(pid, 'SIGINT');
        signalled++;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
    assert.ok(signalled >= 1, 'the worker with the call still ran');
    const r = await call;
    assert.equal([r.status, r.json.result], [200, 1500]);
    assert.is(await w.gw.exited, 0, w.gw.err);
    assert.not.match(w.gw.out + w.gw.err, /again/);
  } finally {
    await w.close();
  }
});
cli('a jobs key that cannot be used exits 2 naming it, before any worker starts', async () => {
  const dir = scratchDir('hermod-gw-cli-');
  const file = path.join(dir, 'gw.json');
  writeFileSync(file, JSON.stringify({ jobs: { keyFile: 'missing.key' } }));
  let p = start(['--config-file', file, '--port', '0', '--workers', '2', '--transport-url', 'memory://']);
  assert.is(await p.exited, 2);
  assert.match(p.err, /cannot read jobs\.keyFile \S*missing\.key/);
  assert.not.match(p.out, /worker \d started/);
  p = start(['--port', '0', '--transport-url', 'memory://'], { HERMOD_GATEWAY_JOBS_KEY: 'short' });
  assert.is(await p.exited, 2);
  assert.match(p.err, /HERMOD_GATEWAY_JOBS_KEY variable holds 5 characters/);
});
cli(
  'repeated --config-file: each file is checked alone for its keys, the merge for what spans keys (exit 2 naming the files)',
  async () => {
    const dir = scratchDir('hermod-gw-cli-');
    const a = path.join(dir, 'a.json');
    const b = path.join(dir, 'b.json');
    writeFileSync(a, JSON.stringify({ maxBatch: 10, rateLimit: { max: 100 } }));
    writeFileSync(b, JSON.stringify({ maxInFlightPerClient: 50, rateLimit: { windowMs: 60_000 } }));
    // Before: b.json alone was "maxInFlightPerClient (50) is below maxBatch (100)" (the default),
    // and a.json alone "must have required property 'windowMs'": exit 2 for a valid configuration.
    assert.equal(readGatewayConfig(b), { maxInFlightPerClient: 50, rateLimit: { windowMs: 60_000 } });
    const both = ['--config-file', a, '--config-file', b, '--port', '0', '--transport-url', 'memory://'];
    const gw = start(both);
    try {
      await until(() => /listening on http/.test(gw.out), `the gateway of two files to listen (${gw.err})`, 30_000);
    } finally {
      gw.child.kill('SIGTERM');
      await gw.exited;
    }
    writeFileSync(a, JSON.stringify({ maxBatch: 100, rateLimit: { max: 100 } }));
    let p = start(both);
    assert.is(await p.exited, 2);
    assert.match(p.err, `maxInFlightPerClient (50) is below maxBatch (100)`);
    assert.match(p.err, `(from files ${a}, ${b})`);
    writeFileSync(a, JSON.stringify({ rateLimit: { max: 100 } }));
    p = start(['--config-file', a, '--port', '0', '--transport-url', 'memory://']);
    assert.is(await p.exited, 2);
    assert.match(p.err, `invalid gateway configuration at 'rateLimit' (from file ${a}): must have required property 'windowMs'`);
  },
);
cli('a misspelt key in the gateway file or its hermod section exits 2 naming it', async () => {
  const dir = scratchDir('hermod-gw-cli-');
  const file = path.join(dir, 'gw.json');
  writeFileSync(file, JSON.stringify({ routes: [], bodyLimt: 10 }));
  let p = start(['--config-file', file]);
  assert.is(await p.exited, 2);
  assert.match(p.err, /unknown gateway configuration key 'bodyLimt'.*did you mean 'bodyLimit'/);
  writeFileSync(file, JSON.stringify({ hermod: { rpc: { responseTimeot: 5 } } }));
  p = start(['--config-file', file]);
  assert.is(await p.exited, 2);
  assert.match(p.err, /unknown configuration key 'rpc\.responseTimeot'.*did you mean 'rpc\.responseTimeout'/);
  // A bad value there names the file's section (it said "from defaults").
  writeFileSync(file, JSON.stringify({ hermod: { rpc: { responseTimeout: 'soon' } } }));
  p = start(['--config-file', file]);
  assert.is(await p.exited, 2);
  assert.match(p.err, /invalid value for rpc\.responseTimeout \(from file \S*gw\.json, section hermod\)/);
  // Dotted and nested at once: the last silently won.
  writeFileSync(file, JSON.stringify({ hermod: { rpc: { retry: 1 }, 'rpc.retry': 2 } }));
  p = start(['--config-file', file]);
  assert.is(await p.exited, 2);
  assert.match(p.err, /configuration key rpc\.retry is given twice in file \S*gw\.json, section hermod \(dotted and nested\)/);
});
cli('maxConnections from the file: refused at once, logged at once, the rest of a burst at the end of 10 s; SIGTERM exits 0', async () => {
  const dir = scratchDir('hermod-gw-cli-');
  const file = path.join(dir, 'gw.json');
  writeFileSync(file, JSON.stringify({ maxConnections: 1 }));
  const gw = start(['--config-file', file, '--port', '0', '--transport-url', 'memory://']);
  const held: KeepAlive[] = [];
  try {
    await until(() => /listening on http:\/\/127\.0\.0\.1:(\d+)/.test(gw.out), 'the gateway to listen', 30_000);
    const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(gw.out)![1]);
    // Sent nothing yet, so not idle: it cannot be closed to make room.
    const first = await keepAlive(port);
    held.push(first);
    for (let i = 0; i < 3; i++) {
      const over = await keepAlive(port);
      held.push(over);
      assert.is(await over.get('/healthz'), '', `connection ${i + 2} closed unanswered`);
    }
    await until(() => /refused/.test(gw.err), 'the refusal logged');
    assert.match(
      gw.err,
      /WARN .*refused 1 connection\(s\) since the last such line \(1 in all\), the last from 127\.0\.0\.1: 1 open \(maxConnections\)/,
    );
    assert.is(gw.err.match(/refused \d+ connection/g)?.length, 1, 'one line for the burst');
    assert.match(await first.get('/healthz'), /^HTTP\/1\.1 200 /, 'the admitted connection still served');
    // The rest of the burst at the end of the 10 s interval, with no refusal to bring it. Before:
    // only when a next refusal came, however much later.
    await until(() => /refused 2 connection/.test(gw.err), 'the rest of the burst logged', 25_000);
    assert.match(gw.err, /WARN .*refused 2 connection\(s\) since the last such line \(3 in all\)/);
    // One more within the next interval, then a stop: its line is written at the stop, not lost.
    // `first` is idle now (for a second): a newcomer takes its place, and the one after it is refused.
    await sleep(1100);
    const taker = await keepAlive(port);
    held.push(taker);
    await first.closed;
    const late = await keepAlive(port);
    held.push(late);
    assert.is(await late.get('/healthz'), '', 'the late connection closed unanswered');
    gw.child.kill('SIGTERM');
    assert.is(await gw.exited, 0, gw.err);
    assert.match(gw.err, /WARN .*refused 1 connection\(s\) since the last such line \(4 in all\)/);
    assert.is(gw.err.match(/refused \d+ connection/g)?.length, 3, gw.err);
  } finally {
    for (const c of held) c.socket.destroy();
    if (gw.child.exitCode === null) gw.child.kill('SIGKILL');
  }
});
cli.run();
