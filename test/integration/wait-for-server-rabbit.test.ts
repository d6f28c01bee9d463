import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RabbitNode } from '../../scripts/rabbit-node.js';
import { type Context, defaultConfig, getTransport, RPCClient, RPCServer, Target } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { OsloPeer } from '../support/oslo.js';

// client.waitForServer() on RabbitMQ (no queue yet: each attempt is returned unroutable, then a
// server declares it) and against python3-oslo.messaging servers, which have no `hermod`
// namespace: their NoSuchMethod for the quiet probe is an answer, logged at DEBUG, never ERROR.

class Echo {
  async echo(_ctx: Context, args: { v: unknown }) {
    return args.v;
  }
}

const ERRORS = /Exception during message handling|UnsupportedVersion|Traceback/;

const t = suite('waitForServer on RabbitMQ and against oslo.messaging servers');

t('RabbitMQ: no queue for the topic yet, then a hermod server declares it and answers', async () => {
  const node = await RabbitNode.shared();
  const vhost = await node.addVhost(`wait-rabbit-${process.pid}`);
  const url = node.url(vhost);
  const tr = await getTransport(url, { config: defaultConfig() });
  const serverTransport = await getTransport(url, { config: defaultConfig() });
  const server = new RPCServer(serverTransport, new Target({ topic: 'later', server: 'r1' }), [new Echo()]);
  try {
    const client = new RPCClient(tr, new Target({ topic: 'later' }));
    const waiting = client.waitForServer({ timeout: 20_000, interval: 100 });
    let settled = false;
    void waiting.finally(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 700));
    assert.not.ok(settled, 'nothing answered before the server started');
    await server.start();
    const found = await waiting;
    assert.is(found.server, 'r1');
    assert.is(await client.call({}, 'echo', { v: 3 }), 3);
  } finally {
    await server.stop();
    await server.wait(1000);
    await serverTransport.close();
    await tr.close();
    await node.deleteVhost(vhost);
    await node.release();
  }
});

t('oslo.messaging 18.1.0 over RabbitMQ: found (no name), nothing at ERROR in its log', async () => {
  const node = await RabbitNode.shared();
  const vhost = await node.addVhost(`wait-oslo18-${process.pid}`);
  const url = node.url(vhost);
  const tr = await getTransport(url, { config: defaultConfig() });
  let py: OsloPeer | undefined;
  try {
    const client = new RPCClient(tr, new Target({ topic: 'oslo18w' }));
    const waiting = client.waitForServer({ timeout: 60_000, interval: 200 });
    py = await OsloPeer.start('server', { url, topic: 'oslo18w', server: 'py18' }, { version: '18' });
    const found = await waiting;
    assert.is(found.server, undefined);
    assert.is(await client.call({}, 'add', { a: 1, b: 2 }), 3);
    assert.not.match(py.stderrText, ERRORS, py.stderrText);
  } finally {
    await py?.kill();
    await tr.close();
    await node.deleteVhost(vhost);
    await node.release();
  }
});

t("oslo.messaging 14's amqp1 driver through the embedded router: found, nothing at ERROR in its log", async () => {
  const router = new Router({ port: 0 });
  const url = `amqp://127.0.0.1:${await router.start()}/`;
  const tr = await getTransport(url, { config: defaultConfig() });
  let py: OsloPeer | undefined;
  try {
    const client = new RPCClient(tr, new Target({ topic: 'oslo14w' }));
    const waiting = client.waitForServer({ timeout: 60_000, interval: 200 });
    py = await OsloPeer.start('server', { url, topic: 'oslo14w', server: 'py14' });
    assert.is((await waiting).server, undefined);
    assert.is(await client.call({}, 'add', { a: 2, b: 2 }), 4);
    assert.not.match(py.stderrText, ERRORS, py.stderrText);
  } finally {
    await py?.kill();
    await tr.close();
    await router.stop();
  }
});

t.run();
