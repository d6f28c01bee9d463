import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { governsYoungGeneration, growthFactor, SEMI_SPACE_MB } from '../../src/cli/young-gen.js';

const t = suite("the long-running CLIs cap V8's young generation");
const MODULE = fileURLToPath(new URL('../../src/cli/young-gen.js', import.meta.url));
const BIN = (name: string) => fileURLToPath(new URL(`../../bin/${name}.js`, import.meta.url));

// A server's allocation pattern: fast, in short turns of the event loop, with a few thousand
// objects alive at any time. Prints the largest new space seen, in MB.
const CHURN = `
const v8 = require('node:v8');
const newSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size / 2 ** 20;
const keep = [];
let most = 0;
(async () => {
  BEFORE
  for (let turn = 0; turn < 1000; turn++) {
    for (let i = 0; i < 2000; i++) { keep.push({ a: i, b: [i, String(i)] }); if (keep.length > 20000) keep.splice(0, 10000); }
    await new Promise((r) => setImmediate(r));
    most = Math.max(most, newSpace());
  }
  process.stdout.write(String(most));
})();`;

function newSpaceMb(nodeArgs: string[], env: NodeJS.ProcessEnv = {}, before = ''): number {
  const out = execFileSync(process.execPath, [...nodeArgs, '-e', CHURN.replace('BEFORE', before)], {
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: '', ...env },
  });
  return Number(out);
}

t('a node flag of the user that sizes the heap or picks the young collector, on the command line or in NODE_OPTIONS, wins', () => {
  assert.ok(governsYoungGeneration([], {}));
  assert.ok(
    governsYoungGeneration(['--enable-source-maps', '--max-old-space-size=512', '--trace-parallel-scavenge'], {
      NODE_OPTIONS: '--trace-warnings',
    }),
  );
  for (const flag of [
    '--max-semi-space-size=32',
    '--max_semi_space_size=32',
    '--min-semi-space-size=4',
    '--semi-space-growth-factor=4',
    '--max-young-generation-size=64',
    '--max-heap-size=512',
    '--parallel-scavenge',
    '--no-parallel-scavenge',
    '--single-threaded-gc',
    '--single-threaded',
    '--minor-mc',
    '--minor-ms',
  ]) {
    assert.not.ok(governsYoungGeneration([flag], {}), flag);
    assert.not.ok(governsYoungGeneration([], { NODE_OPTIONS: `--enable-source-maps ${flag}` }), `NODE_OPTIONS ${flag}`);
  }
});

t('the growth factor takes a semi-space to the cap in one growth and stops there', () => {
  assert.is(SEMI_SPACE_MB, 4);
  assert.equal([0, 1, 2, 3, 4, 8, 16].map(growthFactor), [4, 4, 2, 1, 1, 1, 1]);
});

t('loaded first, it lets the young generation grow to two 4 MB semi-spaces and no further, also after a worker thread started', () => {
  // V8 sizes its own maximum from the machine's memory (two 16 MB semi-spaces from 8 GB up, less
  // below): the explicit flag shows growth past the cap on any machine.
  const v8Own = newSpaceMb(['--max-semi-space-size=16']);
  assert.ok(v8Own >= 16, `with room to grow V8 grows the young generation past the cap (${v8Own} MB)`);
  const v8Default = newSpaceMb([]);
  const cap = Math.min(2 * SEMI_SPACE_MB, v8Default);
  const capped = newSpaceMb(['--import', MODULE]);
  assert.is(capped, cap, `grown to the cap (${capped} MB; V8's own sizing reached ${v8Default} MB here)`);
  // A worker thread (a module loader such as tsx's is one) puts V8's flags back to their defaults.
  const afterWorker = newSpaceMb(
    ['--import', MODULE],
    {},
    "await new Promise((r) => new (require('node:worker_threads').Worker)('1', { eval: true }).on('exit', r));",
  );
  assert.is(afterWorker, cap, `still capped after a worker thread ran (${afterWorker} MB)`);
  assert.ok(newSpaceMb(['--import', MODULE, '--max-semi-space-size=16']) >= 16, "the user's own flag is left to V8");
  assert.ok(newSpaceMb(['--import', MODULE], { NODE_OPTIONS: '--max-semi-space-size=16' }) >= 16, 'also from NODE_OPTIONS');
});

t('every long-running CLI imports it before any other module', () => {
  for (const name of ['rpc-server', 'hermod', 'notify-listen', 'hermod-gateway', 'hermod-router']) {
    const text = readFileSync(BIN(name), 'utf8');
    // The entry's static imports load before its code runs: only the two that must come first,
    // and the command itself after, by a dynamic import (see src/cli/early-signals.ts).
    const imports = [...text.matchAll(/^import\s[^\n]*$/gm)].map((m) => m[0]);
    assert.equal(imports, ["import { holdStartupSignals } from '../src/cli/early-signals.js';", "import '../src/cli/young-gen.js';"], name);
    assert.ok(text.indexOf('holdStartupSignals();') < text.indexOf(`await import('./main/${name}.js');`), name);
  }
});

t.run();
