import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RabbitNode } from '../../scripts/rabbit-node.js';
import { defaultConfig, getTransport, RPCServer, Target, type Transport } from '../../src/index.js';
import { Calculator, contractSuite } from '../support/contract-cases.js';
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
