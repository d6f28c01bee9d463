import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

// The package as a user gets it: `npm pack`, installed from the tarball into an empty app next
// to TypeScript and nothing else, then every TypeScript block of the README compiled with
// `tsc --strict` against the installed `.d.ts` files and run. This is what catches a type that
// needs an undeclared dependency, a missing export, or an example that only works in-tree.

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const npm = (args: string[], cwd: string) =>
  spawnSync('npm', args, { cwd, encoding: 'utf8', timeout: 180_000, env: { ...process.env, npm_config_update_notifier: 'false' } });

interface Ctx {
  dir: string;
  app: string;
  tarball: string;
}
const t = suite<Ctx>('package: the README examples in a fresh app', { dir: '', app: '', tarball: '' });

t.before(async (ctx) => {
  ctx.dir = mkdtempSync(path.join(tmpdir(), 'hermod-pkg-'));
  // dist/ is already built by `npm test`; --ignore-scripts keeps `prepare` from rebuilding it
  // under the suites that are running from it.
  const pack = npm(['pack', '--json', '--ignore-scripts', '--pack-destination', ctx.dir], root);
  assert.is(pack.status, 0, pack.stderr);
  const [info] = JSON.parse(pack.stdout) as Array<{ filename: string }>;
  ctx.tarball = path.join(ctx.dir, info!.filename);
  ctx.app = path.join(ctx.dir, 'app');
  mkdirSync(ctx.app);
  writeFileSync(path.join(ctx.app, 'package.json'), JSON.stringify({ name: 'scratch-app', private: true, type: 'module' }));
  const tsVersion = (JSON.parse(readFileSync(path.join(root, 'node_modules/typescript/package.json'), 'utf8')) as { version: string })
    .version;
  // --prefer-offline: the packages are in npm's cache after `npm ci`; the registry is only asked when they are not.
  const install = npm(['install', '--prefer-offline', '--no-audit', '--no-fund', ctx.tarball, `typescript@${tsVersion}`], ctx.app);
  assert.is(install.status, 0, install.stdout + install.stderr);
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
  const tsc = spawnSync(
    process.execPath,
    [
      path.join(ctx.app, 'node_modules/typescript/bin/tsc'),
      '--strict',
      '--target',
      'ES2022',
      '--module',
      'NodeNext',
      '--moduleResolution',
      'NodeNext',
      '--outDir',
      path.join(ctx.app, 'out'),
      ...files,
    ],
    { cwd: ctx.app, encoding: 'utf8', timeout: 120_000 },
  );
  assert.is(tsc.status, 0, tsc.stdout + tsc.stderr);
  blocks.forEach((code, i) => {
    const run = spawnSync(process.execPath, [path.join(ctx.app, 'out', `example-${i + 1}.mjs`)], {
      cwd: ctx.app,
      // Plain output whatever the test run's own colour settings (console.log colours numbers).
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.is(run.status, 0, `README block ${i + 1} exits 0:\n${run.stderr}`);
    for (const [which, outputs] of expected) {
      if (which.test(code)) for (const out of outputs) assert.match(run.stdout, out, `block ${i + 1} prints ${out}:\n${run.stdout}`);
    }
  });
});

t('a CommonJS app require()s hermod and makes a call over the embedded router', (ctx) => {
  // require() of an ES module works from Node 20.19 and 22.12 on (engines says so): many
  // services that would join an RPC mesh are still CommonJS.
  const file = path.join(ctx.app, 'cjs-app.cjs');
  writeFileSync(
    file,
    `const { getTransport, Router, RPCServer, RPCClient, Target } = require('hermod');
(async () => {
  const router = new Router({ port: 0 });
  const port = await router.start();
  const transport = await getTransport('amqp://127.0.0.1:' + port + '/');
  const server = new RPCServer(transport, new Target({ topic: 'cjs', server: 's1' }), [{ async add(_ctx, a) { return a.a + a.b; } }]);
  await server.start();
  const client = new RPCClient(transport, new Target({ topic: 'cjs' }), { timeout: 5000 });
  console.log('sum=' + (await client.call({}, 'add', { a: 2, b: 3 })) + ' on ' + process.version);
  await server.stop();
  await server.wait();
  await transport.close();
  await router.stop();
})().catch((err) => { console.error(err); process.exit(1); });
`,
  );
  const run = spawnSync(process.execPath, [file], { cwd: ctx.app, encoding: 'utf8', timeout: 30_000 });
  assert.is(run.status, 0, run.stderr);
  assert.match(run.stdout, new RegExp(`^sum=5 on ${process.version.replace(/\./g, '\\.')}$`, 'm'));
});

t.run();
