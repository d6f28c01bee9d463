import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError } from 'commander';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { intAtLeast, plainNumber, positiveSeconds } from '../../src/cli/program.js';
import { parseShutdownTimeout } from '../../src/cli/shutdown.js';
import { scratchDir } from '../support/scratch.js';

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

test('hermod run --watch-polling takes a plain decimal too (0x10 was a 16 ms interval)', async () => {
  const { startCli } = await import('../support/cli-procs.js');
  const dir = scratchDir('hermod-watch-polling-');
  writeFileSync(path.join(dir, 'a.mjs'), 'export default [];\n');
  writeFileSync(
    path.join(dir, 'run.json'),
    JSON.stringify({ config: { transportUrl: 'memory://' }, services: { a: { endpoints: ['./a.mjs'], topic: 't' } } }),
  );
  for (const v of ['0x10', '1e3']) {
    const p = startCli('hermod', ['run', '--watch-polling', v, 'run.json'], { cwd: dir, killAfterMs: 15_000 });
    assert.is(await p.exited, 2, p.err);
    assert.match(p.out + p.err, new RegExp(`--watch-polling takes an interval in ms from 1 to 2147483647, got '${v}'`));
  }
});

test.run();
