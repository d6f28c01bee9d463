import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const t = suite('README');

t('the first lines are the two commands', () => {
  const lines = readFileSync(path.join(root, 'README.md'), 'utf8').split('\n').slice(0, 8).join('\n');
  assert.match(lines, /npm ci && npm run demo/);
  assert.match(lines, /npm test/);
});

t('the library quick start runs as written', () => {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const m = /<!-- readme-example[^>]*-->\s*```ts\n([\s\S]*?)```/.exec(readme);
  assert.ok(m, 'README has the marked example');
  // Type annotations are erased by a tiny tsc run so the example is checked as TypeScript too.
  const dir = mkdtempSync(path.join(tmpdir(), 'hermod-readme-'));
  try {
    const src = m![1]!.replace("from 'hermod'", `from '${path.join(root, 'dist/src/index.js')}'`);
    writeFileSync(path.join(dir, 'example.mts'), src);
    const tsc = spawnSync(
      process.execPath,
      [
        path.join(root, 'node_modules/typescript/bin/tsc'),
        '--target',
        'ES2022',
        '--module',
        'NodeNext',
        '--moduleResolution',
        'NodeNext',
        '--strict',
        '--skipLibCheck',
        '--types',
        'node',
        '--typeRoots',
        path.join(root, 'node_modules/@types'),
        '--outDir',
        dir,
        path.join(dir, 'example.mts'),
      ],
      { encoding: 'utf8' },
    );
    assert.is(tsc.status, 0, tsc.stdout + tsc.stderr);
    const run = spawnSync(process.execPath, [path.join(dir, 'example.mjs')], { encoding: 'utf8', timeout: 20_000 });
    assert.is(run.status, 0, run.stderr);
    assert.match(run.stdout, /i-1[^\n]*m1[^\n]*alice/, run.stdout);
    assert.match(run.stdout, /i-2[^\n]*m2[^\n]*bob/, run.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t.run();
