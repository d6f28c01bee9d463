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
  for (let turn = 0; turn < 1000; turn++) {
    for (let i = 0; i < 2000; i++) { keep.push({ a: i, b: [i, String(i)] }); if (keep.length > 20000) keep.splice(0, 10000); }
    await new Promise((r) => setImmediate(r));
    most = Math.max(most, newSpace());
  }
  process.stdout.write(String(most));
})();`;

function newSpaceMb(nodeArgs: string[], env: NodeJS.ProcessEnv = {}): number {
  const out = execFileSync(process.execPath, [...nodeArgs, '-e', CHURN], {
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: '', ...env },
  });
  return Number(out);
}

t('a node flag of the user for the young generation or the scavenger, on the command line or in NODE_OPTIONS, wins', () => {
  assert.ok(governsYoungGeneration([], {}));
  assert.ok(governsYoungGeneration(['--enable-source-maps', '--max-old-space-size=512'], { NODE_OPTIONS: '--trace-warnings' }));
  for (const flag of [
    '--max-semi-space-size=32',
    '--max_semi_space_size=32',
    '--min-semi-space-size=4',
    '--semi-space-growth-factor=4',
    '--max-young-generation-size=64',
  ]) {
    assert.not.ok(governsYoungGeneration([flag], {}), flag);
    assert.not.ok(governsYoungGeneration([], { NODE_OPTIONS: `--enable-source-maps ${flag}` }), `NODE_OPTIONS ${flag}`);
  }
});

t('the growth factor takes a semi-space to the cap and stops there', () => {
  assert.is(SEMI_SPACE_MB, 4);
  assert.equal([0.5, 1, 2, 3.9, 4, 8, 16].map(growthFactor), [2, 2, 2, 2, 1, 1, 1]);
});

t('loaded first, it lets the young generation grow to two 4 MB semi-spaces and no further', () => {
  const grown = newSpaceMb([]);
  const capped = newSpaceMb(['--import', MODULE]);
  assert.ok(grown >= 16, `without it V8 grows the young generation past the cap (${grown} MB)`);
  assert.is(capped, 2 * SEMI_SPACE_MB, `grown to the cap (${capped} MB)`);
  const own = newSpaceMb(['--import', MODULE, '--max-semi-space-size=16']);
  assert.ok(own >= 16, `the user's own flag is left to V8 (${own} MB)`);
  assert.ok(newSpaceMb(['--import', MODULE], { NODE_OPTIONS: '--max-semi-space-size=16' }) >= 16, 'also from NODE_OPTIONS');
});

t('every long-running CLI imports it before any other module', () => {
  for (const name of ['rpc-server', 'hermod', 'notify-listen', 'hermod-gateway']) {
    const first = /^import\s[^\n]*$/m.exec(readFileSync(BIN(name), 'utf8'))?.[0];
    assert.is(first, "import '../src/cli/young-gen.js';", name);
  }
});

t.run();
