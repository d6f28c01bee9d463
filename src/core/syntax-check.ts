/**
 * Where a JavaScript file fails to parse, for a load error that does not say (V8 puts neither
 * file nor line in the SyntaxError of an ES module `import()` fails to parse). Only run on that
 * error path: it starts `node --check`.
 */
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import path from 'node:path';

/**
 * The first line of `node --check`'s report on `file` (`/abs/file.js:2`) and its SyntaxError
 * line, or undefined when it finds none. Node 20 checks a `.js` file outside a
 * `"type": "module"` package as CommonJS and passes an ES module's syntax error, so a file that
 * passes is checked again as a module, fed on stdin (`--input-type=module`), its name put back
 * in place of `[stdin]`. A `.cjs` file is checked as CommonJS only.
 */
export async function syntaxErrorOf(file: string): Promise<{ where: string; what: string } | undefined> {
  const abs = path.resolve(file);
  return (await check(abs, false)) ?? (abs.endsWith('.cjs') ? undefined : await check(abs, true));
}

function check(file: string, asModule: boolean): Promise<{ where: string; what: string } | undefined> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      asModule ? ['--input-type=module', '--check'] : ['--check', file],
      { timeout: 10_000 },
      (error, _stdout, stderr) => {
        if (!error || !stderr) return resolve(undefined);
        const first = stderr.split('\n')[0]!;
        const where = asModule ? first.replace(/^\[stdin\]/, file) : first;
        const what = /^SyntaxError: .*$/m.exec(stderr)?.[0];
        resolve(/:\d+$/.test(where) && what ? { where, what } : undefined);
      },
    );
    if (asModule) {
      const input = createReadStream(file);
      input.on('error', () => child.stdin?.end());
      child.stdin?.on('error', () => undefined);
      input.pipe(child.stdin!);
    } else child.stdin?.end();
  });
}
