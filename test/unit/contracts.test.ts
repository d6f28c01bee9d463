import { Type } from 'typebox';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { checkArgs, closedArgs, compileContracts, depthAtMost } from '../../src/contracts/validator.js';
import { ContractViolation, defineContracts, InvalidArgument, Target } from '../../src/index.js';
import { parseRequest, RPCDispatcher } from '../../src/rpc/dispatcher.js';
import { deserializeFailure, serializeFailure } from '../../src/rpc/remote-errors.js';
import { rejects } from '../support/assert.js';
import { Calculator } from '../support/contract-cases.js';

const t = suite('contracts');

const request = (json: string) => parseRequest(JSON.parse(json));

t('prototype keys never reach a method with a contract, even one that allows extra names', async () => {
  const calc = new Calculator();
  const d = new RPCDispatcher([calc]);
  // JSON.parse keeps "__proto__" as an own key: what a hostile peer sends.
  await rejects(
    () => d.dispatch({}, request('{"method":"open","args":{"id":1,"__proto__":{"polluted":true}}}')),
    'HERMOD_ERR_MALFORMED_MESSAGE',
  );
  await rejects(
    () => d.dispatch({}, request('{"method":"open","args":{"id":1,"constructor":{"prototype":{"polluted":true}}}}')),
    'HERMOD_ERR_MALFORMED_MESSAGE',
  );
  assert.is(calc.runs, 0);
  assert.is(({} as { polluted?: unknown }).polluted, undefined);
  assert.equal(await d.dispatch({}, request('{"method":"open","args":{"id":1,"x":2}}')), { id: 1, x: 2 });
});

t('unknown names are refused unless the schema allows them; composed schemas are closed too', async () => {
  class Composed {
    static contracts = {
      both: { args: Type.Intersect([Type.Object({ a: Type.Number() }), Type.Object({ b: Type.Number() })]) },
    };
    both(_ctx: unknown, args: object) {
      return args;
    }
  }
  const d = new RPCDispatcher([new Composed()]);
  assert.equal(await d.dispatch({}, request('{"method":"both","args":{"a":1,"b":2}}')), { a: 1, b: 2 });
  const err = (await rejects(
    () => d.dispatch({}, request('{"method":"both","args":{"a":1,"b":2,"c":3}}')),
    'HERMOD_ERR_CONTRACT_VIOLATION',
  )) as ContractViolation;
  assert.equal(err.violations, [{ path: '/c', message: 'is not allowed here (unknown name)' }]);
  assert.equal(closedArgs({ type: 'object', additionalProperties: true }), { type: 'object', additionalProperties: true });
  // As the README says: an args schema of {} or Type.Any() names no argument, so it refuses them all.
  class Open {
    static contracts = { any: { args: Type.Any() }, empty: { args: {} } };
    any() {
      return 'ran';
    }
    empty() {
      return 'ran';
    }
  }
  const o = new RPCDispatcher([new Open()]);
  for (const m of ['any', 'empty']) {
    assert.is(await o.dispatch({}, request(`{"method":"${m}","args":{}}`)), 'ran');
    await rejects(() => o.dispatch({}, request(`{"method":"${m}","args":{"x":1}}`)), 'HERMOD_ERR_CONTRACT_VIOLATION');
  }
});

t('a violation travels as oslo failure kwargs and comes back as ContractViolation; is an InvalidArgument', () => {
  const v = new ContractViolation('arguments of add break its contract', [
    { path: '/a', message: 'must be number' },
    { path: '/b', message: 'is required' },
  ]);
  assert.is(v.code, 'HERMOD_ERR_CONTRACT_VIOLATION');
  assert.ok(v instanceof ContractViolation);
  const f = serializeFailure(v);
  assert.is(f.class, 'ContractViolation');
  assert.is(f.module, 'hermod');
  assert.is(f.message, 'arguments of add break its contract: /a must be number; /b is required');
  assert.equal(f.kwargs, { violations: v.violations });
  const back = deserializeFailure(JSON.parse(JSON.stringify(f))) as ContractViolation;
  assert.ok(back instanceof ContractViolation);
  assert.is(back.message, f.message);
  assert.equal(back.violations, v.violations);
  assert.is(back.code, 'HERMOD_ERR_CONTRACT_VIOLATION');
  assert.ok(back instanceof InvalidArgument, 'callers catching InvalidArgument catch it too');
  // Said without `of`, the message's first words decide (servers before kwargs.of).
  assert.is(back.of, 'arguments');
});

t('of: what broke the contract travels in kwargs.of and wins over the message', () => {
  const v = new ContractViolation('the result of drift breaks its contract', [{ path: '', message: 'must be number' }], { of: 'result' });
  const f = serializeFailure(v);
  assert.equal(f.kwargs, { violations: v.violations, of: 'result' });
  assert.is((deserializeFailure(JSON.parse(JSON.stringify(f))) as ContractViolation).of, 'result');
  const said = { ...f, message: 'arguments of x break its contract: / no', kwargs: { ...f.kwargs, of: 'result' } };
  assert.is((deserializeFailure(said) as ContractViolation).of, 'result');
  const unknown = { ...f, message: 'something else', kwargs: { violations: [], of: 'bogus' } };
  assert.is((deserializeFailure(unknown) as ContractViolation).of, undefined);
});

t('many violations: the first 20 are listed, the rest counted', () => {
  const many = Array.from({ length: 30 }, (_, i) => ({ path: `/${i}`, message: 'bad' }));
  const v = new ContractViolation('x', many);
  assert.is(v.violations.length, 20);
  assert.match(v.message, /\(and 10 more\)$/);
  // From a real validation: 30 unknown names are 30 violations (it said "and 1 more").
  const closed = compileContracts({ m: { args: Type.Object({}, { additionalProperties: false }) } }, 'closed').get('m')!;
  const args = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`k${i}`, 1]));
  const e = (() => {
    try {
      checkArgs(closed, 'm', args);
    } catch (err) {
      return err as ContractViolation;
    }
  })();
  assert.match(e?.message ?? '', /\(and 10 more\)$/);
});

t('construction refuses contracts that cannot work, naming the endpoint and method', async () => {
  class Typo {
    static contracts = { ad: { args: Type.Object({}) } };
    add() {}
  }
  await rejects(
    () => new RPCDispatcher([new Typo()]),
    'HERMOD_ERR_INVALID_ARGUMENT',
    /endpoint #1 \(Typo\) has a contract for ad but no callable method/,
  );
  class BadKeyword {
    static contracts = { m: { args: { type: 'object', maxLenght: 3 } } };
    m() {}
  }
  await rejects(
    () => new RPCDispatcher([new BadKeyword()]),
    'HERMOD_ERR_INVALID_ARGUMENT',
    /args schema of m is not a usable JSON Schema.*maxLenght/,
  );
  class NotNamed {
    static contracts = { m: { args: Type.Array(Type.Number()) } };
    m() {}
  }
  await rejects(() => new RPCDispatcher([new NotNamed()]), 'HERMOD_ERR_INVALID_ARGUMENT', /args must be an object schema/);
  class Extra {
    static contracts = { m: { args: Type.Object({}), results: Type.Number() } };
    m() {}
  }
  await rejects(() => new RPCDispatcher([new Extra()]), 'HERMOD_ERR_INVALID_ARGUMENT', /unknown keys: results/);
  // defineContracts checks the same at run time, for JavaScript callers and casts (it only
  // typed them, so a typo surfaced later, at the server's construction, far from its source).
  const loose = defineContracts as (c: unknown) => unknown;
  await rejects(
    () => loose({ m: { args: Type.Object({}), results: Type.Number() } }),
    'HERMOD_ERR_INVALID_ARGUMENT',
    /defineContracts: the contract of m has unknown keys: results/,
  );
  await rejects(() => loose({ m: { result: Type.Number() } }), 'HERMOD_ERR_INVALID_ARGUMENT', /the contract of m needs an args schema/);
  await rejects(() => loose([]), 'HERMOD_ERR_INVALID_ARGUMENT', /contracts must be an object/);
  const ok = { m: { args: Type.Object({}) } };
  assert.is(defineContracts(ok), ok);
});

t('a plain-object endpoint declares its contracts as an own property; formats are checked', async () => {
  const endpoint = {
    target: new Target({ version: '1.2' }),
    contracts: { mail: { args: { type: 'object', required: ['to'], properties: { to: { type: 'string', format: 'email' } } } } },
    mail: (_ctx: unknown, { to }: { to: string }) => to,
  };
  const d = new RPCDispatcher([endpoint]);
  assert.is(await d.dispatch({}, request('{"method":"mail","args":{"to":"a@b.org"}}')), 'a@b.org');
  await rejects(
    () => d.dispatch({}, request('{"method":"mail","args":{"to":"nope"}}')),
    'HERMOD_ERR_CONTRACT_VIOLATION',
    /\/to must match format "email"/,
  );
  assert.equal(d.describe(), [{ namespace: null, version: '1.2', methods: { mail: endpoint.contracts.mail } }]);
});

t('schemas with an $id: shared by two methods, or declared again by a reloaded module, compile; each validator keeps its own', () => {
  const pair = () => ({
    $id: `urn:hermod-test:pair`,
    type: 'object',
    properties: { a: { type: 'number' }, b: { type: 'number' } },
    required: ['a', 'b'],
  });
  const shared = pair();
  // Before: "schema with key or id ... already exists" for the second method.
  const both = compileContracts({ add: { args: shared }, mul: { args: shared } }, 'endpoint #1 (Calc)');
  assert.is(both.get('add')!.args, both.get('mul')!.args);
  const v1 = compileContracts({ f: { args: pair() } }, 'endpoint #1 (V1)').get('f')!;
  // The reloaded module's copy, now with a string `a`.
  const v2 = compileContracts(
    { f: { args: { ...pair(), properties: { a: { type: 'string' }, b: { type: 'number' } } } } },
    'endpoint #1 (V2)',
  ).get('f')!;
  checkArgs(v1, 'f', { a: 1, b: 2 });
  assert.throws(
    () => checkArgs(v1, 'f', { a: 'x', b: 2 }),
    (e: unknown) => e instanceof ContractViolation,
  );
  checkArgs(v2, 'f', { a: 'x', b: 2 });
  assert.throws(
    () => checkArgs(v2, 'f', { a: 1, b: 2 }),
    (e: unknown) => e instanceof ContractViolation,
  );
  // A $ref to the id reaches the newest schema of that id.
  const ref = compileContracts({ g: { args: { type: 'object', properties: { p: { $ref: 'urn:hermod-test:pair' } } } } }, 'R').get('g')!;
  checkArgs(ref, 'g', { p: { a: 'x', b: 2 } });
});

t('depthAtMost counts nesting without recursion surprises', () => {
  assert.ok(depthAtMost(1, 0));
  assert.ok(depthAtMost({ a: [1] }, 2));
  assert.not.ok(depthAtMost({ a: [{}] }, 2));
  let deep: unknown = 0;
  for (let i = 0; i < 10_000; i++) deep = [deep];
  assert.not.ok(depthAtMost(deep, 32), 'stops at the bound, not at the bottom');
});

t.run();
