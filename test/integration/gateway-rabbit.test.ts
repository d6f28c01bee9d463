import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RabbitNode } from '../../scripts/rabbit-node.js';
import { createGateway } from '../../src/gateway/index.js';
import { defaultConfig, getTransport } from '../../src/index.js';
import { gatewaySuite, http } from '../in-process/gateway-cases.js';
import { gatewayJobSuite } from '../in-process/gateway-jobs-cases.js';
import { sharedVhost } from '../support/rabbit-vhost.js';

// The gateway's shared cases on RabbitMQ, in a vhost of their own.
gatewaySuite('gateway over RabbitMQ: shared cases', sharedVhost('gateway-cases')).run();
gatewayJobSuite('gateway jobs over RabbitMQ', sharedVhost('gateway-jobs')).run();

// What is RabbitMQ's own: a call nobody serves is unroutable (mandatory) at once → 503.
const t = suite('gateway over RabbitMQ');
t('a topic nobody serves answers 503 with Retry-After at once (mandatory publish returned)', async () => {
  const node = await RabbitNode.shared();
  const vhost = await node.addVhost(`gateway-${process.pid}`);
  const tr = await getTransport(node.url(vhost), { config: defaultConfig() });
  const gw = createGateway(tr, { listen: { port: 0 }, routes: [{ topic: 'nobody', method: 'x' }] });
  try {
    const { url } = await gw.start();
    const t0 = Date.now();
    const r = await http(url, 'POST', '/v1/nobody/x', {});
    assert.is(r.status, 503);
    assert.is(r.json.error.code, 'HERMOD_ERR_UNDELIVERABLE');
    assert.is(r.headers.get('retry-after'), '1');
    assert.ok(Date.now() - t0 < 2000);
    const ready = await http(url, 'GET', '/readyz');
    assert.is(ready.status, 200);
    assert.is(ready.json.transport, 'connected');
  } finally {
    await gw.stop(1000);
    await tr.close();
    await node.deleteVhost(vhost);
    await node.release();
  }
});
t.run();
