import amqplib from 'amqplib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RabbitNode } from '../../scripts/rabbit-node.js';
import { type Context, defaultConfig, getTransport, RPCServer, Target } from '../../src/index.js';
import { until } from '../support/assert.js';
import { contractSuite, longestStall, osloContractSuite } from '../support/contract-cases.js';
import { sharedVhost } from '../support/rabbit-vhost.js';

// The contract cases every driver passes, in a vhost of their own.
contractSuite(
  'contracts over RabbitMQ',
  sharedVhost('contract-cases', {
    unservedTimeout: () => /Timed out/,
  }),
).run();

// A python3-oslo.messaging caller (its rabbit driver) breaking a hermod method's contract and reading describe.
osloContractSuite('contracts: an oslo.messaging caller over RabbitMQ', sharedVhost('contracts-oslo')).run();

// A hostile peer's 1,000,000-level arguments, published with raw amqplib (no client can encode them).
const h = suite('contracts: a default depth limit against hostile nesting on RabbitMQ');

h('1,000,000 levels to a method without a contract or with an open schema: NestingTooDeep at once, nothing runs', async () => {
  const node = await RabbitNode.shared();
  const vhost = await node.addVhost(`contracts-depth-${process.pid}`);
  const transport = await getTransport(node.url(vhost), { config: defaultConfig() });
  let runs = 0;
  const open = {
    contracts: { anything: { args: { type: 'object', additionalProperties: true } } },
    untyped(_ctx: Context, args: unknown) {
      runs++;
      return args;
    },
    anything(_ctx: Context, args: unknown) {
      runs++;
      return args;
    },
  };
  const server = new RPCServer(transport, new Target({ topic: 'd', server: 's' }), [open]);
  await server.start();
  const raw = await amqplib.connect(`amqp://guest:guest@127.0.0.1:${node.port}/${encodeURIComponent(vhost)}`);
  try {
    const ch = await raw.createChannel();
    const replies: Array<{ _msg_id: string; result: unknown; failure: string | null }> = [];
    await ch.assertQueue('raw-replies', { exclusive: true });
    await ch.consume(
      'raw-replies',
      (m) => {
        if (m) replies.push(JSON.parse(JSON.parse(m.content.toString())['oslo.message']));
      },
      { noAck: true },
    );
    const depth = 1_000_000;
    const deep = `${'['.repeat(depth)}1${']'.repeat(depth)}`;
    const body = (id: string, method: string, args: string) => {
      const inner = `{"method":"${method}","args":${args},"_unique_id":"u-${id}","_msg_id":"${id}","_reply_q":"raw-replies","_timeout":null}`;
      return Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': inner }));
    };
    // Receiving 2 MB from the broker stalls the loop whatever the body holds: two flat bodies of the
    // same size (answered NoSuchMethod) give the baseline. Parsing the deep ones took seconds more before the limit.
    const flat = `{"x":"${'x'.repeat(2 * depth)}"}`;
    const flatBodies = [body('flat1', 'missing', flat), body('flat2', 'missing', flat)];
    const baseline = await longestStall(async () => {
      for (const b of flatBodies) ch.publish('openstack', 'd', b);
      await until(() => replies.length === 2, 'two replies', 15_000);
    });
    const bodies = [
      body('untyped', 'untyped', `{"x":${deep}}`),
      body('anything', 'anything', `{"x":${deep}}`),
      body('ok', 'untyped', '{"x":[[1]]}'),
    ];
    const stall = await longestStall(async () => {
      for (const b of bodies) ch.publish('openstack', 'd', b);
      await until(() => replies.length === 5, 'five replies', 15_000);
    });
    const by = new Map(replies.map((r) => [r._msg_id, r]));
    for (const id of ['untyped', 'anything']) {
      const f = JSON.parse(by.get(id)!.failure!) as { class: string; message: string };
      assert.is(f.class, 'NestingTooDeep', id);
      assert.match(f.message, /deeper than 128 levels \(maxJsonDepth\)/);
    }
    assert.equal(by.get('ok')!.result, { x: [[1]] });
    assert.ok(
      stall < baseline + 1000,
      `the event loop stalled ${stall.toFixed(0)} ms (${baseline.toFixed(0)} ms for flat bodies of the same size)`,
    );
    assert.is(runs, 1, 'only the clean call ran');
  } finally {
    await raw.close().catch(() => {});
    await server.stop();
    await server.wait(1000);
    await transport.close();
    await node.deleteVhost(vhost);
    await node.release();
  }
});

h.run();
