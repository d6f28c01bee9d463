import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
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

const shmNames: string[] = [];

/**
 * Removes, when the test process exits, the queue managers' counter files in /dev/shm whose
 * names hold `fragment` (a process name unique to the run): hermod's and oslo's
 * `use_queue_manager` keep one per host and process name, and nothing else removes them.
 */
export function removeQueueManagerFilesAtExit(fragment: string): void {
  if (shmNames.length === 0) {
    process.on('exit', () => {
      let names: string[] = [];
      try {
        names = readdirSync('/dev/shm');
      } catch {
        return;
      }
      for (const n of names) {
        if (n.endsWith('_qmanager') && shmNames.some((f) => n.includes(f))) rmSync(path.join('/dev/shm', n), { force: true });
      }
    });
  }
  shmNames.push(fragment);
}
