import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

// `npm run demo` is the first command of the README: it must run to the end on a fresh machine.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const t = suite('demo');

t('npm run demo runs router, servers and client to the end and exits 0', () => {
  const run = spawnSync(process.execPath, [path.join(root, 'dist/bin/demo.js')], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  assert.is(run.status, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /result after [\d.]+ s/);
  assert.match(run.stdout, /all stopped/);
});

t.run();
