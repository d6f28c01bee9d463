// remoteErrors: an operator gives servers' own errors their HTTP status, by class, and may pass
// their keyword arguments on as `error.data` (a "user not found" is a 404 with the id, not a 502
// that reads as an upstream failure). Real HTTP against a gateway and a server on memory://.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createGateway, type Gateway, resolveGatewayConfig } from '../../src/gateway/index.js';
import { type Context, defaultConfig, getTransport, InvalidArgument, RPCServer, Target, type Transport } from '../../src/index.js';
import { rejects } from '../support/assert.js';
import { http } from './gateway-cases.js';

class UserNotFound extends Error {
  override name = 'UserNotFound';
  readonly kwargs: Record<string, unknown>;
  constructor(id: number) {
    super(`no user ${id}`);
    this.kwargs = { id };
  }
}
class OutOfStock extends Error {
  static remoteModule = 'shop.errors';
  override name = 'OutOfStock';
  readonly kwargs = { sku: 'egg-12' };
}
/** A class name a peer chose to match Object.prototype's keys. */
class Constructor extends Error {
  override name = 'constructor';
}

const shop = {
  get(_ctx: Context, args: { id: number }) {
    throw new UserNotFound(args.id);
  },
  buy() {
    throw new OutOfStock('sold out');
  },
  odd() {
    throw new Constructor('odd');
  },
  plain() {
    throw new TypeError('boom');
  },
  invalid() {
    throw new InvalidArgument('bad size');
  },
};

interface Ctx {
  st: Transport;
  gt: Transport;
  server: RPCServer;
  gw: Gateway;
  base: string;
}
const t = suite<Ctx>('gateway remoteErrors: a status and data per class of server error', {} as Ctx);
t.before(async (ctx) => {
  const url = 'memory://gateway-remote-errors';
  ctx.st = await getTransport(url, { config: defaultConfig() });
  ctx.server = new RPCServer(ctx.st, new Target({ topic: 'shop', server: 's1' }), [shop]);
  await ctx.server.start();
  ctx.gt = await getTransport(url, { config: defaultConfig() });
  ctx.gw = createGateway(ctx.gt, {
    listen: { port: 0 },
    routes: ['get', 'buy', 'odd', 'plain'].map((method) => ({ topic: 'shop', method })),
    remoteErrors: {
      UserNotFound: { status: 404, data: true },
      // The module's own rule wins over the class's.
      OutOfStock: { status: 409 },
      'shop.errors.OutOfStock': { status: 410 },
    },
  });
  ctx.base = (await ctx.gw.start()).url;
});
t.after(async (ctx) => {
  await ctx.gw.stop(1000);
  await ctx.server.stop();
  await ctx.server.wait(1000);
  await ctx.gt.close();
  await ctx.st.close();
});

t('REST: the rule status, the data only where the rule says so, 502 for the rest', async (ctx) => {
  const nf = await http(ctx.base, 'POST', '/v1/shop/get', { id: 99 });
  assert.is(nf.status, 404, JSON.stringify(nf.json));
  assert.equal(nf.json.error, {
    code: 'HERMOD_ERR_REMOTE',
    type: 'UserNotFound',
    message: 'no user 99',
    requestId: nf.json.error.requestId,
    remote: { module: 'hermod.endpoint', type: 'UserNotFound' },
    data: { id: 99 },
  });
  const gone = await http(ctx.base, 'POST', '/v1/shop/buy', {});
  assert.is(gone.status, 410, JSON.stringify(gone.json));
  assert.is(gone.json.error.data, undefined, 'no data unless the rule says data: true');
  // `constructor` is no rule: the rules are read by their own keys only.
  const odd = await http(ctx.base, 'POST', '/v1/shop/odd', {});
  assert.is(odd.status, 502, JSON.stringify(odd.json));
  const plain = await http(ctx.base, 'POST', '/v1/shop/plain', {});
  assert.is(plain.status, 502);
});

t('JSON-RPC: the code stays the remote error one; data.status and data.data say the rest', async (ctx) => {
  const r = await http(ctx.base, 'POST', '/jsonrpc', [
    { jsonrpc: '2.0', method: 'shop.get', params: { id: 7 }, id: 1 },
    { jsonrpc: '2.0', method: 'shop.buy', params: {}, id: 2 },
  ]);
  const [nf, gone] = r.json as Array<{ error: { code: number; data: Record<string, unknown> } }>;
  assert.equal([nf!.error.code, nf!.error.data.status, nf!.error.data.data], [-32001, 404, { id: 7 }]);
  assert.equal([gone!.error.code, gone!.error.data.status], [-32001, 410]);
});

t('the OpenAPI document lists the statuses the rules add, naming the classes', async (ctx) => {
  const doc = await http(ctx.base, 'GET', '/openapi.json');
  const responses = doc.json.paths['/v1/shop/get'].post.responses;
  assert.match(responses['404'].description, /; or the remote method raised UserNotFound$/);
  assert.match(responses['410'].description, /^The remote method raised shop\.errors\.OutOfStock$/);
});

t('a rule is checked: a status outside 400–599 and an unknown key are refused, naming them', async () => {
  await rejects(
    () => resolveGatewayConfig({ remoteErrors: { X: { status: 200 } } }),
    'HERMOD_ERR_CONFIG',
    /'remoteErrors\.X\.status'.*>= 400/,
  );
  await rejects(
    () => resolveGatewayConfig({ remoteErrors: { X: { status: 404, date: true } } }),
    'HERMOD_ERR_CONFIG',
    /unknown gateway configuration key 'remoteErrors\.X\.date'.*did you mean 'data'/,
  );
  await rejects(
    () => resolveGatewayConfig({ remoteErrors: { X: {} } }),
    'HERMOD_ERR_CONFIG',
    /'remoteErrors\.X'.*required property 'status'/,
  );
});

t("an app's own error with a `remote` field (from an authenticate hook) is not taken for a server's", async (ctx) => {
  for (const remote of ['10.0.0.7:389', null, { module: 1 }]) {
    const gw = createGateway(ctx.gt, {
      listen: { port: 0 },
      routes: [{ topic: 'shop', method: 'plain' }],
      remoteErrors: { Error: { status: 418 } },
      authenticate: () => {
        throw Object.assign(new Error('directory refused the bind'), { statusCode: 401, remote });
      },
    });
    try {
      const base = (await gw.start()).url;
      const r = await http(base, 'POST', '/v1/shop/plain', {});
      // Before: 502 HERMOD_ERR_REMOTE with "remote":{} for a string, and for null a 500 quoting
      // the gateway's own TypeError (reading 'module' of null).
      assert.is(r.status, 401, `remote ${JSON.stringify(remote)}: ${JSON.stringify(r.json)}`);
      assert.not.ok(r.json.error.remote, 'no remote details');
    } finally {
      await gw.stop(1000);
    }
  }
});

t("a rule gives hermod's own class its HTTP status and keeps its JSON-RPC code; data: true with no kwargs sends no data", async (ctx) => {
  const gw = createGateway(ctx.gt, {
    listen: { port: 0 },
    routes: [{ topic: 'shop', method: 'invalid' }],
    remoteErrors: { InvalidArgument: { status: 422, data: true } },
  });
  try {
    const base = (await gw.start()).url;
    const r = await http(base, 'POST', '/v1/shop/invalid', {});
    assert.is(r.status, 422, JSON.stringify(r.json));
    assert.is(r.json.error.code, 'HERMOD_ERR_INVALID_ARGUMENT');
    assert.is(r.json.error.data, undefined, 'no kwargs: no data');
    const rpc = await http(base, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: 'shop.invalid', params: {}, id: 1 });
    assert.equal([rpc.json.error.code, rpc.json.error.data.status], [-32602, 422]);
  } finally {
    await gw.stop(1000);
  }
});

t.run();
