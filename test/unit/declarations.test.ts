// hermod's published declarations compile in a consumer without esModuleInterop (a classic
// CommonJS TypeScript setup): a default import of a Node module in a .d.ts failed there with
// TS1192 "has no default export" inside hermod's own types. Read from the build (dist/src).
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

test('no .d.ts imports a Node module by default import', () => {
  const found: string[] = [];
  let files = 0;
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.d.ts')) {
        files++;
        for (const line of readFileSync(p, 'utf8').split('\n'))
          if (/^import\s+(type\s+)?[A-Za-z_$][\w$]*\s*(,|from)\s*.*['"]node:/.test(line)) found.push(`${path.relative(SRC, p)}: ${line}`);
      }
    }
  };
  walk(SRC);
  assert.ok(files > 50, `declarations read (${files})`);
  assert.equal(found, []);
});

test.run();
