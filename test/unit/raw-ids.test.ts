import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { idLiterals, inexactId, withIdLiteral } from '../../src/gateway/raw-ids.js';

const t = suite('JSON-RPC ids as the client wrote them');

t('a request object: the id member number as written, whatever nests before it', () => {
  assert.equal(idLiterals('{"jsonrpc":"2.0","method":"a.b","params":{"id":1,"s":"}{\\"id\\":3"},"id":9007199254740993}'), [
    '9007199254740993',
  ]);
  assert.equal(idLiterals(' \n{ "id" :\t-1.5e300 , "method":"x"}'), ['-1.5e300']);
  assert.equal(idLiterals('{"id":"12345678901234567890"}'), [undefined], 'a string id needs nothing');
  assert.equal(idLiterals('{"method":"x"}'), [undefined]);
  assert.equal(idLiterals('{}'), [undefined]);
});

t('the last of duplicate keys, and a key spelled with escapes, as JSON.parse reads them', () => {
  assert.equal(idLiterals('{"id":1,"id":18446744073709551615}'), ['18446744073709551615']);
  assert.equal(idLiterals('{"id":18446744073709551615,"id":"x"}'), [undefined]);
  assert.equal(idLiterals('{"\\u0069d":18446744073709551617}'), ['18446744073709551617']);
  assert.equal(idLiterals('{"i\\"d":1}'), [undefined]);
});

t('a batch: one entry per member, in order, non-objects included', () => {
  const text = '[ {"id":9007199254740995,"p":[{"id":2}]}, 7, "s]", [ {"id":3} ], null, {"method":"n"}, {"id":-0.1} ]';
  assert.equal(idLiterals(text), ['9007199254740995', undefined, undefined, undefined, undefined, undefined, '-0.1']);
  assert.equal(idLiterals('[]'), []);
  assert.equal(idLiterals('"x"'), []);
});

t('a response is written with the literal only where the parsed id would not round-trip', () => {
  assert.ok(inexactId(2 ** 53 + 2));
  assert.ok(inexactId(0.5));
  assert.not.ok(inexactId(42));
  assert.not.ok(inexactId('9007199254740993'));
  const big = JSON.parse('9007199254740993');
  assert.is(
    withIdLiteral({ jsonrpc: '2.0', result: { id: 1 }, id: big } as { id: unknown }, '9007199254740993'),
    '{"jsonrpc":"2.0","result":{"id":1},"id":9007199254740993}',
  );
  assert.is(withIdLiteral({ id: 3 }, '3.0'), '{"id":3}', 'an exact id is written as parsed');
  // Numbers JSON.parse turns into another: overflow to ±Infinity (JSON.stringify: null), underflow
  // to 0, and -0 (JSON.stringify: 0). Each comes back as written.
  for (const literal of ['1e400', '-1e400', '1e-400', '-1e-400', '-0', '-0.0', '0e5', '0']) {
    const id = JSON.parse(literal);
    assert.ok(inexactId(id), literal);
    assert.equal(idLiterals(`{"jsonrpc":"2.0","id":${literal}}`), [literal]);
    assert.is(withIdLiteral({ jsonrpc: '2.0', result: 1, id } as { id: unknown }, literal), `{"jsonrpc":"2.0","result":1,"id":${literal}}`);
  }
  assert.is(withIdLiteral({ id: big }, undefined), '{"id":9007199254740992}');
});

t.run();
