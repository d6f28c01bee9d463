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

/**
 * Compiles a README example with a tiny tsc run (so it is checked as TypeScript too), its package
 * imports pointed at this checkout, runs it, and returns what it printed.
 */
function runExample(src: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'hermod-readme-'));
  try {
    src = src
      .replace("from 'hermod'", `from '${path.join(root, 'dist/src/index.js')}'`)
      .replace("from 'hermod/gateway'", `from '${path.join(root, 'dist/src/gateway/index.js')}'`)
      .replace("from 'fastify'", `from '${path.join(root, 'node_modules/fastify/fastify.js')}'`);
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
    return run.stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function example(tag: string): string {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const m = new RegExp(`<!-- readme-example${tag}[^>]*-->\\s*\`\`\`ts\\n([\\s\\S]*?)\`\`\``).exec(readme);
  assert.ok(m, `README has the marked example${tag}`);
  return m![1]!;
}

t('the library quick start runs as written', () => {
  const out = runExample(example(''));
  assert.match(out, /i-1[^\n]*m1[^\n]*alice/, out);
  assert.match(out, /i-2[^\n]*m2[^\n]*bob/, out);
});

t('the gateway plugin example runs as written, printing what its comments say', () => {
  const src = example(': gateway-plugin');
  const out = runExample(src).trim().split('\n');
  // Each console.log line's comment, in order, is what that line printed.
  const said = [...src.matchAll(/console\.log\(.*\/\/ (.*)$/gm)].map((m) => m[1]!);
  assert.is(said.length, 3);
  assert.equal(out, said);
});

t('the MultiCall example runs as written, printing what its comments say', () => {
  const src = example(': multicall');
  const out = runExample(src).trim().split('\n');
  const said = [...src.matchAll(/console\.log\(.*\/\/ (.*)$/gm)].map((m) => m[1]!);
  assert.is(said.length, 3);
  assert.equal(out, said);
});

t.run();
