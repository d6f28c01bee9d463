// The other AMQP version over TLS (issue #13, "Both quick starts use port 5672"): a client on a
// TLS port of a peer speaking the other version says so, at once, as over plain TCP, and names
// the TLS scheme that would work. Real TLS listeners: a RabbitMQ node's (3.x, no AMQP 1.0
// plugin) and the embedded router's, with certificates from the node's test PKI.
import { readFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RabbitNode } from '../../scripts/rabbit-node.js';
import { applyOverrides, type ConfigValues } from '../../src/config/index.js';
import { probeProtocol } from '../../src/driver/protocol-probe.js';
import {
  ConfigError,
  defaultConfig,
  getTransport,
  Router,
  RPCClient,
  RPCServer,
  Target,
  type Transport,
  WrongProtocol,
} from '../../src/index.js';
import { rejects, sleep } from '../support/assert.js';

interface Ctx {
  node: RabbitNode;
  router: Router;
  routerPort: number;
  transports: Transport[];
}
const t = suite<Ctx>('the other AMQP version over TLS', {} as Ctx);

t.before(async (ctx) => {
  ctx.node = await RabbitNode.start({ name: 'hermod-tls-protocol', tls: true });
  const pki = ctx.node.pki!;
  ctx.router = new Router({ port: 0, tls: { cert: pki.cert, key: pki.key }, allowAnonymous: true });
  ctx.routerPort = await ctx.router.start();
  ctx.transports = [];
});
t.after(async (ctx) => {
  for (const tr of ctx.transports) await tr.close();
  await ctx.router.stop();
  await ctx.node.stop();
});

async function transport(ctx: Ctx, url: string, overrides: ConfigValues = {}) {
  const config = applyOverrides(defaultConfig(), {
    'tls.ca': ctx.node.pki!.ca,
    'rabbit.retryInterval': 20,
    'amqp1.retryInterval': 20,
    ...overrides,
  });
  const tr = await getTransport(url, { config });
  ctx.transports.push(tr);
  let attempts = 0;
  tr.driver.on('state', (s: { state: string }) => {
    if (s.state === 'reconnecting') attempts++;
  });
  return { tr, attempts: () => attempts };
}

const re = (s: string) => s.replace(/[.[\]]/g, '\\$&');

t('the probe runs inside TLS and reads what each TLS listener speaks; a failed TLS handshake answers nothing', async (ctx) => {
  const ca = { ca: readFileSync(ctx.node.pki!.ca), rejectUnauthorized: true };
  assert.is(await probeProtocol({ hostname: '127.0.0.1', port: ctx.routerPort }, 2000, undefined, ca), 'AMQP 1.0');
  assert.is(await probeProtocol({ hostname: '127.0.0.1', port: ctx.node.tlsPort! }, 2000, undefined, ca), 'AMQP 0-9-1');
  // The plain header on a TLS port is no verdict, and neither is a certificate nobody trusts.
  assert.is(await probeProtocol({ hostname: '127.0.0.1', port: ctx.routerPort }, 1000), undefined);
  const other = { ca: readFileSync(ctx.node.pki!.otherCa), rejectUnauthorized: true };
  assert.is(await probeProtocol({ hostname: '127.0.0.1', port: ctx.routerPort }, 2000, undefined, other), undefined);
});

t('rabbits:// to the router TLS listener: WrongProtocol naming amqps://, at once, no storm', async (ctx) => {
  const where = `127.0.0.1:${ctx.routerPort}`;
  const { tr, attempts } = await transport(ctx, `rabbits://guest:guest@${where}/`);
  const t0 = Date.now();
  const err = await rejects(
    new RPCClient(tr, new Target({ topic: 'x' }), { timeout: 30_000 }).call({}, 'echo'),
    'HERMOD_ERR_WRONG_PROTOCOL',
    new RegExp(`^${re(where)} speaks AMQP 1\\.0.*use amqps://${re(where)}/.*point rabbits:// at RabbitMQ's TLS port`),
  );
  assert.ok(err instanceof WrongProtocol && err instanceof ConfigError);
  assert.ok(Date.now() - t0 < 5000, `failed after ${Date.now() - t0} ms`);
  const before = attempts();
  await sleep(1000);
  assert.is(attempts() - before, 0, 'no reconnects after the verdict');
});

t('amqps:// to RabbitMQ TLS port: WrongProtocol naming rabbits://, also with no retries allowed', async (ctx) => {
  const where = `127.0.0.1:${ctx.node.tlsPort}`;
  for (const retry of [-1, 0]) {
    const { tr, attempts } = await transport(ctx, `amqps://${where}/`, { 'rpc.retry': retry });
    const t0 = Date.now();
    await rejects(
      new RPCClient(tr, new Target({ topic: 'x' }), { timeout: 30_000 }).call({}, 'echo'),
      'HERMOD_ERR_WRONG_PROTOCOL',
      new RegExp(`^${re(where)} speaks AMQP 0-9-1 .*use rabbits://${re(where)}/.*point amqps:// at an AMQP 1\\.0 router`),
    );
    assert.ok(Date.now() - t0 < 5000, `failed after ${Date.now() - t0} ms`);
    const before = attempts();
    await sleep(1000);
    assert.is(attempts() - before, 0, `no reconnects after the verdict (retry ${retry})`);
  }
});

t('TLS on a plain port and plain on a TLS port: WrongProtocol naming the URL that works, at once', async (ctx) => {
  // Each said only "wrong version number" (OpenSSL's, with its source file) or "Socket closed
  // abruptly", three times, and gave up as if the broker were down.
  const plainRouter = new Router({ port: 0, allowAnonymous: true });
  const plainRouterPort = await plainRouter.start();
  try {
    const cases: Array<[string, RegExp]> = [
      [
        `amqp://127.0.0.1:${ctx.routerPort}/`,
        new RegExp(
          `^${re(`127.0.0.1:${ctx.routerPort}`)} expects TLS \\(.*then spoke AMQP 1\\.0\\): use amqps://${re(`127.0.0.1:${ctx.routerPort}`)}/`,
        ),
      ],
      [
        `rabbit://guest:guest@127.0.0.1:${ctx.node.tlsPort}/`,
        new RegExp(
          `^${re(`127.0.0.1:${ctx.node.tlsPort}`)} expects TLS \\(.*then spoke AMQP 0-9-1\\): use rabbits://${re(`127.0.0.1:${ctx.node.tlsPort}`)}/`,
        ),
      ],
      [
        `amqps://127.0.0.1:${plainRouterPort}/`,
        new RegExp(
          `^${re(`127.0.0.1:${plainRouterPort}`)} does not speak TLS \\(it answered in plain AMQP 1\\.0\\): use amqp://${re(`127.0.0.1:${plainRouterPort}`)}/`,
        ),
      ],
      [
        // TLS asked with ?ssl=1: the TLS URL to point at the TLS port keeps it.
        `amqp://127.0.0.1:${plainRouterPort}/?ssl=1`,
        new RegExp(
          `^${re(`127.0.0.1:${plainRouterPort}`)} does not speak TLS \\(it answered in plain AMQP 1\\.0\\): use amqp://${re(`127.0.0.1:${plainRouterPort}`)}/, or point amqp://…\\?ssl=1 at the TLS port`,
        ),
      ],
      [
        `rabbits://guest:guest@127.0.0.1:${ctx.node.port}/`,
        new RegExp(
          `^${re(`127.0.0.1:${ctx.node.port}`)} does not speak TLS \\(it answered in plain AMQP 0-9-1\\): use rabbit://${re(`127.0.0.1:${ctx.node.port}`)}/`,
        ),
      ],
    ];
    for (const [url, message] of cases) {
      // A plain URL with tls.ca set is a ConfigError of its own (nothing would be encrypted):
      // the plain cases here are a user who set no TLS at all.
      const plain = /^(amqp|rabbit):/.test(url);
      const { tr, attempts } = await transport(ctx, url, { 'rpc.retry': 0, ...(plain ? { 'tls.ca': '' } : {}) });
      const t0 = Date.now();
      const err = await rejects(
        new RPCClient(tr, new Target({ topic: 'x' }), { timeout: 30_000 }).call({}, 'echo'),
        'HERMOD_ERR_WRONG_PROTOCOL',
        message,
      );
      assert.ok(err instanceof ConfigError, url);
      assert.ok(Date.now() - t0 < 15_000, `${url}: failed after ${Date.now() - t0} ms`);
      const before = attempts();
      await sleep(500);
      assert.is(attempts() - before, 0, `${url}: no reconnects after the verdict`);
    }
  } finally {
    await plainRouter.stop();
  }
});

t('the right TLS peers still work, and an untrusted certificate is no protocol verdict', async (ctx) => {
  const { tr: ok } = await transport(ctx, `amqps://127.0.0.1:${ctx.routerPort}/`);
  const server = new RPCServer(ok, new Target({ topic: 'fine', server: 's' }), [{ add: async (_c: unknown, a: { a: number }) => a.a + 1 }]);
  await server.start();
  assert.is(await new RPCClient(ok, new Target({ topic: 'fine' }), { timeout: 5000 }).call({}, 'add', { a: 1 }), 2);
  await server.stop();
  await server.wait(1000);
  const { tr: bad } = await transport(ctx, `rabbits://guest:guest@127.0.0.1:${ctx.routerPort}/`, { 'tls.ca': ctx.node.pki!.otherCa });
  const err = await rejects(
    new RPCClient(bad, new Target({ topic: 'x' }), { timeout: 5000, retry: 1 }).call({}, 'x'),
    'HERMOD_ERR_TRANSPORT',
  );
  assert.match(err.message, /certificate/);
});

t.run();
