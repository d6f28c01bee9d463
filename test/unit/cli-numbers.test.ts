import { InvalidArgumentError } from 'commander';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { intAtLeast, plainNumber, positiveSeconds } from '../../src/cli/program.js';
import { parseShutdownTimeout } from '../../src/cli/shutdown.js';

// The CLIs' number flags take plain decimals only. Number() also reads hex, binary, exponents and
// Infinity: `--shutdown-timeout 0x10` was a 16 s deadline, `--timeout 1e3` a quarter of an hour.

test('plainNumber: decimals, signs and surrounding spaces; nothing else', () => {
  assert.equal(['30', '1.5', '-1', '+2', '.5', '7.', ' 4 '].map(plainNumber), [30, 1.5, -1, 2, 0.5, 7, 4]);
  for (const v of ['0x10', '0b11', '0o7', '1e3', 'Infinity', '', ' ', '1_000', '1,5', 'NaN', '--1'])
    assert.ok(Number.isNaN(plainNumber(v)), v);
});

test('the flag parsers refuse what is not a plain decimal, with their usual message', () => {
  for (const v of ['0x10', '0b11', '1e3', 'Infinity']) {
    assert.throws(
      () => positiveSeconds(v),
      (e: Error) => e instanceof InvalidArgumentError && /needs a number of seconds > 0/.test(e.message),
      v,
    );
    assert.throws(
      () => intAtLeast(1)(v),
      (e: Error) => e instanceof InvalidArgumentError && /needs a whole number ≥ 1/.test(e.message),
      v,
    );
    assert.throws(() => parseShutdownTimeout(v, 25_000), /--shutdown-timeout must be a number of seconds from 0/, v);
  }
  assert.is(positiveSeconds('1.5'), 1.5);
  assert.is(intAtLeast(1)('64'), 64);
  assert.is(parseShutdownTimeout('0.25', 25_000), 250);
});

test.run();
