import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RabbitNode } from '../../scripts/rabbit-node.js';
import { createGateway } from '../../src/gateway/index.js';
import { defaultConfig, getTransport } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { http } from '../in-process/gateway-cases.js';
import { runCli } from '../support/cli-procs.js';
import { OsloPeer } from '../support/oslo.js';

// rpc-client against python3-oslo.messaging servers (14.0.3's amqp1 driver through the embedded
// router; 18.1.0 over RabbitMQ):
// the contract lookup before a call whose values could be read two ways must not land in the
// oslo server's log as an ERROR with a traceback, as `hermod.describe` did (oslo's RPC server
// logs every failed dispatch at ERROR except a NoSuchMethod for a method named `*_ignore_errors`).

interface Ctx {
  router: Router;
  url: string;
  py: OsloPeer;
}
const t = suite<Ctx>('rpc-client against an oslo.messaging server: no ERROR in its log', {} as Ctx);

const ERRORS = /Exception during message handling|NoSuchMethod|UnsupportedVersion|Traceback/;

t.before(async (ctx) => {
  ctx.router = new Router({ port: 0 });
  ctx.url = `amqp://127.0.0.1:${await ctx.router.start()}/`;
  ctx.py = await OsloPeer.start('server', { url: ctx.url, topic: 'osloq', server: 'py1' });
});
t.after(async (ctx) => {
  await ctx.py?.kill();
  await ctx.router?.stop();
});

/** Runs rpc-client, then a second call behind it, so the server has logged all the first one caused. */
async function cli(ctx: Ctx, args: string[]) {
  const r = await runCli('rpc-client', [...args, '--transport-url', ctx.url]);
  const behind = await runCli('rpc-client', ['osloq', 'whoami', '--transport-url', ctx.url]);
  assert.is(behind.code, 0, behind.err);
  return r;
}

t('a call with JSON-typed values works and leaves no ERROR or traceback in the oslo server log', async (ctx) => {
  const r = await cli(ctx, ['osloq', 'add', 'a=1', 'b=2']);
  assert.is(r.code, 0, r.err);
  assert.is(r.out.trim(), '3');
  assert.not.match(ctx.py.stderrText, ERRORS, ctx.py.stderrText);
});

t('a call in a versioned namespace: typed values, no ERROR in the log', async (ctx) => {
  const r = await cli(ctx, ['osloq', 'mul', 'a=6', 'b=7', '--namespace', 'math', '--target-version', '1.2']);
  assert.is(r.code, 0, r.err);
  assert.is(r.out.trim(), '42');
  assert.not.match(ctx.py.stderrText, ERRORS, ctx.py.stderrText);
});

t('a method the oslo server does not have: its NoSuchMethod (exit 4), logged once for the call, nothing for the lookup', async (ctx) => {
  const count = () => ctx.py.stderrText.split('Exception during message handling').length - 1;
  const before = count();
  const r = await cli(ctx, ['osloq', 'nosuch', 'a=1']);
  assert.is(r.code, 4, r.err);
  assert.match(r.err, /nosuch/);
  assert.is(count() - before, 1, ctx.py.stderrText);
  assert.not.match(ctx.py.stderrText, /UnsupportedVersion|Attempted method: describe/, ctx.py.stderrText);
});

t(
  "the gateway with contractTimeout asks each route's oslo servers quietly: no ERROR in their log, the routes still served",
  async (ctx) => {
    const logged = ctx.py.stderrText.length;
    const tr = await getTransport(ctx.url, { config: defaultConfig() });
    const gw = createGateway(tr, {
      listen: { port: 0 },
      contractTimeout: 1500,
      routes: [
        { topic: 'osloq', method: 'add' },
        { topic: 'osloq', method: 'mul', namespace: 'math', version: '1.2' },
      ],
    });
    try {
      const { url } = await gw.start();
      const add = await http(url, 'POST', '/v1/osloq/add', { a: 1, b: 2 });
      assert.is(add.status, 200, add.text);
      assert.equal(add.json, { result: 3 });
      const behind = await runCli('rpc-client', ['osloq', 'whoami', '--transport-url', ctx.url]);
      assert.is(behind.code, 0, behind.err);
      // Before: one "Exception during message handling … UnsupportedVersion … Attempted method:
      // describe" per route target at start(). The previous case's own NoSuchMethod for `nosuch`
      // may still be arriving, so what the lookup caused is told by its method.
      const log = ctx.py.stderrText.slice(logged);
      assert.not.match(log, /UnsupportedVersion|describe/, log);
    } finally {
      await gw.stop();
      await tr.close();
    }
  },
);

t('the same against oslo.messaging 18.1.0 over RabbitMQ (it has no amqp1 driver): typed values, no ERROR in its log', async () => {
  const node = await RabbitNode.shared();
  const vhost = await node.addVhost(`cli-describe-oslo-${process.pid}`);
  const url = node.url(vhost);
  const py18 = await OsloPeer.start('server', { url, topic: 'oslo18q', server: 'py18' }, { version: '18' });
  try {
    const r = await runCli('rpc-client', ['oslo18q', 'add', 'a=1', 'b=2', '--transport-url', url]);
    assert.is(r.code, 0, r.err);
    assert.is(r.out.trim(), '3');
    const behind = await runCli('rpc-client', ['oslo18q', 'whoami', '--transport-url', url]);
    assert.is(behind.out.trim(), 'py18', behind.err);
    assert.not.match(py18.stderrText, ERRORS, py18.stderrText);
  } finally {
    await py18.kill();
    await node.deleteVhost(vhost);
    await node.release();
  }
});

t.run();
