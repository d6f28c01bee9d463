import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const t = suite('README: Long operations');

t('the resize example runs as written: the client restarts mid-job and picks the result up from its token', () => {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const m = /<!-- readme-example: jobs -->\s*```ts\n([\s\S]*?)```/.exec(readme);
  assert.ok(m, 'README has the marked jobs example');
  const dir = mkdtempSync(path.join(tmpdir(), 'hermod-readme-jobs-'));
  try {
    writeFileSync(path.join(dir, 'example.mts'), m![1]!.replace("from 'hermod'", `from '${path.join(root, 'dist/src/index.js')}'`));
    const tsc = spawnSync(
      process.execPath,
      [
        path.join(root, 'node_modules/typescript/bin/tsc'),
        ...['--target', 'ES2022', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--strict', '--skipLibCheck'],
        ...['--types', 'node', '--typeRoots', path.join(root, 'node_modules/@types'), '--outDir', dir, path.join(dir, 'example.mts')],
      ],
      { encoding: 'utf8' },
    );
    assert.is(tsc.status, 0, tsc.stdout + tsc.stderr);
    // 3 s instead of 20: the same path (token, progress, restart, resume), in test time.
    const env: NodeJS.ProcessEnv = { ...process.env, RESIZE_SECONDS: '3', NO_COLOR: '1' };
    delete env.FORCE_COLOR;
    const run = spawnSync(process.execPath, [path.join(dir, 'example.mjs')], { encoding: 'utf8', timeout: 20_000, env });
    assert.is(run.status, 0, run.stderr);
    assert.match(run.stdout, /^running 1 of 3 s$/m, run.stdout);
    assert.match(run.stdout, /^resumed at (0\.\d+|1)$/m, run.stdout);
    assert.match(run.stdout, /^result \{ image: 'cat\.png', size: '1024x768' \}$/m, run.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t.run();
