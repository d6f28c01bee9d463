import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Type } from 'typebox';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type Context,
  ContractViolation,
  defaultConfig,
  defineContracts,
  getTransport,
  NestingTooDeep,
  RPCClient,
  RPCServer,
  type ServerDescription,
  Target,
  type Transport,
} from '../../src/index.js';
import { rejects, until } from './assert.js';
import { OsloPeer, osloAvailable, type PyError } from './oslo.js';
import type { RpcBroker } from './rpc-cases.js';

/** Contracts written with TypeBox: static types and JSON Schema from one object. */
export const calculatorContracts = defineContracts({
  add: {
    args: Type.Object({ a: Type.Number(), b: Type.Number() }),
    result: Type.Number(),
    description: 'Adds two numbers.',
  },
  tag: {
    args: Type.Object({
      name: Type.String({ maxLength: 16 }),
      labels: Type.Optional(Type.Array(Type.String({ maxLength: 8 }), { maxItems: 4 })),
      meta: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { maxProperties: 4, maxDepth: 3 })),
    }),
    result: Type.String(),
  },
  open: { args: Type.Object({ id: Type.Integer() }, { additionalProperties: true }) },
  // A contract whose result schema the method breaks: caught only with validateResults.
  drift: { args: Type.Object({}), result: Type.Number() },
});

/** An endpoint with contracts; `runs` counts method runs, so a test sees that a refused call never ran. */
export class Calculator {
  static readonly contracts = calculatorContracts;
  runs = 0;
  add(_ctx: Context, { a, b }: { a: number; b: number }): number {
    this.runs++;
    return a + b;
  }
  tag(_ctx: Context, { name, labels }: { name: string; labels?: string[] }): string {
    this.runs++;
    return [name, ...(labels ?? [])].join(',');
  }
  open(_ctx: Context, args: { id: number }): unknown {
    this.runs++;
    return args;
  }
  drift(_ctx: Context): unknown {
    this.runs++;
    return 'not a number';
  }
  untyped(_ctx: Context, args: unknown): unknown {
    this.runs++;
    return args;
  }
}

/** A second version of an API in another namespace, for describe. */
export class StoreV2 {
  readonly target = new Target({ namespace: 'store', version: '2.1' });
  static readonly contracts = defineContracts({ get: { args: Type.Object({ key: Type.String() }) } });
  get(_ctx: Context, { key }: { key: string }): string {
    return key;
  }
}

interface Ctx {
  broker: RpcBroker;
  transports: Transport[];
  servers: RPCServer[];
}

/** The contract cases every driver must pass: memory://, the embedded router and RabbitMQ. */
export function contractSuite(name: string, broker: () => Promise<RpcBroker>) {
  const t = suite<Ctx>(name, {} as Ctx);
  t.before(async (ctx) => {
    ctx.broker = await broker();
  });
  t.after(async (ctx) => {
    await ctx.broker?.stop();
  });
  t.before.each((ctx) => {
    ctx.transports = [];
    ctx.servers = [];
  });
  t.after.each(async (ctx) => {
    for (const s of ctx.servers) {
      await s.stop();
      await s.wait(1000);
    }
    for (const tr of ctx.transports) await tr.close();
  });

  let n = 0;
  const topic = (what: string) => `${what}-${++n}`;
  async function transport(ctx: Ctx, overrides: Record<string, unknown> = {}): Promise<Transport> {
    const tr = await getTransport(ctx.broker.url, { config: defaultConfig(), overrides });
    ctx.transports.push(tr);
    return tr;
  }
  async function serve(ctx: Ctx, endpoints: object[], opts = {}, overrides: Record<string, unknown> = {}) {
    const tp = topic('contracts');
    const s = new RPCServer(await transport(ctx, overrides), new Target({ topic: tp, server: 's1' }), endpoints, opts);
    await s.start();
    ctx.servers.push(s);
    return { server: s, client: new RPCClient(await transport(ctx, overrides), new Target({ topic: tp }), { timeout: 5000 }) };
  }

  t('a call that meets its contract runs; the typed proxy takes its types from the contracts', async (ctx) => {
    const calc = new Calculator();
    const { client } = await serve(ctx, [calc]);
    const calcProxy = client.proxy({}, { contracts: Calculator.contracts });
    const sum: number = await calcProxy.add({ a: 40, b: 2 });
    assert.is(sum, 42);
    assert.is(await calcProxy.tag({ name: 'n', labels: ['x', 'y'] }), 'n,x,y');
    assert.equal(await client.call({}, 'open', { id: 7, extra: 'allowed by its schema' }), { id: 7, extra: 'allowed by its schema' });
    assert.equal(await client.call({}, 'untyped', { anything: [1] }), { anything: [1] }, 'a method without a contract is unchecked');
    assert.is(calc.runs, 4);
  });

  t('wrong types, missing and unknown names: ContractViolation listing each path, the method never runs', async (ctx) => {
    const calc = new Calculator();
    const { client, server } = await serve(ctx, [calc]);
    const err = (await rejects(client.call({}, 'add', { a: '1', c: 3 }), 'HERMOD_ERR_CONTRACT_VIOLATION')) as ContractViolation;
    assert.ok(err instanceof ContractViolation, 'rebuilt as its class');
    assert.equal(
      err.violations.map((v) => v.path).sort(),
      ['/a', '/b', '/c'],
      `one violation per problem: ${JSON.stringify(err.violations)}`,
    );
    assert.match(err.message, /arguments of add break its contract: .*\/a must be number/);
    assert.match(err.message, /\/b is required/);
    assert.match(err.message, /\/c is not allowed here/);
    assert.is(calc.runs, 0, 'the method did not run');
    // Counted once the reply is sent, which on RabbitMQ is when the broker confirms it: the
    // caller may hold the failure a moment earlier (CI on Node 24 saw 0 here).
    await until(() => server.stats().failed === 1, 'the refused call counted as failed', 2000);
  });

  t('bounds stop oversized and deeply nested arguments before the method runs', async (ctx) => {
    const calc = new Calculator();
    const { client } = await serve(ctx, [calc]);
    await rejects(
      client.call({}, 'tag', { name: 'x'.repeat(17) }),
      'HERMOD_ERR_CONTRACT_VIOLATION',
      /\/name must NOT have more than 16 characters/,
    );
    await rejects(
      client.call({}, 'tag', { name: 'n', labels: ['a', 'b', 'c', 'd', 'e'] }),
      'HERMOD_ERR_CONTRACT_VIOLATION',
      /\/labels must NOT have more than 4 items/,
    );
    await rejects(
      client.call({}, 'tag', { name: 'n', meta: { a: 1, b: 2, c: 3, d: 4, e: 5 } }),
      'HERMOD_ERR_CONTRACT_VIOLATION',
      /\/meta must NOT have more than 4 properties/,
    );
    await rejects(
      client.call({}, 'tag', { name: 'n', meta: { a: { b: { c: { d: 1 } } } } }),
      'HERMOD_ERR_CONTRACT_VIOLATION',
      /\/meta nests deeper than its maxDepth allows/,
    );
    assert.is(await client.call({}, 'tag', { name: 'n', meta: { a: { b: { c: 1 } } } }), 'n', 'three levels are allowed');
    assert.is(calc.runs, 1, 'only the call within bounds ran');
  });

  t(
    'a default depth limit: arguments nested past maxJsonDepth (128) are NestingTooDeep, contract or none; it is configurable',
    async (ctx) => {
      const calc = new Calculator();
      const { client, server } = await serve(ctx, [calc]);
      const nest = (n: number) => {
        let v: unknown = 1;
        for (let i = 0; i < n; i++) v = [v];
        return v;
      };
      // `untyped` has no contract; `open`'s schema allows any other names with any values.
      for (const method of ['untyped', 'open']) {
        const err = await rejects(
          client.call({}, method, { id: 1, deep: nest(1000) }),
          'HERMOD_ERR_NESTING_TOO_DEEP',
          /deeper than 128 levels/,
        );
        assert.ok(err instanceof NestingTooDeep, 'rebuilt as its class');
        assert.is((err as NestingTooDeep).limit, 128);
      }
      assert.is(calc.runs, 0, 'neither method ran');
      assert.equal(await client.call({}, 'untyped', { deep: nest(100) }), { deep: nest(100) }, 'within the limit');
      // Counted once its reply is away (on RabbitMQ, once confirmed); the refused calls never are.
      await until(() => server.stats().served === 1, 'the one served call counted');
      const wide = await serve(ctx, [calc], {}, { maxJsonDepth: 2000 });
      assert.equal(
        await wide.client.call({}, 'open', { id: 1, deep: nest(1000) }),
        { id: 1, deep: nest(1000) },
        'maxJsonDepth 2000 lets it in',
      );
    },
  );

  t('result validation is opt-in: a result that drifted from its contract is caught only with validateResults', async (ctx) => {
    const loose = await serve(ctx, [new Calculator()]);
    assert.is(await loose.client.call({}, 'drift'), 'not a number');
    const strict = await serve(ctx, [new Calculator()], { validateResults: true });
    await rejects(
      strict.client.call({}, 'drift'),
      'HERMOD_ERR_CONTRACT_VIOLATION',
      /the result of drift breaks its contract: \/ must be number/,
    );
    assert.is(await strict.client.call({}, 'add', { a: 1, b: 2 }), 3);
  });

  t('the client-side check fails a bad call before it is sent', async (ctx) => {
    const calc = new Calculator();
    const { client, server } = await serve(ctx, [calc]);
    const checked = client.proxy({}, { contracts: Calculator.contracts, check: true });
    // @ts-expect-error b must be a number: tsc refuses it too
    const err = await rejects(checked.add({ a: 1, b: 'two' }), 'HERMOD_ERR_CONTRACT_VIOLATION', /\/b must be number/);
    assert.not.ok('remote' in err, 'raised locally, not by the server');
    assert.is(server.stats().served, 0, 'nothing reached the server');
    assert.is(await checked.add({ a: 1, b: 2 }), 3);
  });

  t('hermod.ping and hermod.describe: every endpoint with its namespace, version and contracts; load and counters', async (ctx) => {
    const { client } = await serve(ctx, [new Calculator(), new StoreV2()], { concurrency: 7 });
    assert.is(await client.call({}, 'add', { a: 1, b: 1 }), 2);
    const hermod = client.prepare({ namespace: 'hermod', version: '1.0' });
    const pong = await hermod.call<{ pong: boolean; server: string }>({}, 'ping');
    assert.is(pong.pong, true);
    assert.is(pong.server, 's1');
    const d = await hermod.call<ServerDescription>({}, 'describe');
    assert.is(d.server, 's1');
    assert.is(d.concurrency, 7);
    assert.ok(d.uptimeMs >= 0 && d.pid > 0 && d.host.length > 0);
    assert.is(d.stats.served, 2, 'add and ping served before describe');
    const byNs = Object.fromEntries(d.endpoints.map((e) => [`${e.namespace}@${e.version}`, e]));
    assert.equal(Object.keys(byNs).sort(), ['hermod@1.0', 'null@1.0', 'store@2.1']);
    const calc = byNs['null@1.0']!;
    assert.equal(Object.keys(calc.methods), ['add', 'drift', 'open', 'tag', 'untyped']);
    assert.equal(calc.methods.add, JSON.parse(JSON.stringify(calculatorContracts.add)), 'the schemas as declared');
    assert.is(calc.methods.untyped, null, 'no contract declared');
    assert.equal(Object.keys(byNs['store@2.1']!.methods), ['get']);
    // One entry per namespace and version: the job methods and the introspection were two.
    assert.is(d.endpoints.length, 3);
    assert.equal(Object.keys(byNs['hermod@1.0']!.methods), ['job_cancel', 'job_result', 'job_status', 'jobs', 'describe', 'ping']);
    // The exchange it listens on, the control exchange (it said null).
    assert.is(d.exchange, 'openstack');
    // The hermod namespace enforces its own contracts.
    await rejects(hermod.call({}, 'ping', { x: 1 }), 'HERMOD_ERR_CONTRACT_VIOLATION', /\/x is not allowed/);
  });

  t('introspection off: ping and describe are not served (the job methods keep the namespace)', async (ctx) => {
    const { client } = await serve(ctx, [new Calculator()], { introspection: false });
    const hermod = client.prepare({ namespace: 'hermod', version: '1.0' });
    await rejects(hermod.call({}, 'ping'), 'HERMOD_ERR_NO_SUCH_METHOD');
    await rejects(hermod.call({}, 'describe'), 'HERMOD_ERR_NO_SUCH_METHOD');
    assert.is(await client.call({}, 'add', { a: 2, b: 2 }), 4);
  });

  return t;
}

/** Watches the event loop while `fn` runs; resolves with its longest stall, ms. */
export async function longestStall(fn: () => Promise<void>): Promise<number> {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  // The histogram's timer must be running before the work starts, and tick once after it ends.
  const tick = () => new Promise((r) => setTimeout(r, 30));
  try {
    await tick();
    await fn();
    await tick();
  } finally {
    h.disable();
  }
  return h.max / 1e6;
}

interface OsloCtx {
  broker: { url: string; stop(): Promise<void> };
  transport: Transport;
  server: RPCServer;
  py: OsloPeer;
  calc: Calculator;
}

/**
 * A python3-oslo.messaging caller (the driver its URL picks: rabbit, or amqp1 through a router)
 * breaking a hermod method's contract, and reading the contracts from hermod.describe.
 */
export function osloContractSuite(name: string, broker: () => Promise<{ url: string; stop(): Promise<void> }>) {
  const t = suite<OsloCtx>(name, {} as OsloCtx);
  t.before(async (ctx) => {
    if (!osloAvailable()) throw new Error('python3-oslo.messaging is not installed (.ci/run installs it)');
    ctx.broker = await broker();
    ctx.transport = await getTransport(ctx.broker.url, { config: defaultConfig() });
    ctx.calc = new Calculator();
    ctx.server = new RPCServer(ctx.transport, new Target({ topic: 'calc', server: 'h1' }), [ctx.calc]);
    const [py] = await Promise.all([OsloPeer.start('client', { url: ctx.broker.url }), ctx.server.start()]);
    ctx.py = py;
  });
  t.after(async (ctx) => {
    await ctx.py?.kill();
    await ctx.server?.stop();
    await ctx.server?.wait(1000);
    await ctx.transport?.close();
    await ctx.broker?.stop();
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
      server: string;
      endpoints: Array<{ namespace: string | null; version: string; methods: Record<string, { args: { required?: string[] } } | null> }>;
    };
    assert.is(d.server, 'h1');
    const calc = d.endpoints.find((e) => e.namespace === null)!;
    assert.is(calc.version, '1.0');
    assert.equal(calc.methods.add!.args.required, ['a', 'b']);
    assert.equal(calc.methods.add, JSON.parse(JSON.stringify(calculatorContracts.add)), 'the schemas as declared');
    assert.is(calc.methods.untyped, null, 'no contract declared');
  });

  return t;
}
