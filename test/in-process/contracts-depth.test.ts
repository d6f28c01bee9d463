import type rhea from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { memoryBroker } from '../../src/driver/memory/broker.js';
import { type Context, defaultConfig, getTransport, RPCServer, Target } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { until } from '../support/assert.js';
import { longestStall } from '../support/contract-cases.js';
import { rheaClose, rheaConnect } from '../support/rhea-peer.js';

// A hostile peer's deeply nested arguments, hand-made (no hermod client can encode them): a
// method without a contract and one whose schema accepts anything must not let them in, nor
// stall the server while refusing them. RabbitMQ: test/integration/contracts-rabbit.

const DEPTH = 1_000_000;
/** `[[[…1…]]]`, DEPTH levels: 2 MB of text, far under maxMessageSize. */
const deep = `${'['.repeat(DEPTH)}1${']'.repeat(DEPTH)}`;
/**
 * Parsing this text blocked the event loop for seconds before the limit; refusing it must not
 * block it for more than this (wide: the machine running the tests is shared).
 */
const STALL_MS = 2500;

class Open {
  static readonly contracts = { anything: { args: { type: 'object', additionalProperties: true } } };
  runs = 0;
  untyped(_ctx: Context, args: unknown) {
    this.runs++;
    return args;
  }
  anything(_ctx: Context, args: unknown) {
    this.runs++;
    return args;
  }
}

const failureOf = (f: unknown) => (typeof f === 'string' ? JSON.parse(f) : f) as { class: string; message: string };

const t = suite('contracts: a default depth limit against hostile nesting (memory, amqp1)');

t('memory: 1,000,000 levels to a method without a contract or with an open schema: NestingTooDeep at once, nothing runs', async () => {
  const transport = await getTransport('memory://contracts-depth', { config: defaultConfig() });
  const open = new Open();
  const server = new RPCServer(transport, new Target({ topic: 'd', server: 's' }), [open]);
  await server.start();
  try {
    const broker = memoryBroker('contracts-depth');
    broker.declareQueue('raw-replies');
    const replies: Array<{ msgId: string; result?: unknown; failure?: unknown }> = [];
    broker.consume('raw-replies', {
      prefetch: Number.POSITIVE_INFINITY,
      inFlight: 0,
      deliver: (d) => {
        d.done();
        replies.push(JSON.parse(d.body));
      },
    });
    const body = (msgId: string, method: string, args: string) =>
      `{"ctx":{},"message":{"method":"${method}","args":${args}},"msgId":"${msgId}","replyTo":"raw-replies"}`;
    const bodies = [
      body('untyped', 'untyped', `{"x":${deep}}`),
      body('anything', 'anything', `{"x":${deep}}`),
      body('ok', 'untyped', '{"x":[[1]]}'),
    ];
    const stall = await longestStall(async () => {
      for (const b of bodies) broker.publish('openstack', 'd', b);
      await until(() => replies.length === 3, 'three replies');
    });
    const by = new Map(replies.map((r) => [r.msgId, r]));
    for (const id of ['untyped', 'anything']) {
      const f = failureOf(by.get(id)!.failure);
      assert.is(f.class, 'NestingTooDeep', id);
      assert.match(f.message, /deeper than 128 levels \(maxJsonDepth\)/);
    }
    assert.equal(by.get('ok')!.result, { x: [[1]] });
    assert.ok(stall < STALL_MS, `the event loop stalled ${stall.toFixed(0)} ms`);
    assert.is(open.runs, 1, 'only the clean call ran');
  } finally {
    await server.stop();
    await server.wait(1000);
    await transport.close();
  }
});

t('amqp1: 1,000,000 levels through the embedded router from a raw rhea peer: NestingTooDeep at once, nothing runs', async () => {
  const router = new Router({ port: 0 });
  await router.start();
  const transport = await getTransport(`amqp://127.0.0.1:${router.port}/`, { config: defaultConfig() });
  const open = new Open();
  const server = new RPCServer(transport, new Target({ topic: 'd', server: 's' }), [open]);
  await server.start();
  const peer = await rheaConnect(router.port);
  try {
    const replies: Array<{ id: unknown; body: { response?: unknown; failure?: unknown } }> = [];
    const rr = peer.open_receiver({ source: { dynamic: true } } as never);
    rr.on('message', (e: rhea.EventContext) => {
      replies.push({ id: e.message!.correlation_id, body: JSON.parse(String(e.message!.body)) });
    });
    await new Promise((res) => rr.once('receiver_open', res));
    const replyTo = (rr.source as { address: string }).address;
    const s = peer.open_sender('openstack.org/om/rpc/anycast/openstack/d');
    await new Promise((res) => s.once('sendable', res));
    const message = (id: string, method: string, args: string) => ({
      body: `{"request":{"method":"${method}","args":${args}},"context":{}}`,
      message_id: id,
      reply_to: replyTo,
    });
    const messages = [
      message('untyped', 'untyped', `{"x":${deep}}`),
      message('anything', 'anything', `{"x":${deep}}`),
      message('ok', 'untyped', '{"x":[[1]]}'),
    ];
    // The router runs in this process too: its handling of the 4 MB of frames is in the figure.
    const stall = await longestStall(async () => {
      for (const m of messages) s.send(m as never);
      await until(() => replies.length === 3, 'three replies', 10_000);
    });
    const by = new Map(replies.map((r) => [r.id, r]));
    for (const id of ['untyped', 'anything']) {
      const f = failureOf(by.get(id)!.body.failure);
      assert.is(f.class, 'NestingTooDeep', id);
      assert.match(f.message, /deeper than 128 levels/);
    }
    assert.equal(by.get('ok')!.body.response, { x: [[1]] });
    assert.ok(stall < STALL_MS, `the event loop stalled ${stall.toFixed(0)} ms`);
    assert.is(open.runs, 1, 'only the clean call ran');
  } finally {
    await rheaClose(peer);
    await server.stop();
    await server.wait(1000);
    await transport.close();
    await router.stop();
  }
});

t.run();
