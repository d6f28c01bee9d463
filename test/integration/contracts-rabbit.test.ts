import amqplib from 'amqplib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RabbitNode } from '../../scripts/rabbit-node.js';
import { type Context, defaultConfig, getTransport, RPCServer, Target, type Transport } from '../../src/index.js';
import { until } from '../support/assert.js';
import { Calculator, contractSuite, longestStall } from '../support/contract-cases.js';
import { OsloPeer, osloAvailable, type PyError } from '../support/oslo.js';

// The contract cases every driver passes, in a vhost of their own.
contractSuite('contracts over RabbitMQ', async () => {
  const node = await RabbitNode.shared();
  const vhost = await node.addVhost(`contract-cases-${process.pid}`);
  return {
    url: node.url(vhost),
    unservedTimeout: () => /Timed out/,
    stop: async () => {
      await node.deleteVhost(vhost);
      await node.release();
    },
  };
}).run();

// A python3-oslo.messaging caller breaking a hermod method's contract.
interface Ctx {
  node: RabbitNode;
  vhost: string;
  transport: Transport;
  server: RPCServer;
  py: OsloPeer;
  calc: Calculator;
}
const t = suite<Ctx>('contracts: an oslo.messaging caller', {} as Ctx);

t.before(async (ctx) => {
  if (!osloAvailable()) throw new Error('python3-oslo.messaging is not installed (.ci/run installs it)');
  ctx.node = await RabbitNode.shared();
  ctx.vhost = await ctx.node.addVhost(`contracts-oslo-${process.pid}`);
  const url = ctx.node.url(ctx.vhost);
  ctx.transport = await getTransport(url, { config: defaultConfig() });
  ctx.calc = new Calculator();
  ctx.server = new RPCServer(ctx.transport, new Target({ topic: 'calc', server: 'h1' }), [ctx.calc]);
  const [py] = await Promise.all([OsloPeer.start('client', { url }), ctx.server.start()]);
  ctx.py = py;
});
t.after(async (ctx) => {
  await ctx.py?.stop();
  await ctx.server?.stop();
  await ctx.server?.wait(1000);
  await ctx.transport?.close();
  await ctx.node.deleteVhost(ctx.vhost);
  await ctx.node.release();
});

t('a Python caller gets a RemoteError of type ContractViolation listing each violation; good calls pass', async (ctx) => {
  assert.is(await ctx.py.call({ topic: 'calc', method: 'add', args: { a: 40, b: 2 } }), 42);
  let err: PyError | undefined;
  try {
    await ctx.py.call({ topic: 'calc', method: 'add', args: { a: 'forty', c: 1 } });
  } catch (e) {
    err = (e as { py: PyError }).py;
  }
  assert.ok(err, 'the call must fail');
  assert.is(err!.class, 'RemoteError');
  assert.is(err!.exc_type, 'ContractViolation');
  assert.match(err!.value!, /^arguments of add break its contract: /);
  assert.match(err!.value!, /\/a must be number/);
  assert.match(err!.value!, /\/b is required/);
  assert.match(err!.value!, /\/c is not allowed here/);
  assert.is(ctx.calc.runs, 1, 'the bad call never ran');
});

t('a Python caller reads the contracts from hermod.describe', async (ctx) => {
  const d = (await ctx.py.call({ topic: 'calc', method: 'describe', namespace: 'hermod', version: '1.0' })) as {
    endpoints: Array<{ namespace: string | null; methods: Record<string, { args: { required?: string[] } } | null> }>;
  };
  const calc = d.endpoints.find((e) => e.namespace === null)!;
  assert.equal(calc.methods.add!.args.required, ['a', 'b']);
});

t.run();

// A hostile peer's 1,000,000-level arguments, published with raw amqplib (no client can encode them).
const h = suite('contracts: a default depth limit against hostile nesting on RabbitMQ');

h('1,000,000 levels to a method without a contract or with an open schema: NestingTooDeep at once, nothing runs', async () => {
  const node = await RabbitNode.shared();
  const vhost = await node.addVhost(`contracts-depth-${process.pid}`);
  const transport = await getTransport(node.url(vhost), { config: defaultConfig() });
  let runs = 0;
  const open = {
    contracts: { anything: { args: { type: 'object', additionalProperties: true } } },
    untyped: (_ctx: Context, args: unknown) => (runs++, args),
    anything: (_ctx: Context, args: unknown) => (runs++, args),
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
