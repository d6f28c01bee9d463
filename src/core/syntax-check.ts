/**
 * Where a JavaScript file fails to parse, for a load error that does not say (V8 puts neither
 * file nor line in the SyntaxError of an ES module `import()` fails to parse). Only run on that
 * error path: it starts `node --check`.
 */
import { execFile } from 'node:child_process';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
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

/**
 * What to do about an ES module's syntax in a file Node reads as CommonJS (a `.js` file in a
 * package whose package.json says `"type": "commonjs"`, as `npm init` now writes, or a `.cjs`
 * file): Node's own advice is a separate warning, and the error alone says only "Unexpected
 * token 'export'". Empty for any other error.
 */
export function commonJsSyntaxHint(message: string, file: string): string {
  const abs = path.resolve(file.replace(/:\d+(:\d+)?$/, ''));
  const name = path.basename(abs);
  // tsx compiles a TypeScript file Node reads as CommonJS to CommonJS, where esbuild refuses a
  // top-level await: an ES module's feature, like export above.
  if (/Top-level await is currently not supported with the "cjs" output format/.test(message)) {
    if (name.endsWith('.cts')) return ' (a .cts file is CommonJS, which has no top-level await: rename it .mts)';
    if (!/\.tsx?$/.test(name) || packageType(path.dirname(abs)) === 'module') return '';
    // There is no .mtsx: a .tsx file becomes an ES module only by the package's type.
    const rename = name.endsWith('.ts') ? `rename it ${name.replace(/\.ts$/, '.mts')}, or ` : '';
    return ` (Node reads ${name} as CommonJS, as its package.json does not say "type": "module", and CommonJS has no top-level await: ${rename}set "type": "module")`;
  }
  // Not V8's "await is only valid in async functions…": it says the same of an await in any
  // function that is not async, which no rename mends.
  if (!/Unexpected token 'export'|Cannot use import statement outside a module/.test(message)) return '';
  if (!/\.c?js$/.test(name)) return '';
  // In an ES module (a "type": "module" package) the same words are a plain syntax error: an
  // `export` inside a block, say. Renaming the file would change nothing.
  if (name.endsWith('.js') && packageType(path.dirname(abs)) === 'module') return '';
  return name.endsWith('.cjs')
    ? ` (a .cjs file is CommonJS: write module.exports and require(), or rename it .mjs)`
    : ` (Node reads ${name} as CommonJS, as its package.json says "type": "commonjs" or Node cannot tell: rename it .mjs, set "type": "module", or write module.exports and require())`;
}

/**
 * A load error in one line for a log message: esbuild's (TypeScript through tsx) begins with
 * "Transform failed with 1 error:" and gives the reason on the next line, after its location.
 */
export function loadErrorMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const [first = '', ...rest] = message.split('\n');
  if (!/^Transform failed with \d+ errors?:$/.test(first) || rest.length === 0) return first;
  return rest[0]!.replace(/^.*?: ERROR: /, '');
}

/** Where esbuild's transform error (see {@link loadErrorMessage}) is, as `file:line:column`, if it says. */
export function transformErrorWhere(err: unknown, known: readonly string[] = []): string | undefined {
  const message = err instanceof Error ? err.message : String(err);
  const [first = '', second = ''] = message.split('\n');
  if (!/^Transform failed with \d+ errors?:$/.test(first)) return undefined;
  const m = /^(.*?):(\d+:\d+): ERROR: /.exec(second);
  return m ? `${sourceFile(m[1]!, known)}:${m[2]}` : undefined;
}

/**
 * The file a load error names, as it is on disk: tsx hands esbuild a `.mts` or `.cts` file under
 * the name `.ts`, so its errors point at a file that does not exist. Of the `known` files (those
 * being loaded), one so renamed is taken first; else a sibling `.mts` or `.cts` if only one
 * exists. Any other name is kept.
 */
export function sourceFile(file: string, known: readonly string[] = []): string {
  if (!/\.tsx?$/.test(file) || existsSync(file)) return file;
  const own = known.map((k) => path.resolve(k)).find((k) => /\.[cm]ts$/.test(k) && k.replace(/\.[cm]ts$/, '.ts') === file);
  if (own) return own;
  const found = ['.mts', '.cts'].map((ext) => file.replace(/\.tsx?$/, ext)).filter((f) => existsSync(f));
  return found.length === 1 ? found[0]! : file;
}

/** The `type` of the nearest package.json above `dir` (Node's rule for `.js` files), if any says. */
function packageType(dir: string): string | undefined {
  for (let d = dir; ; d = path.dirname(d)) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(d, 'package.json'), 'utf8')) as { type?: unknown };
      return typeof pkg.type === 'string' ? pkg.type : undefined;
    } catch (err) {
      // Unreadable or not JSON: Node stops there too.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return undefined;
    }
    if (path.dirname(d) === d) return undefined;
  }
}
