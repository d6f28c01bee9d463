import { Validator } from '@seriousme/openapi-schema-validator';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createGateway, type Gateway } from '../../src/gateway/index.js';
import { defaultConfig, getTransport, RPCServer, Target, type Transport } from '../../src/index.js';
import { type GatewayBroker, http } from '../in-process/gateway-cases.js';
import { Calculator, calculatorContracts } from './contract-cases.js';

// The gateway's contract cases, on every driver: a declared route without schemas of its own
// takes its method's contract from the servers (hermod.describe); requests are checked at the
// gateway, and /openapi.json documents it.

interface Ctx {
  broker: GatewayBroker;
  transports: Transport[];
  servers: RPCServer[];
  gateways: Gateway[];
}
let n = 0;

/** The gateway's contract cases over one broker (memory, the router, RabbitMQ). */
export function gatewayContractSuite(name: string, broker: () => Promise<GatewayBroker>) {
  const t = suite<Ctx>(name, {} as Ctx);
  t.before(async (ctx) => {
    ctx.broker = await broker();
  });
  t.after(async (ctx) => {
    await ctx.broker.stop();
  });
  t.before.each((ctx) => {
    ctx.transports = [];
    ctx.servers = [];
    ctx.gateways = [];
  });
  t.after.each(async (ctx) => {
    for (const g of ctx.gateways) await g.stop(1000);
    for (const s of ctx.servers) {
      await s.stop();
      await s.wait(1000);
    }
    for (const tr of ctx.transports) await tr.close();
  });

  async function setup(ctx: Ctx, contractTimeout: number) {
    const topic = `gwc-${++n}`;
    const tr = await getTransport(ctx.broker.url, { config: defaultConfig() });
    ctx.transports.push(tr);
    const calc = new Calculator();
    const server = new RPCServer(tr, new Target({ topic, server: 's1' }), [calc]);
    await server.start();
    ctx.servers.push(server);
    const gw = createGateway(tr, {
      listen: { port: 0 },
      contractTimeout,
      routes: [
        { topic, method: 'add', alias: `GET /${topic}/sum/:a` },
        { topic, method: 'tag', args: { type: 'object' } },
        { topic: `${topic}-nobody`, method: 'add' },
      ],
    });
    ctx.gateways.push(gw);
    const t0 = Date.now();
    const { url } = await gw.start();
    return { topic, calc, server, base: url, startMs: Date.now() - t0 };
  }

  t('a route without args takes the contract: a bad request is a 400 ContractViolation and never reaches the server', async (ctx) => {
    const { topic, calc, base, startMs } = await setup(ctx, 1500);
    // Topics are asked at once: one that nobody serves delays start by its timeout, not more.
    // 1.5 s for the servers' answers: 300 ms was not always enough for a describe at load.
    assert.ok(startMs < 1500 + 2500, `started in ${startMs} ms`);
    const ok = await http(base, 'POST', `/v1/${topic}/add`, { a: 1, b: 2 });
    assert.is(ok.status, 200);
    assert.equal(ok.json, { result: 3 });
    const bad = await http(base, 'POST', `/v1/${topic}/add`, { a: 'one', extra: 1 });
    assert.is(bad.status, 400);
    assert.is(bad.json.error.code, 'HERMOD_ERR_CONTRACT_VIOLATION');
    assert.match(bad.json.error.message, /\/b is required/);
    assert.match(bad.json.error.message, /\/extra is not allowed/);
    assert.not.ok(bad.json.error.remote, 'refused at the gateway, not by the server');
    // The client's text quoted back is cut: before, a 500 kB key made a 1 MB answer.
    const huge = await http(base, 'POST', `/v1/${topic}/add`, { a: 1, b: 2, ['k'.repeat(500_000)]: 1 });
    assert.is(huge.status, 400);
    assert.match(huge.json.error.message, /\/k{200}… \(500000 characters\) is not allowed/);
    assert.ok(huge.text.length < 5000, `an answer of ${huge.text.length} bytes`);
    assert.is(calc.runs, 1, 'only the good call ran');
    // The route's own schema wins: tag's contract would refuse this, the route lets it through and the server refuses it.
    const own = await http(base, 'POST', `/v1/${topic}/tag`, { name: 'x'.repeat(40) });
    assert.is(own.status, 400);
    assert.equal(own.json.error.remote?.type, 'ContractViolation', 'refused by the server this time');
    const rpc = await http(base, 'POST', '/jsonrpc', { jsonrpc: '2.0', id: 1, method: `${topic}.add`, params: { a: 1 } });
    assert.is(rpc.json.error.code, -32602);
    // An alias without args reads its path and query values by the adopted contract (numbers):
    // before, they stayed strings and the contract refused them.
    const sum = await http(base, 'GET', `/${topic}/sum/2?b=5`);
    assert.is(sum.status, 200, JSON.stringify(sum.json));
    assert.equal(sum.json, { result: 7 });
  });

  t("a result that breaks its contract on the server is the server failing: 502 / -32005, not the caller's 400", async (ctx) => {
    const topic = `gwc-${++n}`;
    const tr = await getTransport(ctx.broker.url, { config: defaultConfig() });
    ctx.transports.push(tr);
    const server = new RPCServer(tr, new Target({ topic, server: 's1' }), [new Calculator()], { validateResults: true });
    await server.start();
    ctx.servers.push(server);
    const gw = createGateway(tr, {
      listen: { port: 0 },
      routes: [
        { topic, method: 'drift' },
        { topic, method: 'add' },
      ],
    });
    ctx.gateways.push(gw);
    const { url: base } = await gw.start();
    const rest = await http(base, 'POST', `/v1/${topic}/drift`, {});
    assert.is(rest.status, 502, JSON.stringify(rest.json));
    assert.is(rest.json.error.code, 'HERMOD_ERR_CONTRACT_VIOLATION');
    assert.match(rest.json.error.message, /the result of drift breaks its contract/);
    assert.is(rest.json.error.remote?.type, 'ContractViolation');
    const rpc = await http(base, 'POST', '/jsonrpc', { jsonrpc: '2.0', id: 1, method: `${topic}.drift`, params: {} });
    assert.is(rpc.json.error.code, -32005);
    // The caller's arguments refused by the server stay the caller's mistake.
    const args = await http(base, 'POST', `/v1/${topic}/add`, { a: 'one', b: 2 });
    assert.is(args.status, 400, JSON.stringify(args.json));
    assert.is(args.json.error.remote?.type, 'ContractViolation');
  });

  t('/openapi.json documents the contract (args, result, description) of a route that declares none', async (ctx) => {
    const { topic, base } = await setup(ctx, 1500);
    const doc = (await http(base, 'GET', '/openapi.json')).json;
    assert.equal(await new Validator().validate(doc), { valid: true });
    const add = doc.paths[`/v1/${topic}/add`].post;
    assert.equal(add.requestBody.content['application/json'].schema, JSON.parse(JSON.stringify(calculatorContracts.add.args)));
    assert.equal(add.responses['200'].content['application/json'].schema.properties.result, { type: 'number' });
    assert.is(add.summary, 'Adds two numbers.');
    assert.equal(doc.paths[`/v1/${topic}/tag`].post.requestBody.content['application/json'].schema, { type: 'object' });
    assert.equal(doc.paths[`/v1/${topic}-nobody/add`].post.requestBody.content['application/json'].schema, { type: 'object' });
  });

  t('contractTimeout 0 (the default): routes stay as declared', async (ctx) => {
    const { topic, calc, base } = await setup(ctx, 0);
    const bad = await http(base, 'POST', `/v1/${topic}/add`, { a: 'one' });
    assert.is(bad.status, 400);
    assert.is(bad.json.error.remote?.type, 'ContractViolation', 'refused by the server');
    assert.is(calc.runs, 0);
  });
  return t;
}
