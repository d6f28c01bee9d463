import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createGateway } from '../../src/gateway/index.js';
import { defaultConfig, getTransport, RPCServer, Target, type Transport } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { Calculator, calculatorContracts } from '../support/contract-cases.js';
import { gatewayContractSuite } from '../support/gateway-contract-cases.js';
import { slowProxy } from '../support/slow-proxy.js';
import { http, IN_PROCESS } from './gateway-cases.js';

// The gateway's contract cases on memory and through the embedded router; RabbitMQ:
// test/integration/gateway-contracts-rabbit.
for (const [name, broker] of IN_PROCESS) gatewayContractSuite(`gateway contracts over ${name}`, broker).run();

/** A bad request to `topic`.add is refused at the gateway by the contract it adopted, not by the server. */
async function assertAdopted(base: string, topic: string): Promise<void> {
  const bad = await http(base, 'POST', `/v1/${topic}/add`, { a: 'one' });
  assert.is(bad.status, 400);
  assert.is(bad.json.error.code, 'HERMOD_ERR_CONTRACT_VIOLATION');
  assert.not.ok(bad.json.error.remote, 'refused at the gateway: the contract was adopted');
}

/** Closes the transports and the proxy, then stops the router. */
async function closeAll(gt: Transport, st: Transport, proxy: { close(): Promise<void> }, router: Router): Promise<void> {
  await gt.close();
  await st.close();
  await proxy.close();
  await router.stop();
}

const slow = suite('gateway contracts: a slow first connect');
slow('a first connect slower than contractTimeout is waited for: the routes still get their contracts', async () => {
  const router = new Router({ port: 0 });
  const url = `amqp://127.0.0.1:${await router.start()}/`;
  // TCP is up at once, the AMQP open comes 3 s late: past the 1.5 s the servers get to answer
  // (300 ms, and the answer after the connect, came late once on a loaded machine).
  const proxy = await slowProxy(url, 3000);
  const st = await getTransport(url, { config: defaultConfig() });
  const server = new RPCServer(st, new Target({ topic: 'slowc', server: 's1' }), [new Calculator()]);
  await server.start();
  const gt = await getTransport(proxy.url, { config: defaultConfig() });
  const gw = createGateway(gt, { listen: { port: 0 }, contractTimeout: 1500, routes: [{ topic: 'slowc', method: 'add' }] });
  try {
    const { url: base } = await gw.start();
    await assertAdopted(base, 'slowc');
  } finally {
    await gw.stop(1000);
    await server.stop();
    await server.wait(1000);
    await closeAll(gt, st, proxy, router);
  }
});
slow(
  'a call made during the first connect that times out after it is made again: the servers get the whole contractTimeout to answer',
  async () => {
    const router = new Router({ port: 0 });
    const url = `amqp://127.0.0.1:${await router.start()}/`;
    // The open comes at 1 s, inside the first describe's 2 s; its server only at 2.5 s, after that
    // call timed out. Not made again, the route went without its contract.
    const proxy = await slowProxy(url, 1000);
    const st = await getTransport(url, { config: defaultConfig() });
    const server = new RPCServer(st, new Target({ topic: 'latec', server: 's1' }), [new Calculator()]);
    const gt = await getTransport(proxy.url, { config: defaultConfig() });
    const gw = createGateway(gt, { listen: { port: 0 }, contractTimeout: 2000, routes: [{ topic: 'latec', method: 'add' }] });
    let started: Promise<void> | undefined;
    const timer = setTimeout(() => {
      started = server.start();
    }, 2500);
    try {
      const t0 = Date.now();
      const { url: base } = await gw.start();
      assert.ok(Date.now() - t0 >= 2500, `the gateway started after ${Date.now() - t0} ms: before its server did`);
      await assertAdopted(base, 'latec');
    } finally {
      clearTimeout(timer);
      await gw.stop(1000);
      if (started) {
        await started;
        await server.stop();
        await server.wait(1000);
      }
      await closeAll(gt, st, proxy, router);
    }
  },
);
slow(
  'a broker that refuses the connection does not hold the start up to callTimeout (only a first attempt still under way is waited for)',
  async () => {
    const closed = new Router({ port: 0 });
    const port = await closed.start();
    await closed.stop();
    const gt = await getTransport(`amqp://127.0.0.1:${port}/`, { config: defaultConfig() });
    const gw = createGateway(gt, {
      listen: { port: 0 },
      contractTimeout: 300,
      callTimeout: 5000,
      routes: [{ topic: 'downc', method: 'add' }],
    });
    try {
      const t0 = Date.now();
      const { url: base } = await gw.start();
      assert.ok(Date.now() - t0 < 2500, `started after ${Date.now() - t0} ms`);
      assert.is((await http(base, 'GET', '/healthz')).status, 200);
    } finally {
      await gw.stop(1000);
      await gt.close();
    }
  },
);

slow.run();

const typed = suite("gateway routes: a contract's TypeBox schemas as a route's own");
typed("a route's args and result may be TypeBox types (tsc refused them): the gateway checks with them", async () => {
  const url = 'memory://gateway-typebox-route';
  const st = await getTransport(url, { config: defaultConfig() });
  // No contracts on the server: what refuses is the route's own schema.
  const server = new RPCServer(st, new Target({ topic: 'tbc', server: 's1' }), [
    { add: (_c: unknown, a: { a: number; b: number }) => a.a + a.b },
  ]);
  await server.start();
  const gt = await getTransport(url, { config: defaultConfig() });
  const { args, result } = calculatorContracts.add;
  const gw = createGateway(gt, { listen: { port: 0 }, routes: [{ topic: 'tbc', method: 'add', args, result }] });
  try {
    const { url: base } = await gw.start();
    const ok = await http(base, 'POST', '/v1/tbc/add', { a: 40, b: 2 });
    assert.equal([ok.status, ok.json], [200, { result: 42 }]);
    const bad = await http(base, 'POST', '/v1/tbc/add', { a: 'one', b: 2 });
    assert.is(bad.status, 400, JSON.stringify(bad.json));
    assert.is(bad.json.error.code, 'HERMOD_ERR_INVALID_ARGUMENT');
  } finally {
    await gw.stop(1000);
    await server.stop();
    await server.wait(1000);
    await gt.close();
    await st.close();
  }
});
typed.run();
