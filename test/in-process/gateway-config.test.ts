import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createGateway, resolveGatewayConfig } from '../../src/gateway/index.js';
import { defaultConfig, getTransport, RPCServer, Target, type Transport } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { rejects, until } from '../support/assert.js';
import { harness, http, IN_PROCESS, Users, userRoutes } from './gateway-cases.js';

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
  await rejects(
    () => resolveGatewayConfig({ routes: [{ topic: 't' }] }),
    'HERMOD_ERR_CONFIG',
    /routes\[0\].*must have required property 'method'/,
  );
  await rejects(() => resolveGatewayConfig({ mappingPolicy: 'everything' }), 'HERMOD_ERR_CONFIG', /mappingPolicy/);
  await rejects(() => resolveGatewayConfig({ routes: [{ topic: 't', method: 'm', alias: 'FETCH /x' }] }), 'HERMOD_ERR_CONFIG', /alias/);
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
  await rejects(() => resolveGatewayConfig({ callTimeout: 9000, maxCallTimeout: 5000 }), 'HERMOD_ERR_CONFIG', /exceeds maxCallTimeout/);
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
});
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
      assert.is((await http(any.base, 'POST', '/v1/bad topic/x', {}, { 'x-test-user': '1' })).status, 404);
    } finally {
      await any.close();
      await declared.close();
      await b.stop();
    }
  });
  p.run();
}

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'hermod-gateway.js');
function start(args: string[]) {
  const child: ChildProcess = spawn(process.execPath, [bin, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, HERMOD_TRANSPORT_URL: undefined } as never,
  });
  const p = { child, out: '', err: '', exited: new Promise<number | null>((r) => child.once('exit', (code) => r(code))) };
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
  const dir = mkdtempSync(path.join(tmpdir(), 'hermod-gw-cli-'));
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
  const gw = start(['--config-file', file, '--port', '0', '--transport-url', url]);
  try {
    await until(() => /listening on (http:\/\/\S+)/.test(gw.out), 'the gateway to listen', 10_000);
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
cli('a misspelt key in the gateway file or its hermod section exits 2 naming it', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hermod-gw-cli-'));
  const file = path.join(dir, 'gw.json');
  writeFileSync(file, JSON.stringify({ routes: [], bodyLimt: 10 }));
  let p = start(['--config-file', file]);
  assert.is(await p.exited, 2);
  assert.match(p.err, /unknown gateway configuration key 'bodyLimt'.*did you mean 'bodyLimit'/);
  writeFileSync(file, JSON.stringify({ hermod: { rpc: { responseTimeot: 5 } } }));
  p = start(['--config-file', file]);
  assert.is(await p.exited, 2);
  assert.match(p.err, /unknown configuration key 'rpc\.responseTimeot'.*did you mean 'rpc\.responseTimeout'/);
});
cli.run();
