import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type PackedApp, packAndInstall, root, typescriptSpec } from '../support/package-app.js';

// The package as a user gets it: `npm pack`, installed from the tarball into an empty app next
// to TypeScript and nothing else, then every TypeScript block of the README compiled with
// `tsc --strict` against the installed `.d.ts` files and run. This is what catches a type that
// needs an undeclared dependency, a missing export, or an example that only works in-tree.
// The CommonJS app is package-cjs.test.ts: it is what each Node line must run, while these
// checks of files and types do not depend on the line.

const t = suite<PackedApp>('package: the README examples in a fresh app', { dir: '', app: '', tarball: '', files: [] });

t.before((ctx) => {
  Object.assign(ctx, packAndInstall([typescriptSpec()]));
});

t.after((ctx) => {
  if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
});

t('the package ships its licence, its sources beside their maps, and no tests', (ctx) => {
  const pkg = path.join(ctx.app, 'node_modules', 'hermod');
  assert.ok(existsSync(path.join(pkg, 'LICENSE')), 'LICENSE is shipped');
  assert.match(readFileSync(path.join(pkg, 'LICENSE'), 'utf8'), /Apache License\s+Version 2\.0/);
  assert.not.ok(existsSync(path.join(pkg, 'test')), 'no test sources');
  assert.not.ok(existsSync(path.join(pkg, 'dist', 'test')), 'no compiled tests');
  let maps = 0;
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.js.map')) {
        maps++;
        const map = JSON.parse(readFileSync(p, 'utf8')) as { sources: string[] };
        for (const s of map.sources)
          assert.ok(existsSync(path.resolve(dir, s)), `${path.relative(pkg, p)} points at ${s}, which is shipped`);
      }
    }
  };
  walk(path.join(pkg, 'dist'));
  assert.ok(maps > 20, `source maps checked (${maps})`);
});

t('every relative link and #anchor in the shipped Markdown resolves inside the package', (ctx) => {
  const pkg = path.join(ctx.app, 'node_modules', 'hermod');
  const docs = ctx.files.filter((f) => /\.md$/i.test(f));
  assert.ok(docs.includes('README.md'), `README.md is shipped (${docs.join(', ')})`);
  const shipped = new Set(ctx.files);
  const isShippedDir = (p: string) => ctx.files.some((f) => f.startsWith(`${p.replace(/\/$/, '')}/`));
  const slugsOf = new Map<string, Set<string>>();
  const slugs = (doc: string) => {
    if (!slugsOf.has(doc)) slugsOf.set(doc, headingSlugs(readFileSync(path.join(pkg, doc), 'utf8')));
    return slugsOf.get(doc)!;
  };
  const broken: string[] = [];
  let anchors = 0;
  for (const doc of docs) {
    for (const { target, line } of markdownLinks(readFileSync(path.join(pkg, doc), 'utf8'))) {
      // External links (a scheme, or protocol-relative) are not the package's to keep working.
      if (/^[a-z][a-z0-9+.-]*:|^\/\//i.test(target)) continue;
      const hash = target.indexOf('#');
      const file = decodeURIComponent(hash < 0 ? target : target.slice(0, hash));
      const anchor = hash < 0 ? undefined : decodeURIComponent(target.slice(hash + 1));
      const where = `${doc}:${line}: ${target}`;
      const resolved = file === '' ? doc : path.posix.normalize(path.posix.join(path.posix.dirname(doc), file));
      if (file !== '') {
        if (file.startsWith('/') || resolved.startsWith('../')) {
          broken.push(`${where} (points outside the package)`);
          continue;
        }
        if (!shipped.has(resolved) && !isShippedDir(resolved)) {
          broken.push(`${where} (${resolved} is not in the tarball)`);
          continue;
        }
      }
      if (anchor !== undefined && /\.md$/i.test(resolved)) {
        anchors++;
        if (!slugs(resolved).has(anchor)) broken.push(`${where} (no heading of ${resolved} has the slug '${anchor}')`);
      }
    }
  }
  assert.equal(broken, [], `broken links in the package:\n${broken.join('\n')}`);
  assert.ok(anchors >= 5, `anchor links checked (${anchors})`);
});

t('every TypeScript block of the README compiles with tsc --strict and runs', (ctx) => {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
  assert.ok(blocks.length >= 2, `README has TypeScript blocks (${blocks.length})`);
  const expected: Array<[RegExp, RegExp[]]> = [
    [/\{ user: 'alice' \}, 'resize'/, [/i-1[^\n]*m1[^\n]*alice/, /i-2[^\n]*m2[^\n]*bob/]],
    [/new Notifier\(/, [/^compute\.host1 compute\.instance\.create\.end \{"id":"i-1"\} undefined$/m]],
    [/createGateway\(/, [/^200 \{ result: 5 \}$/m]],
  ];
  const files = blocks.map((code, i) => {
    const file = path.join(ctx.app, `example-${i + 1}.mts`);
    writeFileSync(file, code);
    return file;
  });
  // A fresh app's tsc: strict, Node's module system, no skipLibCheck, no @types named by hand.
  // `types: []` is TypeScript 6's default (`npm install typescript` gave 7.0.2 in Dec 2026): no
  // @types package is loaded unless something references it, so hermod's .d.ts must bring
  // @types/node themselves. (5.9, the repo's, loaded every @types package, which hid that.) The
  // blocks that import only 'hermod' (the library quick start, notifications, …) compile apart
  // from the others: in one program, the gateway block's fastify types load @types/node for all
  // of them, and hid that an app with only the quick start did not compile.
  const alone = (code: string) => [...code.matchAll(/from '([^']+)'/g)].every((m) => m[1] === 'hermod');
  const programs = [files.filter((_f, i) => alone(blocks[i]!)), files.filter((_f, i) => !alone(blocks[i]!))];
  assert.ok(programs[0]!.length >= 2, `blocks that import only hermod (${programs[0]!.length})`);
  programs.forEach((group, p) => {
    if (group.length === 0) return;
    const config = `tsconfig-${p}.json`;
    writeFileSync(
      path.join(ctx.app, config),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          types: [],
          outDir: path.join(ctx.app, 'out'),
        },
        files: group,
      }),
    );
    // Type-checking every .d.ts hermod pulls in took over 120 s once on a machine at load
    // average 15 with 2 cores; the bound is against a hung compiler, not a measure.
    // PACKAGE_TYPECHECK=0 (CI's second full Node line) only emits (`--noCheck`): the types checked
    // are the installed packages', whatever Node runs tsc, and the check takes 50 s (70 s of CPU).
    const noCheck = process.env.PACKAGE_TYPECHECK === '0' ? ['--noCheck'] : [];
    const tsc = spawnSync(process.execPath, [path.join(ctx.app, 'node_modules/typescript/bin/tsc'), '-p', config, ...noCheck], {
      cwd: ctx.app,
      encoding: 'utf8',
      timeout: 300_000,
    });
    assert.is(tsc.status, 0, `${group.map((f) => path.basename(f)).join(' ')}:\n${tsc.stdout}${tsc.stderr}`);
    if (noCheck.length) console.log(`    tsc --noCheck (PACKAGE_TYPECHECK=0): program ${p + 1} emitted, not type-checked`);
  });
  blocks.forEach((code, i) => {
    const run = spawnSync(process.execPath, [path.join(ctx.app, 'out', `example-${i + 1}.mjs`)], {
      cwd: ctx.app,
      // Plain output whatever the test run's own colour settings (console.log colours numbers).
      // RESIZE_SECONDS: the jobs example's resize takes 3 s instead of its 20 (as in jobs-readme).
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', RESIZE_SECONDS: '3' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.is(run.status, 0, `README block ${i + 1} exits 0:\n${run.stderr}`);
    for (const [which, outputs] of expected) {
      if (which.test(code)) for (const out of outputs) assert.match(run.stdout, out, `block ${i + 1} prints ${out}:\n${run.stdout}`);
    }
  });
});

/** Markdown with fenced code blocks blanked (their lines kept, so line numbers stay right). */
function prose(md: string): string[] {
  let fence: string | undefined;
  return md.split('\n').map((line) => {
    const open = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (fence === undefined && open) {
      fence = open[1]!;
      return '';
    }
    if (fence !== undefined) {
      if (new RegExp(`^ {0,3}${fence[0]}{${fence.length},}\\s*$`).test(line)) fence = undefined;
      return '';
    }
    return line;
  });
}

/**
 * The link targets of a Markdown file outside code: inline links and images `[t](target "title")`,
 * reference definitions `[id]: target`, and HTML `href`/`src` attributes, with their line.
 */
function markdownLinks(md: string): Array<{ target: string; line: number }> {
  const out: Array<{ target: string; line: number }> = [];
  prose(md).forEach((raw, i) => {
    const line = raw.replace(/(`+)[\s\S]*?\1/g, '');
    const add = (t: string | undefined) => t !== undefined && out.push({ target: t.replace(/^<|>$/g, ''), line: i + 1 });
    for (const m of line.matchAll(/\]\(\s*(<[^>]*>|[^\s)]+)(?:\s+"[^"]*")?\s*\)/g)) add(m[1]);
    const def = /^ {0,3}\[[^\]]+\]:\s*(\S+)/.exec(line);
    if (def) add(def[1]);
    for (const m of line.matchAll(/\b(?:href|src)\s*=\s*"([^"]*)"/gi)) add(m[1]);
  });
  return out;
}

/**
 * The anchors GitHub gives a Markdown file's headings (github-slugger's rules): the heading's text
 * (code spans keep their text, emphasis, link and HTML markup go) lowercased, every character that
 * is not a letter, mark, number, connector (`_`), space or hyphen dropped, spaces made hyphens;
 * a repeated slug gets `-1`, `-2`, …. Hand-written rather than a dependency: the rule is three
 * lines and only this test needs it.
 */
function headingSlugs(md: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of prose(md)) {
    const h = /^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/.exec(line);
    if (!h) continue;
    const text = h[1]!
      .split(/(`+[\s\S]*?`+)/)
      .map((part, i) =>
        i % 2 === 1
          ? part.replace(/^`+\s?|\s?`+$/g, '')
          : part
              .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
              .replace(/<[^>]+>/g, '')
              .replace(/(\*+|(?<![\p{L}\p{N}])_+|_+(?![\p{L}\p{N}]))/gu, ''),
      )
      .join('');
    const base = text
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
      .replace(/ /g, '-');
    let slug = base;
    while (out.has(slug)) {
      const n = (seen.get(base) ?? 0) + 1;
      seen.set(base, n);
      slug = `${base}-${n}`;
    }
    out.add(slug);
  }
  return out;
}

t.run();
