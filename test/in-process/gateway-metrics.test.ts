import * as assert from 'uvu/assert';
import { Metrics } from '../../src/ops/metrics.js';
import { harness, harnessSuite, http, IN_PROCESS, keepAlive } from './gateway-cases.js';

// The gateway's Prometheus series, from its diagnostics events: requests by route pattern,
// method and status, their durations, connections refused at a limit; and the RPC client
// series of the calls it makes. Real HTTP, on memory and through the embedded router.

/** The value of one sample line of `text` (`name{labels} value`), or undefined. */
function sample(text: string, line: string): number | undefined {
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}

for (const [name, broker] of IN_PROCESS) {
  const t = harnessSuite(`gateway metrics over ${name}`, broker);

  t('requests by route pattern, method and status; durations; refused connections; the RPC calls behind them', async (ctx) => {
    const metrics = new Metrics();
    metrics.start();
    try {
      ctx.h = await harness(ctx.broker.url, { maxConnections: 2 });
      const { base, topic } = ctx.h;
      for (let i = 1; i <= 3; i++) assert.is((await http(base, 'POST', `/v1/${topic}/get`, { id: i })).status, 200);
      assert.is((await http(base, 'GET', '/users/7')).status, 200);
      assert.is((await http(base, 'POST', `/v1/${topic}/nope`, {})).status, 404);
      // Paths clients make up are not labels: an unknown path counts under the empty route.
      for (let i = 0; i < 5; i++) assert.is((await http(base, 'GET', `/made/up/${i}`)).status, 404);
      const started = await http(base, 'POST', `/v1/${topic}/sleep`, { ms: 5 }, { prefer: 'respond-async' });
      assert.is(started.status, 202);
      assert.is((await http(base, 'GET', `${started.json.href}?wait=5`)).status, 200);
      // A third connection while two are open and neither is idle: closed at maxConnections.
      // (fetch's own idle connection, if it kept one, made room for b.)
      const port = Number(new URL(base).port);
      const a = await keepAlive(port);
      const b = await keepAlive(port);
      const c = await keepAlive(port);
      await c.closed;
      await a.get('/healthz');
      a.socket.destroy();
      b.socket.destroy();

      const text = await metrics.text();
      const rest = '/v1/:topic/:method';
      assert.is(sample(text, `hermod_gateway_requests_total{route="${rest}",method="POST",status="200"}`), 3, text);
      assert.is(sample(text, `hermod_gateway_requests_total{route="/users/:id",method="GET",status="200"}`), 1);
      assert.is(sample(text, `hermod_gateway_requests_total{route="${rest}",method="POST",status="404"}`), 1);
      assert.is(sample(text, `hermod_gateway_requests_total{route="",method="GET",status="404"}`), 5);
      assert.is(sample(text, `hermod_gateway_requests_total{route="${rest}",method="POST",status="202"}`), 1);
      assert.is(sample(text, `hermod_gateway_requests_total{route="/v1/jobs/*",method="GET",status="200"}`), 1);
      assert.is(sample(text, `hermod_gateway_request_seconds_count{route="${rest}",method="POST"}`), 5);
      assert.ok((sample(text, `hermod_gateway_request_seconds_sum{route="${rest}",method="POST"}`) ?? 0) > 0);
      // fetch's own pooled connection may hold a slot as well: the count is the gateway's own.
      const refused = ctx.h.gateway.connections.refused;
      assert.ok(refused >= 1);
      assert.is(sample(text, 'hermod_gateway_connections_refused_total{limit="maxConnections"}'), refused);
      assert.not.match(text, /made\/up/, 'no client path in any label');
      // The calls the gateway made, as any RPC client's (three by REST, one by the alias).
      assert.match(
        text,
        new RegExp(
          `oslo_messaging_rpc_client_invocation_end_total\\{call_type="call",exchange="openstack",topic="${topic}",[^}]*method="get"\\} 4`,
        ),
      );
    } finally {
      metrics.close();
    }
  });
  t.run();
}
