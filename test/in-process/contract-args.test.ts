import { Type } from 'typebox';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { coerceArgs, fetchContract, needsContract, typeText, usage } from '../../src/cli/contract-args.js';
import { DemoEndpoints } from '../../src/cli/demo-endpoints.js';
import { parseKeyValues } from '../../src/cli/key-values.js';
import {
  type Context,
  defaultConfig,
  defineContracts,
  getTransport,
  QUIET_DESCRIBE,
  RPCClient,
  RPCServer,
  type ServerDescription,
  Target,
  type Transport,
} from '../../src/index.js';
import { rejects } from '../support/assert.js';

// rpc-client's use of published contracts, against a real server (the demo endpoints) over memory://.

interface Ctx {
  transport: Transport;
  server: RPCServer;
}
const t = suite<Ctx>('cli: contract-driven arguments and usage', {} as Ctx);
t.before(async (ctx) => {
  ctx.transport = await getTransport('memory://contract-args', { config: defaultConfig() });
  ctx.server = new RPCServer(ctx.transport, new Target({ topic: 'demo', server: 's1' }), [new DemoEndpoints('s1')]);
  await ctx.server.start();
});
t.after(async (ctx) => {
  await ctx.server.stop();
  await ctx.server.wait(1000);
  await ctx.transport.close();
});

t('the demo add contract is fetched from hermod.describe; a=1 becomes a number, and the call succeeds', async (ctx) => {
  const client = new RPCClient(ctx.transport, new Target({ topic: 'demo' }), { timeout: 2000 });
  const add = await fetchContract(client, 'add', 1000);
  assert.ok(add, 'published');
  assert.equal(add, DemoEndpoints.contracts.add);
  const args = coerceArgs(['a=1', 'b=41'], add);
  assert.equal(args, { a: 1, b: 41 });
  assert.is(await client.call({}, 'add', args), 42);
  assert.is(await fetchContract(client, 'nope', 1000), undefined, 'a method without a contract');
});

t('where the schema says string, text stays text (message=123 is "123"); unknown names parse as JSON', async (ctx) => {
  const client = new RPCClient(ctx.transport, new Target({ topic: 'demo' }), { timeout: 2000 });
  const fail = await fetchContract(client, 'fail', 1000);
  assert.equal(coerceArgs(['message=123', 'other=7'], fail), { message: '123', other: 7 });
  assert.equal(coerceArgs(['message=123']), { message: 123 }, 'without a contract: JSON when it parses');
  // The demo server refuses the number by its contract: what coercion saves the user from.
  await rejects(client.call({}, 'fail', { message: 123 }), 'HERMOD_ERR_CONTRACT_VIOLATION', /\/message must be string/);
  await rejects(client.call({}, 'fail', coerceArgs(['message=123'], fail)), 'HERMOD_ERR_REMOTE', /123/);
  assert.equal(
    coerceArgs(['mode=1', 'n=true', 'xs=[1,2]'], {
      args: {
        type: 'object',
        properties: { mode: { enum: ['1', '2'] }, n: { type: 'boolean' }, xs: { type: 'array', items: { type: 'number' } } },
      },
    }),
    { mode: '1', n: true, xs: [1, 2] },
  );
  await rejects(() => coerceArgs(['novalue']), 'HERMOD_ERR_USAGE');
  // A number JSON would not carry as written is text where the contract says string, else a
  // usage error (it was sent as 12345678901234567000); needsContract asks for the contract.
  assert.equal(coerceArgs(['message=12345678901234567890'], fail), { message: '12345678901234567890' });
  assert.ok(needsContract(['message=12345678901234567890']));
  await rejects(() => coerceArgs(['message=12345678901234567890']), 'HERMOD_ERR_USAGE', /beyond 2\^53/);
  await rejects(() => coerceArgs(['other=1e400'], fail), 'HERMOD_ERR_USAGE', /would be sent as null/);
  await rejects(() => coerceArgs(['message=a', 'message=b'], fail), 'HERMOD_ERR_USAGE', /message is given twice/);
  assert.equal(Object.keys(coerceArgs(['__proto__=1'])), ['__proto__'], 'an own key, never a prototype');
});

t('a key given twice inside a JSON value is a usage error, as at the top level; text where the contract says string', async (ctx) => {
  const client = new RPCClient(ctx.transport, new Target({ topic: 'demo' }), { timeout: 2000 });
  const fail = await fetchContract(client, 'fail', 1000);
  await rejects(() => coerceArgs(['o={"x":1,"x":2}']), 'HERMOD_ERR_USAGE', /o=\{"x":1,"x":2\}: the key "x" is given twice in one object/);
  await rejects(() => coerceArgs(['o=[{"a":{"x":1,"y":[{}],"\\u0078":2}}]']), 'HERMOD_ERR_USAGE', /the key "x" is given twice/);
  await rejects(() => parseKeyValues(['u={"k":1,"k":1}']), 'HERMOD_ERR_USAGE', /the key "k" is given twice/);
  assert.equal(coerceArgs(['message={"x":1,"x":2}'], fail), { message: '{"x":1,"x":2}' });
  // The same name in other objects, or as a value, is no repeat.
  assert.equal(coerceArgs(['o=[{"x":1},{"x":2}]', 'p={"x":"x","y":{"x":"\\"x\\":"}}']), {
    o: [{ x: 1 }, { x: 2 }],
    p: { x: 'x', y: { x: '"x":' } },
  });
});

t('no contract published (nobody answers, or namespace/version not served): undefined within the timeout', async (ctx) => {
  const nobody = new RPCClient(ctx.transport, new Target({ topic: 'nobody' }), { timeout: 2000 });
  const t0 = Date.now();
  assert.is(await fetchContract(nobody, 'add', 200), undefined);
  assert.ok(Date.now() - t0 < 1500);
  const other = new RPCClient(ctx.transport, new Target({ topic: 'demo', namespace: 'x' }), { timeout: 2000 });
  assert.is(await fetchContract(other, 'add', 1000), undefined);
});

t('usage from the contract: rpc-client demo add --describe', async (ctx) => {
  const client = new RPCClient(ctx.transport, new Target({ topic: 'demo' }), { timeout: 2000 });
  const text = usage('demo', 'add', await fetchContract(client, 'add', 1000));
  assert.is(
    text,
    [
      'usage: rpc-client demo add a=<number> b=<number>',
      '  Adds two numbers.',
      '  a            number, required',
      '  b            number, required',
      '  (other names are refused)',
      '  returns number',
      '',
    ].join('\n'),
  );
  assert.match(usage('demo', 'sleep', DemoEndpoints.contracts.sleep), /\[seconds=…\]\n[\s\S]*seconds +number \(≥ 0, ≤ 3600\) {2}default 1/);
  assert.match(usage('demo', 'x', undefined), /no contract is published/);
  assert.is(typeText({ type: 'array', items: { type: 'string', maxLength: 8 }, maxItems: 4 }), 'array of string (length ≤ 8) (items ≤ 4)');
});

/** A versioned endpoint in a namespace of its own whose contract says `code` is a string. */
class Shop {
  readonly target = new Target({ namespace: 'shop', version: '2.3' });
  static readonly contracts = {
    label: { args: { type: 'object', properties: { code: { type: 'string' }, n: { type: 'integer' } } } },
  };
  label(_ctx: unknown, args: { code: unknown; n?: unknown }) {
    return { code: args.code, n: args.n ?? null };
  }
}

t(
  'the lookup asks in the namespace and version of the call (oslo logs that unknown method at DEBUG, hermod.describe at ERROR)',
  async (ctx) => {
    const server = new RPCServer(ctx.transport, new Target({ topic: 'shop', server: 's1' }), [new Shop()]);
    // An endpoint's own method of that name stays its own.
    const own = new RPCServer(ctx.transport, new Target({ topic: 'own', server: 'o1' }), [{ [QUIET_DESCRIBE]: () => 'mine' }]);
    // An access policy that refuses `describe` refuses it under the quiet name too.
    const closed = new RPCServer(ctx.transport, new Target({ topic: 'closed', server: 'c1' }), [new Shop()], {
      accessPolicy: (_e, m) => m !== 'describe',
    });
    await Promise.all([server.start(), closed.start(), own.start()]);
    try {
      const shop = new RPCClient(ctx.transport, new Target({ topic: 'shop', namespace: 'shop', version: '2.1' }), { timeout: 2000 });
      const d = await shop.call<ServerDescription>({}, QUIET_DESCRIBE);
      assert.is(d.server, 's1');
      assert.ok(d.endpoints.some((e) => e.namespace === 'shop' && e.version === '2.3'));
      assert.ok(
        d.endpoints.every((e) => !Object.hasOwn(e.methods, QUIET_DESCRIBE)),
        'not listed as a method of any namespace',
      );
      const label = await fetchContract(shop, 'label', 1000);
      assert.equal(label, Shop.contracts.label);
      assert.equal(await shop.call({}, 'label', coerceArgs(['code=42', 'n=5'], label)), { code: '42', n: 5 });
      // Only where the server serves the namespace and version, as any method.
      const other = shop.prepare({ namespace: 'other' });
      await rejects(other.call({}, QUIET_DESCRIBE), 'HERMOD_ERR_UNSUPPORTED_VERSION');
      await rejects(shop.prepare({ version: '3.0' }).call({}, QUIET_DESCRIBE), 'HERMOD_ERR_UNSUPPORTED_VERSION');
      const refused = new RPCClient(ctx.transport, new Target({ topic: 'closed', namespace: 'shop', version: '2.0' }), { timeout: 2000 });
      await rejects(refused.call({}, QUIET_DESCRIBE), 'HERMOD_ERR_NO_SUCH_METHOD');
      assert.is(await fetchContract(refused, 'label', 1000), undefined);
      assert.is(await new RPCClient(ctx.transport, new Target({ topic: 'own' }), { timeout: 2000 }).call({}, QUIET_DESCRIBE), 'mine');
    } finally {
      for (const s of [server, closed, own]) {
        await s.stop();
        await s.wait(1000);
      }
    }
  },
);

/** Arguments declared through unions and intersections, as TypeBox writes nullable and composed objects. */
class Addresses {
  static readonly contracts = defineContracts({
    nullable: { args: Type.Object({ zip: Type.Union([Type.String(), Type.Null()]) }) },
    inter: {
      args: Type.Intersect([
        Type.Object({ zip: Type.String() }),
        Type.Object({ kind: Type.Union([Type.Literal('home'), Type.Literal('1')]), n: Type.Optional(Type.Number()) }),
      ]),
    },
  });
  async nullable(_ctx: Context, args: { zip: string | null }) {
    return args.zip;
  }
  async inter(_ctx: Context, args: { zip: string; kind: string; n?: number }) {
    return args;
  }
}

t('nullable and intersected arguments: zip=12345 is text where a branch says string, and --describe lists them', async (ctx) => {
  // From a review: only top-level `properties` and `type` were read, so zip=12345 went out as a
  // number (the server refused it) and --describe of an Intersect printed no arguments.
  const server = new RPCServer(ctx.transport, new Target({ topic: 'addr', server: 'a1' }), [new Addresses()]);
  await server.start();
  try {
    const client = new RPCClient(ctx.transport, new Target({ topic: 'addr' }), { timeout: 5000 });
    const nullable = await fetchContract(client, 'nullable', 1000);
    assert.equal(coerceArgs(['zip=12345'], nullable), { zip: '12345' });
    assert.is(await client.call({}, 'nullable', coerceArgs(['zip=12345'], nullable)), '12345');
    const inter = await fetchContract(client, 'inter', 1000);
    // `kind` is a union of literals: '1' stays the literal text, not the number 1.
    const args = coerceArgs(['zip=02134', 'kind=1', 'n=7'], inter);
    assert.equal(args, { zip: '02134', kind: '1', n: 7 });
    assert.equal(await client.call({}, 'inter', args), { zip: '02134', kind: '1', n: 7 });
    const text = usage('addr', 'inter', inter);
    assert.match(text, /^usage: rpc-client addr inter zip=<string> kind=<string> \[n=…\]\n/);
    assert.match(text, /\n {2}zip +string, required\n {2}kind +"home" \| "1", required\n {2}n +number\n/);
    assert.match(
      usage('addr', 'nullable', nullable),
      /^usage: rpc-client addr nullable zip=<string\|null>\n {2}zip +string \| null, required/,
    );
  } finally {
    await server.stop();
    await server.wait(1000);
  }
});

t('needsContract: only values a schema could read differently are worth a describe round trip', () => {
  assert.ok(needsContract(['a=1']));
  assert.ok(needsContract(['x=abc', 'flag=true']));
  assert.not.ok(needsContract(['name=alice', 'm=hello world']));
  assert.not.ok(needsContract([]));
});

t.run();
