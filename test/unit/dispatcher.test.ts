import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { JsonPayloadSerializer, Target } from '../../src/index.js';
import { findMethod, parseRequest, RPCDispatcher } from '../../src/rpc/dispatcher.js';
import { rejects } from '../support/assert.js';

const t = suite('dispatcher');

class Base {
  async inherited() {
    return 'base';
  }
}
class Api extends Base {
  target = new Target({ namespace: 'api', version: '1.3' });
  plain = 'not a function';
  arrow = async () => 'arrow';
  get secret() {
    throw new Error('getter must never run');
  }
  async add(_ctx: unknown, args: { a: number; b: number }) {
    return args.a + args.b;
  }
  async _hidden() {
    return 'hidden';
  }
  async nothing() {
    return undefined;
  }
}

t('access policy: public methods only, getters never run', () => {
  const api = new Api();
  assert.ok(findMethod(api, 'add'));
  assert.ok(findMethod(api, 'inherited'));
  assert.ok(findMethod(api, 'arrow'));
  for (const name of [
    '_hidden',
    'constructor',
    'toString',
    'hasOwnProperty',
    '__proto__',
    'valueOf',
    'plain',
    'secret',
    'target',
    'missing',
    '',
    '__defineGetter__',
  ]) {
    assert.is(findMethod(api, name), undefined, name);
  }
});

t('namespace and version rules follow oslo', async () => {
  const d = new RPCDispatcher([
    new Api(),
    {
      async ping() {
        return 'pong';
      },
    },
  ]);
  assert.is(await d.dispatch({}, parseRequest({ method: 'add', args: { a: 1, b: 2 }, namespace: 'api', version: '1.2' })), 3);
  assert.is(await d.dispatch({}, parseRequest({ method: 'ping', args: {} })), 'pong');
  assert.is(await d.dispatch({}, parseRequest({ method: 'nothing', namespace: 'api' })), null);
  await rejects(
    () => d.dispatch({}, parseRequest({ method: 'add', args: {}, namespace: 'api', version: '1.4' })),
    'HERMOD_ERR_UNSUPPORTED_VERSION',
    /1\.4 in namespace 'api'/,
  );
  await rejects(
    () => d.dispatch({}, parseRequest({ method: 'add', args: {}, namespace: 'api', version: '2.0' })),
    'HERMOD_ERR_UNSUPPORTED_VERSION',
  );
  // A method served elsewhere says where, so a wrong namespace or major version is told apart
  // from a method this server has nowhere.
  await rejects(
    () => d.dispatch({}, parseRequest({ method: 'add', args: {}, namespace: 'other' })),
    'HERMOD_ERR_UNSUPPORTED_VERSION',
    /namespace 'other'\. Attempted method: add \(this server has add in namespace 'api' at version 1\.3\)$/,
  );
  await rejects(
    () => d.dispatch({}, parseRequest({ method: 'add', args: {}, namespace: 'api', version: '2.0' })),
    'HERMOD_ERR_UNSUPPORTED_VERSION',
    /\(this server has add in namespace 'api' at version 1\.3\)$/,
  );
  await rejects(
    () => d.dispatch({}, parseRequest({ method: 'frob', args: {}, namespace: 'api' })),
    'HERMOD_ERR_NO_SUCH_METHOD',
    /^Endpoint does not support RPC method frob$/,
  );
  await rejects(
    () => d.dispatch({}, parseRequest({ method: '_hidden', args: {}, namespace: 'api' })),
    'HERMOD_ERR_NO_SUCH_METHOD',
    /_hidden$/,
  );
  await rejects(
    () => d.dispatch({}, parseRequest({ method: 'add', args: {} })),
    'HERMOD_ERR_NO_SUCH_METHOD',
    /^Endpoint does not support RPC method add \(this server has add in namespace 'api' at version 1\.3\)$/,
  );
  await rejects(
    () => d.dispatch({}, parseRequest({ method: 'inherited', args: {}, namespace: 'zz' })),
    'HERMOD_ERR_UNSUPPORTED_VERSION',
    /inherited \(this server has inherited in namespace 'api'/,
  );
});

t('custom access policy narrows further', async () => {
  const d = new RPCDispatcher([new Api()], undefined, (_e, m) => m !== 'add');
  await rejects(() => d.dispatch({}, parseRequest({ method: 'add', args: { a: 1, b: 1 }, namespace: 'api' })), 'HERMOD_ERR_NO_SUCH_METHOD');
  // A method the policy hides is not named as served elsewhere either.
  await rejects(
    () => d.dispatch({}, parseRequest({ method: 'add', args: {}, namespace: 'x' })),
    'HERMOD_ERR_UNSUPPORTED_VERSION',
    /Attempted method: add$/,
  );
});

t('request shape is checked', async () => {
  await rejects(() => parseRequest({ args: {} }), 'HERMOD_ERR_MALFORMED_MESSAGE', /no method name/);
  await rejects(() => parseRequest({ method: 5 }), 'HERMOD_ERR_MALFORMED_MESSAGE');
  await rejects(() => parseRequest({ method: 'm', args: [1, 2] }), 'HERMOD_ERR_INVALID_ARGUMENT', /an array/);
  await rejects(() => parseRequest({ method: 'm', args: 'x' }), 'HERMOD_ERR_INVALID_ARGUMENT', /string/);
  await rejects(() => parseRequest({ method: 'm', namespace: 3 }), 'HERMOD_ERR_MALFORMED_MESSAGE', /namespace/);
  await rejects(() => parseRequest({ method: 'm', version: 'one' }), 'HERMOD_ERR_UNSUPPORTED_VERSION', /not of the form/);
  assert.equal(parseRequest({ method: 'm', args: null }), { method: 'm', args: {}, namespace: undefined, version: '1.0' });
});

t('endpoints are checked at construction', async () => {
  await rejects(() => new RPCDispatcher([]), 'HERMOD_ERR_INVALID_ARGUMENT', /at least one endpoint/);
  await rejects(() => new RPCDispatcher([null as never]), 'HERMOD_ERR_INVALID_ARGUMENT', /not an object/);
  await rejects(() => new RPCDispatcher([{ target: { version: '1.0' } }]), 'HERMOD_ERR_INVALID_ARGUMENT', /must be a Target/);
});

t('serializer converts results', async () => {
  const d = new RPCDispatcher(
    [
      {
        async when() {
          return new Date(0);
        },
        async m() {
          return new Map([['a', new Set([1])]]);
        },
      },
    ],
    new JsonPayloadSerializer(),
  );
  assert.is(await d.dispatch({}, parseRequest({ method: 'when' })), '1970-01-01T00:00:00.000Z');
  assert.equal(await d.dispatch({}, parseRequest({ method: 'm' })), { a: [1] });
});

t('JsonPayloadSerializer: toJSON as JSON.stringify calls it, __proto__ stays a key, failures are SerializationError', () => {
  const s = new JsonPayloadSerializer();
  class Money {
    constructor(private readonly cents: number) {}
    toJSON() {
      return `${(this.cents / 100).toFixed(2)} EUR`;
    }
  }
  const value = { url: new URL('https://example.org/a?b=1'), price: new Money(1234), bad: new Date(Number.NaN) };
  // Before: the URL went as {} and the Money as its private fields; an invalid Date threw a bare RangeError.
  assert.equal(s.serializeEntity({}, value), JSON.parse(JSON.stringify(value)));
  const withProto = JSON.parse('{"outer": {"__proto__": {"x": 1}, "y": 2}}') as Record<string, unknown>;
  const out = s.serializeEntity({}, withProto) as { outer: object };
  assert.ok(Object.hasOwn(out.outer, '__proto__'), 'kept as an own key (the server refuses it), not made the prototype');
  assert.is(Object.getPrototypeOf(out.outer), Object.prototype);
  const throwing = {
    toJSON() {
      throw new Error('no');
    },
  };
  try {
    s.serializeEntity({}, { throwing });
    assert.unreachable('should throw');
  } catch (err) {
    assert.is((err as { code?: string }).code, 'HERMOD_ERR_SERIALIZATION');
  }
});

t(
  'JsonPayloadSerializer: a cycle through a Map or Set throws SerializationError; shared values and a toJSON returning its own object do not',
  () => {
    const s = new JsonPayloadSerializer();
    const m = new Map<string, unknown>([['a', 1]]);
    m.set('self', m);
    const st = new Set<unknown>([1]);
    st.add(st);
    const o: Record<string, unknown> = { a: 1 };
    o.m = new Map([['back', o]]);
    const plain: Record<string, unknown> = { a: 1 };
    plain.self = plain;
    for (const value of [m, st, o, plain, [new Set([m])]]) {
      assert.throws(
        () => s.serializeEntity({}, { value }),
        (err: Error & { code?: string }) => err.code === 'HERMOD_ERR_SERIALIZATION' && /circular structure/.test(err.message),
      );
    }
    const shared = new Map([['k', 1]]);
    assert.equal(s.serializeEntity({}, { x: shared, y: [shared, new Set([shared])] }), { x: { k: 1 }, y: [{ k: 1 }, [{ k: 1 }]] });
    const self = {
      a: 1,
      toJSON() {
        return this;
      },
    };
    assert.equal(JSON.parse(JSON.stringify(s.serializeEntity({}, { self }))), JSON.parse(JSON.stringify({ self })));
  },
);

t('JsonPayloadSerializer: boxed primitives go as their values, and toJSON gets its key, as JSON.stringify does', () => {
  const s = new JsonPayloadSerializer();
  const keyed = {
    toJSON(key: string) {
      return `key=${key}`;
    },
  };
  const value = { s: new String('ab'), n: new Number(5), b: new Boolean(false), k: keyed, list: [keyed], map: new Map([['m', keyed]]) };
  // Before: {"s":{"0":"a","1":"b"},"n":{},"b":{}} and "key=undefined".
  assert.equal(s.serializeEntity({}, value), { s: 'ab', n: 5, b: false, k: 'key=k', list: ['key=0'], map: { m: 'key=m' } });
  assert.equal(JSON.parse(JSON.stringify({ s: value.s, n: value.n, b: value.b, k: keyed, list: [keyed] })), {
    s: 'ab',
    n: 5,
    b: false,
    k: 'key=k',
    list: ['key=0'],
  });
  // A boxed BigInt becomes a bigint, which the message encoding refuses with SerializationError as any BigInt.
  assert.is((s.serializeEntity({}, { big: Object(1n) }) as { big: unknown }).big, 1n);
});

t.run();
