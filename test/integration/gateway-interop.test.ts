import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createGateway } from '../../src/gateway/index.js';
import { defaultConfig, getTransport, RPCServer, Target } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { type GatewayBroker, http, type Json, Users } from '../in-process/gateway-cases.js';
import { OsloPeer, osloAvailable } from '../support/oslo.js';
import { sharedVhost } from '../support/rabbit-vhost.js';

// The gateway is an RPC client: a Python oslo.messaging server is reached exactly like a hermod
// one. One JSON-RPC batch mixes both, on RabbitMQ and through the embedded router.

const BROKERS: Array<[string, () => Promise<GatewayBroker>]> = [
  ['RabbitMQ', sharedVhost('gateway-interop')],
  [
    'the embedded router (amqp1)',
    async () => {
      const router = new Router({ port: 0 });
      const port = await router.start();
      return { url: `amqp://127.0.0.1:${port}/`, stop: () => router.stop() };
    },
  ],
];

for (const [name, broker] of BROKERS) {
  const t = suite(`gateway interop over ${name}: a hermod and a python3-oslo.messaging server`);
  t('one JSON-RPC batch reaches both, concurrently; errors and context cross as for hermod', async () => {
    if (!osloAvailable()) throw new Error('python3-oslo.messaging is not installed (.ci/run installs it)');
    const b = await broker();
    const py = await OsloPeer.start('server', { url: b.url, topic: 'py', server: 'p1' });
    const st = await getTransport(b.url, { config: defaultConfig() });
    const users = new Users();
    const server = new RPCServer(st, new Target({ topic: 'js', server: 'j1' }), [users]);
    await server.start();
    const tr = await getTransport(b.url, { config: defaultConfig() });
    const gw = createGateway(tr, {
      listen: { port: 0 },
      routes: [
        { topic: 'js', method: 'get' },
        { topic: 'js', method: 'sleep' },
        {
          topic: 'py',
          method: 'add',
          args: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } }, required: ['a', 'b'] },
        },
        { topic: 'py', method: 'ctx' },
        { topic: 'py', method: 'fail' },
        { topic: 'py', method: 'sleep' },
        { topic: 'py', method: 'bump' },
        { topic: 'py', method: 'echo' },
      ],
    });
    try {
      const { url } = await gw.start();
      const t0 = Date.now();
      const r = await http(
        url,
        'POST',
        '/jsonrpc',
        [
          { jsonrpc: '2.0', method: 'js.get', params: { id: 4 }, id: 'js' },
          { jsonrpc: '2.0', method: 'py.add', params: { a: 2, b: 40 }, id: 'py' },
          { jsonrpc: '2.0', method: 'py.ctx', id: 'ctx' },
          { jsonrpc: '2.0', method: 'py.fail', params: { message: 'nope' }, id: 'fail' },
          { jsonrpc: '2.0', method: 'py.sleep', params: { seconds: 1.5 }, id: 'py-sleep' },
          { jsonrpc: '2.0', method: 'js.sleep', params: { ms: 1500 }, id: 'js-sleep' },
          { jsonrpc: '2.0', method: 'py.bump', params: { seq: 7 } },
        ],
        { 'x-request-id': 'batch-1' },
      );
      const took = Date.now() - t0;
      assert.is(r.status, 200);
      const byId = new Map<string, Json>(r.json.map((x: Json) => [x.id, x]));
      assert.is(byId.size, 6);
      assert.equal(byId.get('js').result, { id: 4, name: 'user-4', verbose: false, by: 'u1' });
      assert.is(byId.get('py').result, 42);
      assert.is(byId.get('ctx').result.request_id, 'batch-1');
      assert.is(byId.get('fail').error.code, -32001);
      assert.is(byId.get('fail').error.data.type, 'ValueError');
      assert.is(byId.get('fail').error.message, 'nope');
      assert.is(byId.get('fail').error.data.remote.module, 'builtins');
      assert.equal(byId.get('py-sleep').result, { slept: 1.5, server: 'p1' });
      assert.is(byId.get('js-sleep').result, 1500);
      // One after the other they would take at least 3 s; the margin absorbs a loaded machine.
      assert.ok(took < 2900, `the two 1.5 s sleeps ran concurrently (${took} ms)`);
      await py.waitFor((e) => e.event === 'bump' && e.seq === 7, 5000, 'the notification as a cast to python');
      // REST reaches Python too, with its errors mapped by the same table.
      const rest = await http(url, 'POST', '/v1/py/add', { a: 1, b: 2 });
      assert.equal([rest.status, rest.json], [200, { result: 3 }]);
      const missing = await http(url, 'POST', '/v1/py/add', { a: 1 });
      assert.is(missing.status, 400, 'refused by the schema before Python sees it');
      // Prefer: respond-async is a preference: a Python server runs no jobs and answers the
      // call, which the client gets as a plain 200 (no job reference, no Preference-Applied);
      // a hermod server behind the same gateway starts a job.
      const py202 = await http(url, 'POST', '/v1/py/add', { a: 5, b: 6 }, { prefer: 'respond-async' });
      assert.equal([py202.status, py202.json], [200, { result: 11 }]);
      assert.is(py202.headers.get('preference-applied'), null);
      const js202 = await http(url, 'POST', '/v1/js/sleep', { ms: 20 }, { prefer: 'respond-async' });
      assert.is(js202.status, 202, JSON.stringify(js202.json));
      const polled = await http(url, 'GET', `/v1/jobs/${js202.json.job}?wait=5`);
      assert.is(polled.json.result, 20);
      // A Python result shaped like the token of that very call is data, started or not: only a
      // reply a hermod server marked is a job's. Before the marker it became a job reference
      // (202), and a plain call polled the Python server's missing jobs endpoint (404).
      const shaped = {
        hermod_job: 1,
        job_id: 'a'.repeat(32),
        server: 'p1',
        topic: 'py',
        exchange: 'openstack',
        method: 'echo',
        instance: 'b'.repeat(32),
      };
      const echoed = await http(url, 'POST', '/v1/py/echo', { value: shaped });
      assert.equal([echoed.status, echoed.json], [200, { result: shaped }]);
      const echoed202 = await http(url, 'POST', '/v1/py/echo', { value: shaped }, { prefer: 'respond-async' });
      assert.equal([echoed202.status, echoed202.json], [200, { result: shaped }]);
    } finally {
      await gw.stop(1000);
      await server.stop();
      await server.wait(1000);
      await py.kill();
      await tr.close();
      await st.close();
      await b.stop();
    }
  });
  t.run();
}
