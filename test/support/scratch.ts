import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const made: string[] = [];

/**
 * A fresh directory under the OS temp dir, removed when the test process exits (each test file
 * runs in its own process), so a run leaves nothing behind in /tmp. Set HERMOD_KEEP_TMP=1 to keep
 * them, e.g. to look at the docs page's screenshot after a run.
 */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  if (made.length === 0 && process.env.HERMOD_KEEP_TMP !== '1') {
    // 'exit' handlers run synchronously, after the suites' own after-hooks have closed what used
    // the files (browsers, gateways, child processes).
    process.on('exit', () => {
      for (const d of made) rmSync(d, { recursive: true, force: true });
    });
  }
  made.push(dir);
  return dir;
}
