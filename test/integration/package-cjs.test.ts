import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type PackedApp, packAndInstall } from '../support/package-app.js';

// The package from `npm pack` in a CommonJS app, on whichever Node line runs the suite (CI runs
// this file on 20, 22 and 24): require() of an ES module works from Node 20.19 and 22.12 on
// (engines says so), and many services that would join an RPC mesh are still CommonJS.

const t = suite<PackedApp>('package: a CommonJS app', { dir: '', app: '', tarball: '', files: [] });

t.before((ctx) => {
  Object.assign(ctx, packAndInstall());
});

t.after((ctx) => {
  if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
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
