import diagnostics_channel from 'node:diagnostics_channel';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { MemoryDriver } from '../../src/driver/memory/index.js';
import { defaultConfig, getTransport, RPCClient, RPCServer, Target, type Transport } from '../../src/index.js';
import { rejects, until } from '../support/assert.js';
import { Recorder } from '../support/endpoints.js';
import { rpcSuite } from '../support/rpc-cases.js';

// The RPC cases every driver passes, on an in-process broker of its own.
rpcSuite('rpc over memory', async () => ({
  url: 'memory://rpc-cases',
  unservedTimeout: (ms) => new RegExp(`after ${ms} ms`),
  stop: async () => {},
})).run();

// What only the memory driver has: named in-process brokers, and a broker to inject raw bodies into.

let n = 0;
const fresh = () => `rpc${++n}`;

interface Ctx {
  transport: Transport;
  servers: RPCServer[];
}
const t = suite<Ctx>('rpc over memory: in-process brokers', { transport: undefined as never, servers: [] });

t.before.each(async (ctx) => {
  ctx.transport = await getTransport(`memory://${fresh()}`, { config: defaultConfig() });
  ctx.servers = [];
});
t.after.each(async (ctx) => {
  for (const s of ctx.servers) {
    await s.stop();
    await s.wait(1000);
  }
  await ctx.transport.close();
});

async function serve(ctx: Ctx, topic: string, server: string, endpoints: object[], opts = {}, transport = ctx.transport) {
  const s = new RPCServer(transport, new Target({ topic, server }), endpoints, opts);
  await s.start();
  ctx.servers.push(s);
  return s;
}

t('transports sharing a memory:// name talk to each other; other names do not', async (ctx) => {
  const name = fresh();
  const t1 = await getTransport(`memory://${name}`, { config: defaultConfig() });
  const t2 = await getTransport(`memory://${name}`, { config: defaultConfig() });
  const t3 = await getTransport(`memory://${fresh()}`, { config: defaultConfig() });
  try {
    await serve(ctx, 'x', 's', [new Recorder('s')], {}, t1);
    assert.is(await new RPCClient(t2, new Target({ topic: 'x' }), { timeout: 1000 }).call({}, 'whoami'), 's');
    await rejects(new RPCClient(t3, new Target({ topic: 'x' }), { timeout: 50 }).call({}, 'whoami'), 'HERMOD_ERR_TIMEOUT');
  } finally {
    for (const s of ctx.servers.splice(0)) {
      await s.stop();
      await s.wait();
    }
    await t1.close();
    await t2.close();
    await t3.close();
  }
});

t('raw garbage straight into the topic queue: dropped and reported, not a crash', async (ctx) => {
  await serve(ctx, 'raw', 's', [new Recorder('s')]);
  const invalid: unknown[] = [];
  const sub = (e: unknown) => invalid.push(e);
  diagnostics_channel.subscribe('hermod:message:invalid', sub);
  try {
    const broker = (ctx.transport.driver as MemoryDriver).broker;
    broker.publish('openstack', 'raw', '{not json');
    broker.publish('openstack', 'raw', '{"ctx":{}}');
    await until(() => invalid.length === 2, 'two invalid-message events');
  } finally {
    diagnostics_channel.unsubscribe('hermod:message:invalid', sub);
  }
  const c = new RPCClient(ctx.transport, new Target({ topic: 'raw' }), { timeout: 1000 });
  assert.is(await c.call({}, 'add', { a: 1, b: 2 }), 3);
});

t(
  'a value String() cannot convert (an object without a prototype) thrown by a method is a NonErrorThrown failure; the slot is freed',
  async (ctx) => {
    const bare = () => Object.create(null) as unknown;
    await serve(
      ctx,
      'bare',
      's1',
      [
        {
          async bad() {
            throw bare();
          },
          async ping() {
            return 'pong';
          },
        },
      ],
      { concurrency: 1 },
    );
    const c = new RPCClient(ctx.transport, new Target({ topic: 'bare' }), { timeout: 2000 });
    // Before: the catch's String(err) threw again, the caller waited out its timeout and the one
    // slot was never given back, so ping timed out too.
    await rejects(() => c.call({}, 'bad', {}), 'HERMOD_ERR_REMOTE', /NonErrorThrown/);
    assert.is(await c.call({}, 'ping', {}), 'pong');
  },
);

t(
  'errors whose fields cannot be read (a throwing message getter, an object message, a non-string stack, a hostile Proxy) still get a failure reply; the slot is freed',
  async (ctx) => {
    const getterThrows = () => {
      const e = new Error('x');
      Object.defineProperty(e, 'message', {
        get() {
          throw new Error('no message for you');
        },
      });
      return e;
    };
    const objectMessage = () => {
      const e = new Error('x');
      (e as unknown as { message: unknown }).message = { code: 7 };
      (e as unknown as { stack: unknown }).stack = 42;
      return e;
    };
    const proxy = () =>
      new Proxy(
        {},
        {
          getPrototypeOf() {
            throw new Error('trap');
          },
          get() {
            throw new Error('trap');
          },
        },
      );
    await serve(
      ctx,
      'unreadable',
      's1',
      [
        {
          async getter() {
            throw getterThrows();
          },
          async object() {
            throw objectMessage();
          },
          async proxy() {
            throw proxy();
          },
          async ping() {
            return 'pong';
          },
        },
      ],
      { concurrency: 1, sendTraceback: true },
    );
    const c = new RPCClient(ctx.transport, new Target({ topic: 'unreadable' }), { timeout: 2000 });
    // Before: serializeFailure threw inside run()'s catch (err.message's getter, err.stack.split,
    // instanceof on the Proxy), so no reply was sent and the one slot was never given back.
    await rejects(() => c.call({}, 'getter', {}), 'HERMOD_ERR_REMOTE', /could not be read: Error: no message for you/);
    await rejects(() => c.call({}, 'object', {}), 'HERMOD_ERR_REMOTE', /\{"code":7\}/);
    await rejects(() => c.call({}, 'proxy', {}), 'HERMOD_ERR_REMOTE', /could not be read/);
    assert.is(await c.call({}, 'ping', {}), 'pong');
  },
);

t.run();
