import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { until } from '../support/assert.js';
import { type CliProc, startCli } from '../support/cli-procs.js';
import { scratchDir } from '../support/scratch.js';

// A signal that comes while a long-running CLI still loads its modules. Node's default for
// SIGHUP, SIGINT and SIGTERM ends a process at once, and the CLIs loaded for 100–150 ms before
// their handlers were in place: `kill -HUP` right after a start (systemd's ExecReload, a deploy
// that stops what it just started) ended them with 129 and no log line. The window is held open
// here by module hooks that stall the load of the command's main module (support/slow-main).

const dir = scratchDir('hermod-startup-signals-');
const hooks = pathToFileURL(path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'support', 'slow-main.js')).href;
writeFileSync(path.join(dir, 'calc.mjs'), 'export default [{ async add(_ctx, a) { return a.a + a.b; } }];\n');
writeFileSync(
  path.join(dir, 'hermod.config.json'),
  JSON.stringify({ config: { transportUrl: 'memory://' }, services: { calc: { endpoints: ['./calc.mjs'], topic: 'calc', server: 'h' } } }),
);

const t = suite<{ procs: CliProc[] }>('CLIs: a signal while the command is still loading', { procs: [] });
t.after.each((ctx) => {
  for (const p of ctx.procs.splice(0)) p.child.kill('SIGKILL');
});

let n = 0;
/** Starts a CLI whose main module is held loading, and resolves once its entry runs and the load is held. */
async function loading(ctx: { procs: CliProc[] }, name: string, args: string[], env: Record<string, string> = {}): Promise<CliProc> {
  const marker = path.join(dir, `marker-${++n}`);
  const p = startCli(name, args, {
    cwd: dir,
    env: { NODE_OPTIONS: `--import ${hooks}`, SLOW_MAIN_MARKER: marker, SLOW_MAIN_MS: '1500', ...env },
    killAfterMs: 20_000,
  });
  ctx.procs.push(p);
  await until(() => existsSync(marker) || p.child.exitCode !== null, `${name} reached its main module`, 10_000);
  assert.ok(existsSync(marker), `${name} exited before its main module loaded: ${p.err}${p.out}`);
  return p;
}
const output = (p: CliProc) => p.out + p.err;

const CLIS: Array<[string, string[]]> = [
  ['rpc-server', ['--transport-url', 'memory://', '--topic', 'x', 's1']],
  ['notify-listen', ['--transport-url', 'memory://']],
  ['hermod-router', ['--port', '0']],
  ['hermod-gateway', ['--transport-url', 'memory://', '--port', '0']],
  ['hermod', ['run', 'hermod.config.json']],
];

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  t(`${signal} while loading: every long-running CLI stops gracefully (exit 0, its stop logged), not killed`, async (ctx) => {
    for (const [name, args] of CLIS) {
      const p = await loading(ctx, name, args);
      p.child.kill(signal);
      const status = await p.exited;
      assert.is(status, 0, `${name}: exit ${status} (signal ${p.child.signalCode}): ${output(p)}`);
      assert.match(output(p), new RegExp(`${signal}: no new work`), name);
      assert.match(output(p), /stopped/, name);
    }
  });
}

t('SIGHUP while loading: rpc-server stops gracefully, as on SIGHUP later', async (ctx) => {
  const p = await loading(ctx, 'rpc-server', CLIS[0]![1]);
  p.child.kill('SIGHUP');
  assert.is(await p.exited, 0, output(p));
  assert.match(output(p), /SIGHUP: no new work/);
});

t(
  'SIGHUP while loading: hermod run serves on (a reload before the first load has nothing to replace), and stops on SIGTERM',
  async (ctx) => {
    const p = await loading(ctx, 'hermod', ['run', 'hermod.config.json']);
    p.child.kill('SIGHUP');
    await until(() => /"event":"serving"/.test(p.out + p.err), 'serving after the SIGHUP', 10_000);
    assert.match(output(p), /SIGHUP during start-up: the endpoint modules are loaded now, nothing to reload/);
    assert.is(p.child.exitCode, null, 'still running');
    p.child.kill('SIGTERM');
    assert.is(await p.exited, 0, output(p));
  },
);

t('hermod status, which installs no handlers of its own, ends on a SIGINT held while it loaded (it was held for good)', async (ctx) => {
  const p = await loading(ctx, 'hermod', ['status', '--transport-url', 'amqp://127.0.0.1:1/']);
  p.child.kill('SIGINT');
  await p.exited;
  assert.is(p.child.signalCode, 'SIGINT', `${p.child.exitCode}: ${output(p)}`);
});

t('a second stop signal while the command still loads ends it at once, 130 or 143', async (ctx) => {
  const p = await loading(ctx, 'rpc-server', CLIS[0]![1]);
  p.child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 200));
  assert.is(p.child.exitCode, null, 'the first one is held, to stop gracefully once the handlers are in place');
  p.child.kill('SIGINT');
  assert.is(await p.exited, 130, output(p));
});

// Its top level never settles, having said it started; the interval keeps Node from ending the wait itself.
writeFileSync(
  path.join(dir, 'never.mjs'),
  "import { writeFileSync } from 'node:fs';\nwriteFileSync(process.env.NEVER_MARKER, '');\nsetInterval(() => {}, 1000);\nawait new Promise(() => {});\nexport default [];\n",
);
writeFileSync(path.join(dir, 'never.config.mjs'), "import './never.mjs';\nexport default {};\n");

for (const [what, name, args, said] of [
  [
    'rpc-server, an endpoint module',
    'rpc-server',
    ['s1', '--transport-url', 'memory://', '--topic', 'x', '--endpoints', './never.mjs'],
    /SIGTERM while loading the endpoint modules: nothing serves yet; stopped/,
  ],
  [
    'hermod run, a run file in JavaScript',
    'hermod',
    ['run', 'never.config.mjs'],
    /hermod run: SIGTERM while loading the run file: nothing serves yet; stopped/,
  ],
] as const) {
  t(
    `${what} whose top level does not settle: a SIGTERM ends the load at once, exit 0 (it waited for the load's 30 s bound)`,
    async (ctx) => {
      const marker = path.join(dir, `never-${++n}`);
      const p = startCli(name, [...args], { cwd: dir, env: { NEVER_MARKER: marker }, killAfterMs: 20_000 });
      ctx.procs.push(p);
      await until(() => existsSync(marker) || p.child.exitCode !== null, 'the module began to load', 10_000);
      const sent = performance.now();
      p.child.kill('SIGTERM');
      assert.is(await p.exited, 0, output(p));
      assert.ok(performance.now() - sent < 3000, `stopped ${Math.round(performance.now() - sent)} ms after the signal`);
      await until(() => said.test(output(p)), 'its line', 2000).catch(() => {});
      assert.match(output(p), said);
    },
  );
}

t('a SIGTERM held while the command loaded, before its endpoint modules load: rpc-server stops without loading them', async (ctx) => {
  const marker = path.join(dir, `never-${++n}`);
  const p = await loading(ctx, 'rpc-server', ['s1', '--transport-url', 'memory://', '--topic', 'x', '--endpoints', './never.mjs'], {
    NEVER_MARKER: marker,
  });
  p.child.kill('SIGTERM');
  assert.is(await p.exited, 0, output(p));
  assert.match(output(p), /SIGTERM while loading the endpoint modules: nothing serves yet; stopped/);
  assert.not.ok(existsSync(marker));
});

t.run();
