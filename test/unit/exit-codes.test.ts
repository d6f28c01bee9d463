import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fetchContract } from '../../src/cli/contract-args.js';
import { describeFailure, EXIT } from '../../src/cli/exit-codes.js';
import { type Context, getTransport, InvalidArgument, MessagingTimeout, RPCClient, RPCServer, Target } from '../../src/index.js';

// rpc-client's exit status comes from the error's code, but a rebuilt remote error keeps its local
// class: a method whose own call elsewhere timed out made rpc-client say "timeout" and exit 3, as
// if nobody had answered this call.

const t = suite('exit statuses of errors that crossed the wire');

t(
  'a remote MessagingTimeout is the method failing (1); a local one is a timeout (3); the server refusing arguments stays usage (2)',
  async () => {
    const transport = await getTransport('memory://');
    const server = new RPCServer(transport, new Target({ topic: 'exit-codes', server: 's' }), [
      {
        inner(_ctx: Context) {
          throw new MessagingTimeout('inventory did not answer');
        },
        contracts: { checked: { args: { type: 'object', required: ['n'], properties: { n: { type: 'number' } } } } },
        checked(_ctx: Context, args: { n: number }) {
          return args.n;
        },
        refuse(_ctx: Context) {
          throw new InvalidArgument('n must be positive');
        },
        async slow(_ctx: Context) {
          await new Promise((r) => setTimeout(r, 300));
        },
      },
    ]);
    await server.start();
    const client = new RPCClient(transport, new Target({ topic: 'exit-codes' }));
    const failure = async (method: string, timeout?: number) => {
      try {
        await client.call({}, method, {}, timeout === undefined ? {} : { timeout });
      } catch (err) {
        return describeFailure(err, method);
      }
      throw new Error(`${method} did not fail`);
    };
    try {
      assert.equal(await failure('inner'), { status: EXIT.remote, text: 'remote error: MessagingTimeout: inventory did not answer' });
      assert.equal(await failure('refuse'), { status: EXIT.usage, text: 'n must be positive' });
      const local = await failure('slow', 50);
      assert.is(local.status, EXIT.timeout);
      assert.match(local.text, /^timeout: /);
      assert.equal(await failure('nope'), { status: EXIT.noSuchMethod, text: 'no such method: nope' });
      // A method the server has elsewhere: where, in the server's words (a wrong --namespace).
      const s2 = new RPCServer(transport, new Target({ topic: 'exit-codes2', server: 's' }), [
        { target: new Target({ namespace: 'math', version: '1.3' }), mul: () => 1 },
        { ping: () => 1 },
      ]);
      await s2.start();
      try {
        await new RPCClient(transport, new Target({ topic: 'exit-codes2' })).call({}, 'mul');
        assert.unreachable('mul in the default namespace');
      } catch (err) {
        assert.equal(describeFailure(err, 'mul'), {
          status: EXIT.noSuchMethod,
          text: "no such method: mul (this server has mul in namespace 'math' at version 1.3)",
        });
      } finally {
        await s2.stop();
        await s2.wait(1000);
      }
      // The server's contract refusing the arguments is a usage error too (it exited 1).
      const bad = await failure('checked');
      assert.is(bad.status, EXIT.usage, bad.text);
      assert.match(bad.text, /ContractViolation: arguments of checked break its contract/);
    } finally {
      await server.stop();
      await server.wait(1000);
      await transport.close();
    }
  },
);

t(
  "rpc-client's contract lookup is sent without a call monitor, whatever --monitor says (an oslo server heartbeated into a dead reply queue)",
  async () => {
    const transport = await getTransport('memory://');
    const sent: Array<{ method: unknown; namespace: unknown; monitor: unknown }> = [];
    const send = transport.driver.send.bind(transport.driver);
    transport.driver.send = (target, ctx, request, opts) => {
      sent.push({ method: request.method, namespace: request.namespace, monitor: opts.callMonitorTimeout });
      return send(target, ctx, request, opts);
    };
    const server = new RPCServer(transport, new Target({ topic: 'monitor', server: 's' }), [
      { add: (_c: Context, a: { a: number }) => a.a },
    ]);
    await server.start();
    try {
      const client = new RPCClient(transport, new Target({ topic: 'monitor' }), { callMonitorTimeout: 4000 });
      await fetchContract(client, 'add', 1000);
      // In the call's own (default) namespace, under the name an oslo server logs at DEBUG.
      assert.equal(sent, [{ method: 'hermod_describe_ignore_errors', namespace: undefined, monitor: 0 }]);
    } finally {
      await server.stop();
      await server.wait(1000);
      await transport.close();
    }
  },
);

t.run();
