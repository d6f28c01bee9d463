// Hot reload without the runner: an EndpointReloader on a plain RPCServer over the embedded
// router (real AMQP 1.0 sockets). Modules are rewritten on disk and picked up by chokidar.
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultConfig, getTransport, RPCClient, RPCServer, Target, type Transport } from '../../src/index.js';
import { EndpointReloader, type WatchOptions } from '../../src/ops/run/reloader.js';
import { ServiceGroup } from '../../src/ops/run/services.js';
import type { RunLogger } from '../../src/ops/run/types.js';
import { Router } from '../../src/router/router.js';
import { sleep, until } from '../support/assert.js';

interface Line {
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}
interface Ctx {
  router: Router;
  url: string;
  dir: string;
  transports: Transport[];
  servers: RPCServer[];
  reloaders: EndpointReloader[];
  lines: Line[];
}
const t = suite<Ctx>('hot reload of endpoint modules (library, embedded router)', {} as Ctx);

t.before.each(async (ctx) => {
  ctx.router = new Router({ port: 0 });
  ctx.url = `amqp://127.0.0.1:${await ctx.router.start()}/`;
  ctx.dir = mkdtempSync(path.join(os.tmpdir(), 'hermod-reload-'));
  writeFileSync(path.join(ctx.dir, 'package.json'), '{"type":"module"}\n');
  ctx.transports = [];
  ctx.servers = [];
  ctx.reloaders = [];
  ctx.lines = [];
});
t.after.each(async (ctx) => {
  for (const r of ctx.reloaders) await r.close();
  for (const s of ctx.servers) {
    await s.stop();
    await s.wait(1000);
  }
  for (const tr of ctx.transports) await tr.close();
  await ctx.router.stop();
  rmSync(ctx.dir, { recursive: true, force: true });
});

function logger(ctx: Ctx): RunLogger {
  const at =
    (level: string) =>
    (msg: string, fields: Record<string, unknown> = {}) =>
      ctx.lines.push({ level, msg, fields });
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** Writes file `name` of the test's folder (the write that a save in an editor makes). */
function write(ctx: Ctx, name: string, text: string): string {
  const file = path.join(ctx.dir, name);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text);
  return file;
}

/** An endpoints module: `version` comes from a local import, so editing either file is a change. */
function endpoints(ctx: Ctx, version: number): string {
  write(ctx, 'lib/version.js', `export const version = ${version};\n`);
  return write(
    ctx,
    'ep.js',
    `import { version } from './lib/version.js';
globalThis.__hermodCasts ??= 0;
export default {
  async v() { return version; },
  async slow(_ctx, { ms }) { await new Promise((r) => setTimeout(r, ms)); return version; },
  async count() { globalThis.__hermodCasts++; },
};
`,
  );
}

/** A transport for a reloader's modules that make no calls of their own. */
async function memoryTransport(ctx: Ctx): Promise<Transport> {
  const t = await getTransport('memory://reload-ctx', { config: defaultConfig() });
  ctx.transports.push(t);
  return t;
}

async function serve(ctx: Ctx, file: string, topic: string, watch: WatchOptions = {}) {
  const transport = await getTransport(ctx.url, { config: defaultConfig() });
  ctx.transports.push(transport);
  const reloader = new EndpointReloader(
    [file],
    { server: 's1', topic, transport },
    logger(ctx),
    { debounceMs: 30, ...watch },
    { service: topic },
  );
  ctx.reloaders.push(reloader);
  const server = new RPCServer(transport, new Target({ topic, server: 's1' }), await reloader.load());
  await server.start();
  ctx.servers.push(server);
  await reloader.start(server);
  const client = new RPCClient(transport, new Target({ topic }), { timeout: 5000 });
  return { server, reloader, client };
}

async function reloaded(r: EndpointReloader, before: { reloads: number; failures: number }, what: 'reloads' | 'failures') {
  // A failed reload is counted once its file and line are found, which may take a `node --check`
  // per file: seconds each on a loaded machine (over 5 s at load 19 beside two CPU hogs).
  await until(
    () => r.stats()[what] > before[what],
    `a ${what === 'reloads' ? 'reload' : 'failed reload'}`,
    what === 'reloads' ? 5000 : 15_000,
  );
  // The next edit comes after this one is fully taken in, as a person's would.
  await r.idle();
}

t('reload under load: 0 failed calls, new calls reach the new code, the subscription is not touched', async (ctx) => {
  const file = endpoints(ctx, 1);
  const { reloader, client, server } = await serve(ctx, file, 'load');
  assert.is(await client.call({}, 'v', {}), 1);
  let stop = false;
  let ok = 0;
  const failures: unknown[] = [];
  const seen: number[] = [];
  const loop = async () => {
    while (!stop) {
      try {
        seen.push((await client.call({}, 'v', {})) as number);
        ok++;
      } catch (err) {
        failures.push(err);
      }
    }
  };
  const loops = Array.from({ length: 8 }, loop);
  try {
    for (let v = 2; v <= 8; v++) {
      const before = reloader.stats();
      // Alternate between editing the module and editing its local import.
      if (v % 2 === 0) endpoints(ctx, v);
      else write(ctx, 'lib/version.js', `export const version = ${v};\n`);
      await reloaded(reloader, before, 'reloads');
      await until(() => seen.at(-1) === v, `calls answered by version ${v}`, 3000);
    }
  } finally {
    stop = true;
    await Promise.all(loops);
  }
  assert.equal(failures, [], 'no call failed across the reloads');
  assert.ok(ok > 50, `calls kept flowing (${ok})`);
  assert.is(await client.call({}, 'v', {}), 8);
  assert.is(server.stats().failed, 0);
});

t(
  'a load that serves nothing disposes the modules it made: a reload the server refuses, and one whose second module fails',
  async (ctx) => {
    const g = globalThis as { __hermodRejected?: string[] };
    g.__hermodRejected = [];
    const version = (v: string, extra = '') =>
      `export function dispose() { globalThis.__hermodRejected.push('${v}'); }\nexport default { ${extra}async v() { return '${v}'; } };\n`;
    const file = write(ctx, 'refused/a.js', version('v1'));
    const { reloader, client } = await serve(ctx, file, 'refused');
    const before = reloader.stats();
    // Loads, then the server refuses it: a long list naming no method.
    write(ctx, 'refused/a.js', version('v2', "long: ['nope'], "));
    await reloaded(reloader, before, 'failures');
    await until(() => g.__hermodRejected!.includes('v2'), 'the refused version disposed');
    assert.equal(g.__hermodRejected, ['v2'], 'the serving version is not');
    assert.is(await client.call({}, 'v', {}), 'v1');
    // Two modules, the second failing: the first one's fresh instance is disposed.
    const a = write(ctx, 'twomods/a.js', version('a1'));
    const b = write(ctx, 'twomods/b.js', 'export default { async b() { return 1; } };\n');
    const two = new EndpointReloader([a, b], { server: 's1', topic: 'twomods', transport: await memoryTransport(ctx) }, logger(ctx), {});
    ctx.reloaders.push(two);
    await two.load();
    write(ctx, 'twomods/a.js', version('a2'));
    write(ctx, 'twomods/b.js', "throw new Error('b is broken');\n");
    await two.load().then(
      () => assert.unreachable('the load failed'),
      (err: Error) => assert.match(err.message, /b is broken/),
    );
    await until(() => g.__hermodRejected!.includes('a2'), 'the first module of the failed load disposed');
    assert.not.ok(g.__hermodRejected.includes('a1'), 'not the one loaded before');
    // A factory that outlives the reload timeout: the reload is abandoned, and what the factory
    // made once it finished is disposed (it sat in the next load's place, then was lost).
    const slow = (v: string, ms: number) =>
      `export function dispose() { globalThis.__hermodRejected.push('${v}'); }\nexport default async () => { await new Promise((r) => setTimeout(r, ${ms})); return { async v() { return '${v}'; } }; };\n`;
    const c = write(ctx, 'slowfactory/a.js', slow('s1', 0));
    const timed = new EndpointReloader([c], { server: 's1', topic: 'slowf', transport: await memoryTransport(ctx) }, logger(ctx), {
      reloadTimeoutMs: 200,
    });
    ctx.reloaders.push(timed);
    await timed.load();
    timed.attach({ replaceEndpoints: () => assert.unreachable('the abandoned load must not serve') });
    write(ctx, 'slowfactory/a.js', slow('s2', 600));
    assert.is(await timed.reload(), false, 'abandoned at its timeout');
    await until(() => g.__hermodRejected!.includes('s2'), 'the late factory product disposed', 5000);
    assert.not.ok(g.__hermodRejected.includes('s1'), 'not the serving one');
  },
);

t("a module's dispose export is called when a reload replaces it: the old instance's timers stop", async (ctx) => {
  // From a fuzzer: an ES module cannot be unloaded, and after 100 reloads the intervals of all
  // 101 versions were still ticking. A module that exports dispose() now gets to close them.
  const g = globalThis as { __hermodTicks?: Record<number, number>; __hermodDisposed?: number[] };
  g.__hermodTicks = {};
  g.__hermodDisposed = [];
  const mod = (v: number) =>
    write(
      ctx,
      'ticking.js',
      `const t = setInterval(() => { globalThis.__hermodTicks[${v}] = (globalThis.__hermodTicks[${v}] ?? 0) + 1; }, 5);
export function dispose() { clearInterval(t); globalThis.__hermodDisposed.push(${v}); }
export default { async v() { return ${v}; } };
`,
    );
  const { reloader, client } = await serve(ctx, mod(1), 'dispose');
  for (let v = 2; v <= 4; v++) {
    const before = reloader.stats();
    mod(v);
    await reloaded(reloader, before, 'reloads');
    assert.is(await client.call({}, 'v', {}), v);
  }
  await until(() => g.__hermodDisposed!.length === 3, 'three disposed');
  assert.equal(g.__hermodDisposed, [1, 2, 3]);
  const before = { ...g.__hermodTicks };
  await sleep(100);
  for (const v of [1, 2, 3]) assert.is(g.__hermodTicks[v], before[v], `version ${v} stopped ticking`);
  assert.ok(g.__hermodTicks[4]! > before[4]!, 'the serving version ticks');
  // A dispose that throws is logged; the new code serves on.
  write(ctx, 'ticking.js', `export function dispose() { throw new Error('cannot close'); }\nexport default { async v() { return 5; } };\n`);
  let b = reloader.stats();
  await reloaded(reloader, b, 'reloads');
  write(ctx, 'ticking.js', `export default { async v() { return 6; } };\n`);
  b = reloader.stats();
  await reloaded(reloader, b, 'reloads');
  await until(() => ctx.lines.some((l) => l.fields.event === 'dispose-failed' && /cannot close/.test(l.msg)), 'the failure logged');
  assert.is(await client.call({}, 'v', {}), 6);
  assert.equal(g.__hermodDisposed, [1, 2, 3, 4]);
});

t('a SIGHUP reload of a run without a watch disposes the instance loaded at start, then each one it replaces', async (ctx) => {
  // From a review: the start's load went through loadEndpoints, which dropped `dispose`, so the
  // first SIGHUP's reloader had nothing to call for the instance it replaced.
  const g = globalThis as { __hermodHupDisposed?: string[] };
  g.__hermodHupDisposed = [];
  const mod = (v: string) =>
    write(
      ctx,
      'hup/ep.js',
      `export function dispose() { globalThis.__hermodHupDisposed.push('${v}'); }\nexport default { async v() { return '${v}'; } };\n`,
    );
  const file = mod('v1');
  const group = new ServiceGroup({
    services: [{ name: 'hup', endpoints: [file], topic: 'hup', server: 's1', config: {} }],
    workersOf: () => 1,
    configFor: () => ({ ...defaultConfig(), transportUrl: 'memory://hup-dispose' }),
    log: logger(ctx),
  });
  await group.start();
  try {
    const server = group.servers().get('hup')!;
    for (const v of ['v2', 'v3']) {
      mod(v);
      assert.equal(await group.reload().done, { took: 1, failed: 0 });
      assert.is(server.stats().failed, 0);
    }
    await until(() => g.__hermodHupDisposed!.length === 2, `both replaced instances disposed (${g.__hermodHupDisposed})`);
    assert.equal(g.__hermodHupDisposed, ['v1', 'v2'], 'the startup instance first; the serving one is not');
  } finally {
    await group.stop();
    await group.wait(1000);
  }
});

t('a running call finishes on the old code while new calls get the new', async (ctx) => {
  const file = endpoints(ctx, 1);
  const { reloader, client } = await serve(ctx, file, 'inflight');
  const slow = client.call({}, 'slow', { ms: 600 });
  await sleep(100);
  const before = reloader.stats();
  endpoints(ctx, 2);
  await reloaded(reloader, before, 'reloads');
  assert.is(await client.call({}, 'v', {}), 2);
  assert.is(await slow, 1, 'the call that started on version 1 ends on it');
});

t("a replaced module's dispose waits for the calls still running on it (a SIGHUP, and a save)", async (ctx) => {
  // From a review: dispose() ran right after the swap, and a call in flight on the old code
  // failed with "pool is closed" between its two queries.
  const mod = (v: string) =>
    write(
      ctx,
      'pool/ep.js',
      `let open = true;
export function dispose() { open = false; }
const query = () => { if (!open) throw new Error('pool is closed'); return '${v}'; };
export default {
  async transfer(_ctx, { ms }) { query(); await new Promise((r) => setTimeout(r, ms)); return query(); },
  async v() { return query(); },
};
`,
    );
  const file = mod('v1');
  const group = new ServiceGroup({
    services: [{ name: 'pool', endpoints: [file], topic: 'pool', server: 's1', config: {} }],
    workersOf: () => 1,
    configFor: () => ({ ...defaultConfig(), transportUrl: 'memory://reload-pool' }),
    log: logger(ctx),
  });
  await group.start();
  const transport = await getTransport('memory://reload-pool', { config: defaultConfig() });
  ctx.transports.push(transport);
  const client = new RPCClient(transport, new Target({ topic: 'pool' }), { timeout: 5000 });
  try {
    const running = client.call({}, 'transfer', { ms: 500 });
    await until(() => group.servers().get('pool')!.stats().inFlight === 1, 'the transfer running');
    mod('v2');
    assert.equal(await group.reload().done, { took: 1, failed: 0 });
    assert.is(await client.call({}, 'v', {}), 'v2');
    assert.is(await running, 'v1', 'the running call ends on the old code, its pool still open');
  } finally {
    await group.stop();
    await group.wait(1000);
  }
});

t('two services of one module that exports an object: each serves in its own namespace and version, frozen or not', async (ctx) => {
  // From a review: the service's namespace was written onto the exported object, which Node
  // shares between the services that load it: the second served in the first one's namespace,
  // and a frozen object stopped the run with a TypeError in hermod's own file.
  for (const frozen of [false, true]) {
    const file = write(ctx, `shared-${frozen}.js`, `export default ${frozen ? 'Object.freeze(' : '('}{ async hi() { return 'hi'; } });\n`);
    const url = `memory://shared-object-${frozen}`;
    const group = new ServiceGroup({
      services: [
        { name: 'a', endpoints: [file], topic: 'ta', server: 's1', namespace: 'ns1', version: '1.0', config: {} },
        { name: 'b', endpoints: [file], topic: 'tb', server: 's1', namespace: 'ns2', version: '2.0', config: {} },
      ],
      workersOf: () => 1,
      configFor: () => ({ ...defaultConfig(), transportUrl: url }),
      log: logger(ctx),
    });
    await group.start();
    try {
      const transport = await getTransport(url, { config: defaultConfig() });
      ctx.transports.push(transport);
      const a = new RPCClient(transport, new Target({ topic: 'ta', namespace: 'ns1', version: '1.0' }), { timeout: 3000 });
      const b = new RPCClient(transport, new Target({ topic: 'tb', namespace: 'ns2', version: '2.0' }), { timeout: 3000 });
      assert.is(await a.call({}, 'hi', {}), 'hi');
      assert.is(await b.call({}, 'hi', {}), 'hi', `frozen: ${frozen}`);
      // And after a reload, whose endpoints get the same.
      assert.equal(await group.reload().done, { took: 2, failed: 0 });
      assert.is(await b.call({}, 'hi', {}), 'hi');
    } finally {
      await group.stop();
      await group.wait(1000);
    }
  }
});

t('a reload asked for while the services are still starting waits for them all, then reloads every one', async (ctx) => {
  // From a review: a SIGHUP while the broker was not there yet reloaded only the services
  // started so far and said every service served the new code.
  const mod = (name: string, v: string) => write(ctx, `starting/${name}.js`, `export default { async v() { return '${v}'; } };\n`);
  const fa = mod('a', 'a1');
  const fb = mod('b', 'b1');
  const router = new Router({ port: 0 });
  const port = await router.start();
  await router.stop();
  const url = `amqp://127.0.0.1:${port}/`;
  const group = new ServiceGroup({
    services: [
      { name: 'a', endpoints: [fa], topic: 'sa', server: 's1', config: {} },
      { name: 'b', endpoints: [fb], topic: 'sb', server: 's1', config: {} },
    ],
    workersOf: () => 1,
    configFor: () => ({ ...defaultConfig(), transportUrl: url }),
    log: logger(ctx),
  });
  const started = group.start();
  await sleep(200);
  assert.ok(group.starting, 'no router: still starting');
  mod('a', 'a2');
  mod('b', 'b2');
  const reload = group.reload().done;
  const later = new Router({ port });
  await later.start();
  try {
    await started;
    assert.equal(await reload, { took: 2, failed: 0 });
    const transport = await getTransport(url, { config: defaultConfig() });
    ctx.transports.push(transport);
    const c = (topic: string) => new RPCClient(transport, new Target({ topic }), { timeout: 3000 });
    assert.is(await c('sa').call({}, 'v', {}), 'a2');
    assert.is(await c('sb').call({}, 'v', {}), 'b2');
  } finally {
    await group.stop();
    await group.wait(1000);
    await later.stop();
  }
});

t('a broken module keeps the old code serving and is logged with file and line; the fixed one loads on the next save', async (ctx) => {
  const file = endpoints(ctx, 1);
  const { reloader, client } = await serve(ctx, file, 'broken');
  // A syntax error in the local import: V8 names no file for it, the reloader finds it.
  let before = reloader.stats();
  const lib = write(ctx, 'lib/version.js', 'export const version = 2;\nthis is not javascript;\n');
  await reloaded(reloader, before, 'failures');
  const err = ctx.lines.find((l) => l.level === 'error')!;
  assert.ok(err, 'an error line');
  assert.is(err.fields.file, `${lib}:2`);
  assert.match(err.msg, /reload failed at .*version\.js:2: .*previous code keeps serving/);
  assert.is(await client.call({}, 'v', {}), 1, 'the old code still answers');

  // A throw at the top level of the module itself.
  before = reloader.stats();
  write(ctx, 'ep.js', "export default { async v() { return 3; } };\n\nthrow new Error('not today');\n");
  await reloaded(reloader, before, 'failures');
  const err2 = ctx.lines.filter((l) => l.level === 'error')[1]!;
  assert.is(err2.fields.file, `${file}:3:7`);
  assert.match(String(err2.fields.error), /not today/);
  assert.is(await client.call({}, 'v', {}), 1);

  // An export that is not an endpoint.
  before = reloader.stats();
  write(ctx, 'ep.js', 'export const nothing = 1;\n');
  await reloaded(reloader, before, 'failures');
  const err3 = ctx.lines.filter((l) => l.level === 'error')[2]!;
  assert.match(err3.msg, /exports neither a default nor 'endpoints'/);
  // The module, not hermod's own file that found it out.
  assert.is(err3.fields.file, file);

  before = reloader.stats();
  endpoints(ctx, 4);
  await reloaded(reloader, before, 'reloads');
  assert.is(await client.call({}, 'v', {}), 4, 'the fixed module serves');
});

t('a deleted module is reported and its loaded code keeps serving; the file coming back is a reload', async (ctx) => {
  const file = endpoints(ctx, 1);
  const { reloader, client } = await serve(ctx, file, 'deleted');
  const lib = path.join(ctx.dir, 'lib/version.js');
  rmSync(lib);
  await until(() => ctx.lines.some((l) => l.level === 'warn' && l.fields.event === 'deleted'), 'a warning for the deletion');
  const warn = ctx.lines.find((l) => l.fields.event === 'deleted')!;
  assert.is(warn.fields.file, lib);
  assert.match(warn.msg, /version\.js was deleted; the code loaded from it keeps serving until it is back/);
  assert.is(await client.call({}, 'v', {}), 1, 'the loaded code still answers');
  assert.is(reloader.stats().failures, 0, 'a deletion is not a failed reload');
  const before = reloader.stats();
  // Only the deleted file comes back: its return alone must be noticed.
  write(ctx, 'lib/version.js', 'export const version = 2;\n');
  await reloaded(reloader, before, 'reloads');
  assert.is(await client.call({}, 'v', {}), 2, 'the file back is loaded');
});

t(
  'an ES module .js file outside a "type": "module" package serves its methods, before and after a TypeScript service registered tsx',
  async (ctx) => {
    // Node runs ESM syntax in such a file as ESM; tsx, once registered, compiles it to CommonJS,
    // and its factory was served as one RPC method called `default`.
    write(ctx, 'plain/package.json', '{ "name": "plain" }\n');
    write(ctx, 'plain/lib.js', 'export const who = "v1";\n');
    const file = write(
      ctx,
      'plain/ep.js',
      "import { who } from './lib.js';\nexport default ({ server }) => ({ async whoami() { return who + ' ' + server; } });\n",
    );
    const { reloader, client } = await serve(ctx, file, 'plain');
    assert.is(await client.call({}, 'whoami', {}), 'v1 s1');
    const ts = write(ctx, 'other.ts', 'export default { async n(): Promise<number> { return 1; } };\n');
    const other = await serve(ctx, ts, 'other-ts');
    assert.is(await other.client.call({}, 'n', {}), 1);
    const before = reloader.stats();
    write(ctx, 'plain/lib.js', 'export const who = "v2";\n');
    await reloaded(reloader, before, 'reloads');
    assert.is(await client.call({}, 'whoami', {}), 'v2 s1');
    const err = await client.call({}, 'default', {}).catch((e: unknown) => e);
    assert.instance(err, Error);
    assert.match(String((err as Error).message), /default/);
    assert.is((err as Error).name, 'NoSuchMethod');
  },
);

t(
  'a reload whose top-level await never settles fails after reloadTimeoutMs; the old code serves, the next save loads, close is prompt',
  async (ctx) => {
    const file = endpoints(ctx, 1);
    const { reloader, client } = await serve(ctx, file, 'hang', { reloadTimeoutMs: 400 });
    let before = reloader.stats();
    write(ctx, 'lib/version.js', 'await new Promise(() => {});\nexport const version = 2;\n');
    await reloaded(reloader, before, 'failures');
    const err = ctx.lines.find((l) => l.fields.event === 'reload-failed')!;
    assert.match(err.msg, /did not finish within 400 ms.*the previous code keeps serving$/, err.msg);
    assert.is(await client.call({}, 'v', {}), 1);
    before = reloader.stats();
    write(ctx, 'lib/version.js', 'export const version = 3;\n');
    await reloaded(reloader, before, 'reloads');
    assert.is(await client.call({}, 'v', {}), 3);
    // Hung again, and the reloader closes while it waits: the close does not wait for the import.
    write(ctx, 'lib/version.js', 'await new Promise(() => {});\nexport const version = 4;\n');
    const hung = new EndpointReloader([file], { server: 's1', topic: 'hang', transport: await memoryTransport(ctx) }, logger(ctx), {
      reloadTimeoutMs: 60_000,
    });
    await hung.start({ replaceEndpoints: () => assert.unreachable('nothing loaded') });
    const reloading = hung.reload();
    await sleep(300);
    const t0 = performance.now();
    await hung.close();
    assert.is(await reloading, false);
    assert.ok(performance.now() - t0 < 1000, `close took ${performance.now() - t0} ms`);
    assert.is(hung.stats().failures, 0, 'a reload cut by the close is not a failure');
  },
);

t('an abandoned reload runs nothing more once its stuck import settles: no later module, no factory', async (ctx) => {
  write(ctx, 'slow/package.json', '{"type":"module"}\n');
  const a = write(ctx, 'slow/a.js', 'export default { async a() { return 1; } };\n');
  const b = write(
    ctx,
    'slow/b.js',
    'export default () => { globalThis.__hermodFactories = (globalThis.__hermodFactories ?? 0) + 1; return { async b() { return 1; } }; };\n',
  );
  const g = globalThis as { __hermodFactories?: number };
  const reloader = new EndpointReloader([a, b], { server: 's1', topic: 'slow', transport: await memoryTransport(ctx) }, logger(ctx), {
    reloadTimeoutMs: 300,
  });
  ctx.reloaders.push(reloader);
  await reloader.load();
  const made = g.__hermodFactories;
  await reloader.start({ replaceEndpoints: () => undefined });
  write(ctx, 'slow/a.js', 'await new Promise((r) => setTimeout(r, 800));\nexport default { async a() { return 2; } };\n');
  assert.is(await reloader.reload(), false, 'the reload timed out');
  // The stuck import settles at 800 ms; before, b.js was then imported and its factory run.
  await sleep(1200);
  assert.is(g.__hermodFactories, made);
});

t('a file a cut reload imports after the close is not watched: the closed watcher stays closed', async (ctx) => {
  write(ctx, 'late/package.json', '{"type":"module"}\n');
  write(ctx, 'late/b.js', 'export const b = 1;\n');
  const a = write(ctx, 'late/a.js', 'export default { async a() { return 1; } };\n');
  const reloader = new EndpointReloader([a], { server: 's1', topic: 'late', transport: await memoryTransport(ctx) }, logger(ctx), {
    reloadTimeoutMs: 60_000,
  });
  ctx.reloaders.push(reloader);
  await reloader.load();
  await reloader.start({ replaceEndpoints: () => undefined });
  write(
    ctx,
    'late/a.js',
    "await new Promise((r) => setTimeout(r, 400));\nawait import('./b.js');\nexport default { async a() { return 2; } };\n",
  );
  const reloading = reloader.reload();
  await sleep(100);
  await reloader.close();
  assert.is(await reloading, false);
  // The import of b.js after the close added it to the closed watcher, which reopened it: a
  // file watch that nothing closes, holding the process open.
  await sleep(800);
  const watcher = (reloader as unknown as { watcher: { closed: boolean; getWatched(): Record<string, string[]> } }).watcher;
  assert.is(watcher.closed, true, `watching ${JSON.stringify(watcher.getWatched())}`);
});

t('TypeScript modules and their TypeScript imports reload; type errors in syntax are located', async (ctx) => {
  write(ctx, 'util.ts', "export const greet = (n: string): string => 'hello ' + n;\n");
  const file = write(
    ctx,
    'greeter.ts',
    "import { greet } from './util.js';\nexport default class Greeter {\n  async hello(_c: unknown, a: { name: string }): Promise<string> { return greet(a.name); }\n}\n",
  );
  const { reloader, client } = await serve(ctx, file, 'ts');
  assert.is(await client.call({}, 'hello', { name: 'a' }), 'hello a');
  let before = reloader.stats();
  write(ctx, 'util.ts', "export const greet = (n: string): string => 'bonjour ' + n;\n");
  await reloaded(reloader, before, 'reloads');
  assert.is(await client.call({}, 'hello', { name: 'a' }), 'bonjour a');
  before = reloader.stats();
  const util = write(ctx, 'util.ts', "export const greet = (n: string): string => 'x ' + n;\nlet = ;\n");
  await reloaded(reloader, before, 'failures');
  const err = ctx.lines.find((l) => l.level === 'error')!;
  assert.match(String(err.fields.file), new RegExp(`^${util}:2:\\d+$`));
  // esbuild's reason, not its "Transform failed with 1 error:" heading.
  assert.match(err.msg, /util\.ts:2:\d+: Unexpected ";"; the previous code keeps serving$/, err.msg);
  assert.is(await client.call({}, 'hello', { name: 'a' }), 'bonjour a');
});

t('CommonJS reloads: a .cjs, a CommonJS .js and a .ts in a package without "type": "module", and what they require', async (ctx) => {
  // Node's CommonJS loader keeps a module by file name whatever the import URL's query: these
  // kept their first code while every reload was logged. A .ts there did not load at all.
  write(ctx, 'cjs/package.json', '{ "name": "typeless" }\n');
  const lib = (v: number) => write(ctx, 'cjs/lib.js', `exports.version = ${v};\n`);
  const tlib = (v: number) => write(ctx, 'cjs/tlib.ts', `export const version: number = ${v};\n`);
  lib(1);
  tlib(1);
  const files = [
    write(ctx, 'cjs/a.cjs', "const { version } = require('./lib.js');\nmodule.exports = { async v() { return ['cjs', version]; } };\n"),
    write(ctx, 'cjs/b.js', "const lib = require('./lib.js');\nmodule.exports = { async v() { return ['js', lib.version]; } };\n"),
    write(
      ctx,
      'cjs/c.ts',
      "import { version } from './tlib';\nexport default { async v(): Promise<[string, number]> { return ['ts', version]; } };\n",
    ),
  ];
  const served = await Promise.all(files.map((f, i) => serve(ctx, f, `cjs-${i}`)));
  const answers = () => Promise.all(served.map(({ client }) => client.call({}, 'v', {})));
  assert.equal(await answers(), [
    ['cjs', 1],
    ['js', 1],
    ['ts', 1],
  ]);
  for (const v of [2, 3]) {
    const before = served.map(({ reloader }) => reloader.stats());
    lib(v);
    tlib(v);
    // A required file is watched: editing it (not the module) is the reload.
    await Promise.all(served.map(({ reloader }, i) => reloaded(reloader, before[i]!, 'reloads')));
    assert.equal(await answers(), [
      ['cjs', v],
      ['js', v],
      ['ts', v],
    ]);
  }
});

t('beside a TypeScript service, a CommonJS module that require()s hermod gets its classes, not a compiled copy', async (ctx) => {
  // tsx's CommonJS hook, registered for TypeScript, also took over .js and .mjs: hermod (an ES
  // module) require()d from CommonJS came back as a second copy, whose Target the server refused.
  write(ctx, 'dual/package.json', '{ "name": "typeless" }\n');
  const ts = write(ctx, 'dual/first.ts', 'export default { async t(): Promise<string> { return "ts"; } };\n');
  const index = fileURLToPath(new URL('../../src/index.js', import.meta.url));
  const cjs = write(
    ctx,
    'dual/ep.cjs',
    `const { Target } = require(${JSON.stringify(index)});\nmodule.exports = { target: new Target({ namespace: 'ns', version: '1.2' }), async v() { return 'cjs'; } };\n`,
  );
  const first = await serve(ctx, ts, 'dual-ts');
  assert.is(await first.client.call({}, 't', {}), 'ts');
  const { client } = await serve(ctx, cjs, 'dual-cjs');
  assert.is(await client.prepare({ namespace: 'ns', version: '1.1' }).call({}, 'v', {}), 'cjs');
});

t('an ES module that CommonJS require()s cannot reload: said once, not watched; the rest of the module reloads', async (ctx) => {
  write(ctx, 'pin/package.json', '{ "name": "typeless" }\n');
  const helper = write(ctx, 'pin/helper.mjs', 'export const h = 1;\n');
  const lib = (v: number) => write(ctx, 'pin/lib.js', `exports.l = ${v};\n`);
  lib(1);
  const ep = write(
    ctx,
    'pin/ep.cjs',
    "const { h } = require('./helper.mjs');\nconst lib = require('./lib.js');\nmodule.exports = { async v() { return [h, lib.l]; } };\n",
  );
  const { reloader, client } = await serve(ctx, ep, 'pin');
  assert.equal(await client.call({}, 'v', {}), [1, 1]);
  const before = reloader.stats();
  lib(2);
  await reloaded(reloader, before, 'reloads');
  assert.equal(await client.call({}, 'v', {}), [1, 2]);
  // Node's ES module loader keeps helper.mjs's first instance whatever the CommonJS cache says:
  // it was watched, and an edit to it was logged as a reload that served the old code.
  const warned = ctx.lines.filter((l) => l.fields.event === 'not-reloadable');
  assert.equal(
    warned.map((l) => [l.level, l.fields.file]),
    [['warn', helper]],
  );
  assert.match(warned[0]!.msg, /require\(\)s: Node keeps its first instance, so a reload does not take edits to it/);
  const watched = (reloader as unknown as { watcher: { getWatched(): Record<string, string[]> } }).watcher.getWatched();
  assert.not.ok(watched[path.dirname(helper)]?.includes('helper.mjs'), JSON.stringify(watched));
});

t('no duplicated service after reloads: a fanout cast runs once, one consumer', async (ctx) => {
  const file = endpoints(ctx, 1);
  const { reloader, client } = await serve(ctx, file, 'dup');
  for (let v = 2; v <= 5; v++) {
    const before = reloader.stats();
    endpoints(ctx, v);
    await reloaded(reloader, before, 'reloads');
  }
  const g = globalThis as { __hermodCasts?: number };
  const start = g.__hermodCasts ?? 0;
  await client.prepare({ fanout: true }).cast({}, 'count', {});
  await client.cast({}, 'count', {});
  assert.is(await client.call({}, 'v', {}), 5);
  await sleep(200);
  assert.is((g.__hermodCasts ?? 0) - start, 2, 'one fanout cast and one cast ran once each');
});

t('polling (containers, network filesystems): usePolling picks up a change', async (ctx) => {
  const file = endpoints(ctx, 1);
  const { reloader, client } = await serve(ctx, file, 'poll', { usePolling: true, interval: 50 });
  const before = reloader.stats();
  endpoints(ctx, 2);
  await reloaded(reloader, before, 'reloads');
  assert.is(await client.call({}, 'v', {}), 2);
});

t('a file replaced by delete-then-write (an editor, a deploy) while polling is a reload, not a deletion', async (ctx) => {
  const file = endpoints(ctx, 1);
  const { reloader, client } = await serve(ctx, file, 'replace', { usePolling: true, interval: 50 });
  const lib = path.join(ctx.dir, 'lib/version.js');
  const before = reloader.stats();
  rmSync(lib);
  // Longer than two polls, so the watcher sees the file gone (an unlink event), as a slow save can.
  await sleep(120);
  write(ctx, 'lib/version.js', 'export const version = 2;\n');
  await reloaded(reloader, before, 'reloads');
  assert.is(await client.call({}, 'v', {}), 2, 'the new file is loaded');
  await sleep(400);
  assert.equal(
    ctx.lines.filter((l) => l.fields.event === 'deleted').map((l) => l.msg),
    [],
    'no deletion reported for a file that was back within a check',
  );
});

t('a symlink-swap deploy (current -> releases/vN) reloads the new release, and what it imports through a symlink too', async (ctx) => {
  // From a review: Node's resolver keeps each path's real path for the process's life, so a
  // reload after `current` was swapped read releases/v1 again and said it took the new code.
  for (const v of [1, 2]) {
    write(ctx, `releases/v${v}/package.json`, '{"type":"module"}\n');
    write(ctx, `releases/v${v}/calc.js`, `export default { async v() { return 'v${v}'; } };\n`);
    write(ctx, `releases/v${v}/lib.js`, `export const v = 'lib v${v}';\n`);
  }
  const current = path.join(ctx.dir, 'current');
  const deploy = (v: number) => {
    symlinkSync(`releases/v${v}`, `${current}.tmp`);
    renameSync(`${current}.tmp`, current);
  };
  deploy(1);
  // Imports its local file through the symlink: the hook's own resolution is where that goes wrong.
  const ep = write(ctx, 'ep.js', "import { v } from './current/lib.js';\nexport default { async lib() { return v; } };\n");
  const reloader = new EndpointReloader(
    [path.join(current, 'calc.js'), ep],
    { server: 's1', topic: 'sym', transport: await memoryTransport(ctx) },
    logger(ctx),
  );
  ctx.reloaders.push(reloader);
  const served = async () => {
    const [calc, lib] = (await reloader.load()) as Array<Record<string, () => Promise<string>>>;
    return [await calc!.v!(), await lib!.lib!()];
  };
  assert.equal(await served(), ['v1', 'lib v1']);
  deploy(2);
  assert.equal(await served(), ['v2', 'lib v2'], 'the release current points to now');
  deploy(1);
  assert.equal(await served(), ['v1', 'lib v1'], 'and back (a rollback)');
});

t('a local file two endpoint modules import is one instance after a reload, as in a plain run', async (ctx) => {
  // From a review: each module of a reload took a generation of its own, so a.js and b.js got two
  // copies of shared.js (a put through one was not seen by a get through the other).
  write(ctx, 'kv/shared.js', 'export const store = new Map();\n');
  const a = write(
    ctx,
    'kv/a.js',
    "import { store } from './shared.js';\nexport default { async put(_c, { k, v }) { store.set(k, v); } };\n",
  );
  const b = write(
    ctx,
    'kv/b.js',
    "import { store } from './shared.js';\nexport default { async get(_c, { k }) { return store.get(k); } };\n",
  );
  write(
    ctx,
    'kv/c.cjs',
    "const { store } = require('./shared.cjs');\nmodule.exports = { async cput(_c, { k, v }) { store.set(k, v); } };\n",
  );
  write(
    ctx,
    'kv/d.cjs',
    "const { store } = require('./shared.cjs');\nmodule.exports = { async cget(_c, { k }) { return store.get(k); } };\n",
  );
  write(ctx, 'kv/shared.cjs', 'exports.store = new Map();\n');
  const reloader = new EndpointReloader(
    [a, b, path.join(ctx.dir, 'kv/c.cjs'), path.join(ctx.dir, 'kv/d.cjs')],
    { server: 's1', topic: 'kv', transport: await memoryTransport(ctx) },
    logger(ctx),
  );
  ctx.reloaders.push(reloader);
  type Kv = Record<string, (c: object, args: Record<string, string>) => Promise<unknown>>;
  for (const pass of ['start', 'reload', 'second reload']) {
    const [put, get, cput, cget] = (await reloader.load()) as Kv[];
    await put!.put!({}, { k: pass, v: 'x' });
    assert.is(await get!.get!({}, { k: pass }), 'x', `ES modules, ${pass}`);
    await cput!.cput!({}, { k: pass, v: 'y' });
    assert.is(await cget!.cget!({}, { k: pass }), 'y', `CommonJS modules, ${pass}`);
  }
});

t('hermod installed through a symlink (npm link, a workspace) is not loaded again by a reload', async (ctx) => {
  // From a review: the loader hook told a package by /node_modules/ in its real path, which a
  // linked package has not: every reload loaded a second hermod, whose Target the server refused.
  let root = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(root, 'package.json'))) root = path.dirname(root);
  mkdirSync(path.join(ctx.dir, 'node_modules'));
  symlinkSync(root, path.join(ctx.dir, 'node_modules/hermod'));
  const file = write(
    ctx,
    'linked.js',
    "import { Target } from 'hermod';\nexport default { target: new Target({ namespace: 'ns', version: '1.0' }), async hi() { return 'hi'; } };\n",
  );
  const { reloader, client } = await serve(ctx, file, 'linked');
  const prepared = client.prepare({ namespace: 'ns', version: '1.0' });
  assert.is(await prepared.call({}, 'hi', {}), 'hi');
  assert.ok(await reloader.reloadNow(), `reloaded (${JSON.stringify(ctx.lines.filter((l) => l.level === 'error'))})`);
  assert.ok(await reloader.reloadNow(), 'and again');
  assert.is(await prepared.call({}, 'hi', {}), 'hi');
});

t.run();
