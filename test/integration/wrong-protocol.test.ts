// A client that reaches a peer of the other AMQP version says so, at once, and does not retry
// (issue #13, "Both quick starts use port 5672"); a refused login fails at once with
// AccessRefused (issue #12). Against the real embedded router and a real RabbitMQ node
// (3.x without its AMQP 1.0 plugin).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RabbitNode } from '../../scripts/rabbit-node.js';
import { applyOverrides, type ConfigValues } from '../../src/config/index.js';
import { probeProtocol, versionOfHeader } from '../../src/driver/protocol-probe.js';
import {
  AccessRefused,
  ConfigError,
  defaultConfig,
  getTransport,
  Router,
  RPCClient,
  RPCServer,
  Target,
  type Transport,
  TransportError,
  WrongProtocol,
} from '../../src/index.js';
import { setPassword } from '../../src/router/users.js';
import { rejects, sleep } from '../support/assert.js';
import { silentPeer } from '../support/slow-proxy.js';

interface Ctx {
  node: RabbitNode;
  vhost: string;
  router: Router;
  routerPort: number;
  transports: Transport[];
}
const t = suite<Ctx>('the other AMQP version, and refused logins', {} as Ctx);

t.before(async (ctx) => {
  ctx.node = await RabbitNode.shared();
  ctx.vhost = await ctx.node.addVhost(`wrong-protocol-${process.pid}`);
  ctx.router = new Router({ port: 0 });
  ctx.routerPort = await ctx.router.start();
});
t.after(async (ctx) => {
  await ctx.router.stop();
  await ctx.node.deleteVhost(ctx.vhost);
  await ctx.node.release();
});
t.before.each((ctx) => {
  ctx.transports = [];
});
t.after.each(async (ctx) => {
  for (const tr of ctx.transports) await tr.close();
});

/** Fast reconnect settings, so that a retry storm would show within a second. */
const FAST: ConfigValues = {
  'rabbit.retryInterval': 20,
  'rabbit.intervalMax': 5000,
  'amqp1.retryInterval': 20,
  'amqp1.intervalMax': 5000,
};

async function transport(ctx: Ctx, url: string, overrides: ConfigValues = {}): Promise<{ tr: Transport; attempts: () => number }> {
  const tr = await getTransport(url, { config: applyOverrides(defaultConfig(), { ...FAST, ...overrides }) });
  ctx.transports.push(tr);
  let attempts = 0;
  tr.driver.on('state', (s: { state: string }) => {
    if (s.state === 'reconnecting') attempts++;
  });
  return { tr, attempts: () => attempts };
}

t('the probe reads what each peer speaks', async (ctx) => {
  assert.is(await probeProtocol({ hostname: '127.0.0.1', port: ctx.routerPort }, 2000), 'AMQP 1.0');
  assert.is(await probeProtocol({ hostname: '127.0.0.1', port: ctx.node.port }, 2000), 'AMQP 0-9-1');
  assert.is(versionOfHeader(Buffer.from('AMQP\x00\x01\x00\x00', 'latin1')), 'AMQP 1.0');
  assert.is(versionOfHeader(Buffer.from('AMQP\x01\x01\x00\x09', 'latin1')), 'AMQP 0-9-1');
  assert.is(versionOfHeader(Buffer.from('AMQP\x01\x01\x08\x00', 'latin1')), 'AMQP 0-9-1');
  assert.is(versionOfHeader(Buffer.from('AMQP\x00\x00\x09\x01', 'latin1')), 'AMQP 0-9-1');
  assert.is(versionOfHeader(Buffer.from('HTTP/1.1', 'latin1')), undefined);
});

t('rabbit:// to the router: WrongProtocol naming amqp://, every waiting call at once, no storm', async (ctx) => {
  const where = `127.0.0.1:${ctx.routerPort}`;
  const { tr, attempts } = await transport(ctx, `rabbit://guest:guest@${where}/`);
  const client = new RPCClient(tr, new Target({ topic: 'x' }), { timeout: 30_000 });
  const t0 = Date.now();
  const results = await Promise.allSettled([1, 2, 3].map((i) => client.call({}, 'echo', { i })));
  const elapsed = Date.now() - t0;
  assert.ok(elapsed < 3000, `failed after ${elapsed} ms`);
  for (const r of results) {
    assert.is(r.status, 'rejected');
    const err = (r as PromiseRejectedResult).reason as WrongProtocol;
    assert.is(err.code, 'HERMOD_ERR_WRONG_PROTOCOL');
    assert.ok(err instanceof WrongProtocol && err instanceof ConfigError, 'a configuration error');
    assert.match(err.message, new RegExp(`^${where.replace(/\./g, '\\.')} speaks AMQP 1\\.0.*use amqp://${where.replace(/\./g, '\\.')}/`));
    assert.is(err.speaks, 'AMQP 1.0');
    assert.is(err.host, where);
  }
  await rejects(new RPCServer(tr, new Target({ topic: 'x', server: 's' }), [{ echo: async () => 1 }]).start(), 'HERMOD_ERR_WRONG_PROTOCOL');
  // One attempt per connection (the client's, the server's), then intervalMax (5 s) before the next.
  const before = attempts();
  await sleep(1000);
  assert.is(attempts() - before, 0, `no reconnect storm: ${attempts() - before} attempts in 1 s`);
});

t('amqp:// to RabbitMQ: WrongProtocol naming rabbit://, also with no retries allowed, no storm', async (ctx) => {
  const where = `127.0.0.1:${ctx.node.port}`;
  for (const retry of [-1, 0]) {
    const { tr, attempts } = await transport(ctx, `amqp://${where}/`, { 'rpc.retry': retry });
    const t0 = Date.now();
    const err = await rejects(
      new RPCClient(tr, new Target({ topic: 'x' }), { timeout: 30_000 }).call({}, 'echo'),
      'HERMOD_ERR_WRONG_PROTOCOL',
      new RegExp(`^${where.replace(/\./g, '\\.')} speaks AMQP 0-9-1 .*use rabbit://${where.replace(/\./g, '\\.')}/`),
    );
    assert.ok(Date.now() - t0 < 3000, `failed after ${Date.now() - t0} ms`);
    assert.ok(err instanceof ConfigError);
    await rejects(
      new RPCServer(tr, new Target({ topic: 'x', server: 's' }), [{ echo: async () => 1 }]).start(),
      'HERMOD_ERR_WRONG_PROTOCOL',
    );
    const before = attempts();
    await sleep(1000);
    assert.ok(attempts() - before === 0, `no reconnects after the verdict: ${attempts() - before} in 1 s`);
  }
});

t('the right peer still works, and a dead port is a plain TransportError (no probe verdict)', async (ctx) => {
  const { tr } = await transport(ctx, ctx.node.url(ctx.vhost));
  const server = new RPCServer(tr, new Target({ topic: 'fine', server: 's' }), [{ add: async (_c: unknown, a: { a: number }) => a.a + 1 }]);
  await server.start();
  assert.is(await new RPCClient(tr, new Target({ topic: 'fine' }), { timeout: 5000 }).call({}, 'add', { a: 1 }), 2);
  await server.stop();
  await server.wait(1000);
  const { tr: dead } = await transport(ctx, 'rabbit://guest:guest@127.0.0.1:1/', { 'rpc.retry': 0 });
  const err = await rejects(new RPCClient(dead, new Target({ topic: 'x' }), { timeout: 3000 }).call({}, 'x'), 'HERMOD_ERR_TRANSPORT');
  assert.match(err.message, /ECONNREFUSED/);
});

t("a peer that takes the TCP connection and never answers: 'no AMQP answer', not amqplib's 'connect ETIMEDOUT'", async (ctx) => {
  const silent = await silentPeer();
  try {
    const port = silent.port;
    const { tr } = await transport(ctx, `rabbit://guest:guest@127.0.0.1:${port}/`, { 'rpc.retry': 0, 'rabbit.connectTimeout': 500 });
    const err = await rejects(new RPCClient(tr, new Target({ topic: 'x' }), { timeout: 5000 }).call({}, 'x'), 'HERMOD_ERR_TRANSPORT');
    assert.match(err.message, /no AMQP answer within 500 ms \(the peer took the TCP connection and did not answer/);
    assert.not.match(err.message, /ETIMEDOUT/);
  } finally {
    await silent.close();
  }
});

t('refused logins: AccessRefused at once on RabbitMQ (ACCESS_REFUSED) and on the router (SASL), no storm', async (ctx) => {
  const { tr: rabbit, attempts } = await transport(ctx, ctx.node.url(ctx.vhost, 'guest', 'not-the-password'));
  let t0 = Date.now();
  const calls = [1, 2].map(() => new RPCClient(rabbit, new Target({ topic: 'x' }), { timeout: 30_000 }).call({}, 'x'));
  for (const c of calls) {
    const err = await rejects(c, 'HERMOD_ERR_ACCESS_REFUSED', /ACCESS_REFUSED/);
    assert.ok(err instanceof AccessRefused && err instanceof TransportError);
    assert.not.match(err.message, /not-the-password/);
  }
  assert.ok(Date.now() - t0 < 3000, `failed after ${Date.now() - t0} ms`);
  await sleep(1000);
  assert.ok(attempts() <= 1, `no reconnect storm: ${attempts()} attempts in 1 s`);

  const dir = mkdtempSync(path.join(tmpdir(), 'hermod-wrong-protocol-'));
  const file = path.join(dir, 'users.json');
  await setPassword(file, 'alice', 'wonderland');
  const users = new Router({ port: 0, users: file });
  const port = await users.start();
  try {
    const { tr: amqp } = await transport(ctx, `amqp://alice:nope@127.0.0.1:${port}/`);
    t0 = Date.now();
    await rejects(
      new RPCClient(amqp, new Target({ topic: 'x' }), { timeout: 30_000 }).call({}, 'x'),
      'HERMOD_ERR_ACCESS_REFUSED',
      /wrong username or password/,
    );
    assert.ok(Date.now() - t0 < 3000, `failed after ${Date.now() - t0} ms`);
  } finally {
    await users.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

const bin = (name: string) => path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', `${name}.js`);
function run(name: string, args: string[]): Promise<{ code: number | null; err: string; ms: number }> {
  const t0 = Date.now();
  const child = spawn(process.execPath, [bin(name), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => {
    err += d;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
  return new Promise((resolve) =>
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, err, ms: Date.now() - t0 });
    }),
  );
}

t('rpc-client: the wrong AMQP version exits 2 (configuration) at once, with the message', async (ctx) => {
  const toRouter = await run('rpc-client', ['demo', 'add', '--transport-url', `rabbit://guest:guest@127.0.0.1:${ctx.routerPort}/`]);
  assert.is(toRouter.code, 2, toRouter.err);
  assert.match(toRouter.err, /speaks AMQP 1\.0.*use amqp:\/\//);
  const toRabbit = await run('rpc-client', ['demo', 'add', '--transport-url', `amqp://127.0.0.1:${ctx.node.port}/`]);
  assert.is(toRabbit.code, 2, toRabbit.err);
  assert.match(toRabbit.err, /speaks AMQP 0-9-1.*use rabbit:\/\//);
  // Exit 2 tells the refusal from a connect failure after retries (exit 5); this bounds a hang,
  // with room for a CLI that starts slowly at load (9.8 s once, at load 27).
  assert.ok(toRouter.ms < 20_000 && toRabbit.ms < 20_000, `${toRouter.ms} ms, ${toRabbit.ms} ms`);
});

t.run();
