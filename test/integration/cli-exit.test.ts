import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultConfig, getTransport, NotificationListener, Notifier, Target } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { until } from '../support/assert.js';
import { type CliProc as Proc, startCli as start } from '../support/cli-procs.js';

// The CLIs' common surface (issue #13, "CLIs"): one exit-status table, --version, the logging
// flags, no silent waits, and output fit for pipes. Peers are an in-process router and
// rpc-server subprocesses on loopback; "nothing listening" is a closed port.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BINS = ['rpc-client', 'rpc-server', 'notify-send', 'notify-listen', 'hermod-router', 'hermod-gateway'];
const NOWHERE = 'amqp://127.0.0.1:1/';
const VERSION = (JSON.parse(readFileSync(path.join(root, '..', 'package.json'), 'utf8')) as { version: string }).version;

async function run(name: string, args: string[], env: Record<string, string> = {}) {
  // Bounded: none of these commands may run for long (30 s allows for a loaded CI machine).
  const p = start(name, args, { env, killAfterMs: 30_000 });
  const code = await p.exited;
  // Output goes to pipes here: never a terminal escape or a carriage return.
  for (const s of [p.out, p.err]) {
    assert.not.ok(s.includes('\u001b'), `no ANSI escape from ${name} ${args.join(' ')}: ${JSON.stringify(s)}`);
    assert.not.ok(s.includes('\r'), `no \\r from ${name} ${args.join(' ')}`);
  }
  return { code, out: p.out, err: p.err };
}
async function stop(p: Proc): Promise<number | null> {
  if (p.child.exitCode === null) p.child.kill('SIGTERM');
  return p.exited;
}

interface Ctx {
  router: Router;
  url: string;
  server: Proc;
  dir: string;
}
const t = suite<Ctx>('CLIs: exit statuses, --version, logging flags, no silent waits', {} as Ctx);

t.before(async (ctx) => {
  ctx.router = new Router({ port: 0, log: () => {} });
  ctx.url = `amqp://127.0.0.1:${await ctx.router.start()}/`;
  ctx.dir = mkdtempSync(path.join(tmpdir(), 'hermod-cli-exit-'));
  ctx.server = start('rpc-server', ['x1', '--topic', 'ex', '--transport-url', ctx.url]);
  // Set-up, not a bound under test: a loaded CI machine can take seconds to start a CLI.
  await until(() => ctx.server.out.includes('serving topic ex'), 'the server', 30_000);
});
t.after(async (ctx) => {
  if (ctx.server) await stop(ctx.server);
  await ctx.router?.stop();
  rmSync(ctx.dir, { recursive: true, force: true });
});

t("--version prints hermod's version and --help ends with the one exit-status table, on every CLI", async () => {
  for (const name of BINS) {
    const v = await run(name, ['--version']);
    assert.is(v.code, 0, `${name}: ${v.err}`);
    assert.is(v.out.trim(), VERSION, name);
    const h = await run(name, ['--help']);
    assert.is(h.code, 0, name);
    assert.match(h.out, /Exit status \(all hermod CLIs\):\n {2}0 {2}ok\n[\s\S]*\n {2}7 {2}stopped at the shutdown deadline/, name);
    for (const flag of ['--log-level', '--quiet', '--log-json', '--config key=value', '--help-config'])
      assert.ok(h.out.includes(flag), `${name} --help names ${flag}`);
  }
  // commander wraps the help at 80 columns into a pipe.
  const server = (await run('rpc-server', ['--help'])).out.replace(/\s+/g, ' ');
  assert.match(server, /--concurrency <n> requests run at once \(default rpc\.serverConcurrency, 64\)/);
  assert.match(server, /--target-version <version>/);
  const client = (await run('rpc-client', ['--help'])).out.replace(/\s+/g, ' ');
  assert.match(
    client,
    /--timeout <seconds> call timeout in seconds, a job the call becomes included \(default rpc\.responseTimeout, 60 s\)/,
  );
  // `help` and `help job` as git takes them (they tried to connect and call a topic named help).
  const help = await run('rpc-client', ['help']);
  assert.is(help.code, 0, help.err);
  assert.match(help.out, /^Usage: rpc-client \[options\] <topic> <method>/);
  const helpJob = await run('rpc-client', ['help', 'job']);
  assert.is(helpJob.code, 0, helpJob.err);
  assert.match(helpJob.out, /^Usage: rpc-client job \[options\] <token>/);
});

t('exit 2: every usage and configuration mistake of the issue', async (ctx) => {
  const brokenJs = path.join(ctx.dir, 'broken.js');
  writeFileSync(brokenJs, 'export default {\n  async a() { return 1 + ; }\n};\n');
  const broken = path.join(ctx.dir, 'broken.mjs');
  writeFileSync(broken, 'export default {\n  async hi() { return 1; }\n  oops oops\n};\n');
  const needs = path.join(ctx.dir, 'needs.mjs');
  writeFileSync(needs, "import 'hermod-no-such-package';\nexport default {};\n");
  const badTs = path.join(ctx.dir, 'bad.ts');
  writeFileSync(badTs, 'export default {\n  async a(): Promise<number> { return 1 + ); },\n};\n');
  const emptyCjs = path.join(ctx.dir, 'empty.cjs');
  writeFileSync(emptyCjs, 'module.exports = {};\n');
  // The second endpoint's target as a Python endpoint's reads, a plain object: the server's own
  // check said `endpoint #2: its target must be a Target`, naming no file.
  const plainTarget = path.join(ctx.dir, 'plain-target.mjs');
  writeFileSync(
    plainTarget,
    "export default [{ async a() { return 1; } }, { target: { namespace: 'things', version: '1.2' }, async b() { return 2; } }];\n",
  );
  const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
    ['rpc-client', ['demo', 'add', '2', '3', '--transport-url', NOWHERE], {}, /argument '2' is not key=value/],
    ['rpc-client', ['demo', 'add', '--timeout', '0', '--transport-url', NOWHERE], {}, /'--timeout <seconds>' argument '0' is invalid/],
    ['rpc-client', ['demo', 'add', '--timeout', '-1', '--transport-url', NOWHERE], {}, /argument '-1' is invalid/],
    ['rpc-client', ['demo', 'add', '--timeout', 'abc', '--transport-url', NOWHERE], {}, /argument 'abc' is invalid/],
    ['rpc-client', ['demo', 'add', '--repeat', '0', '--transport-url', NOWHERE], {}, /'--repeat <n>' argument '0' is invalid/],
    ['rpc-client', ['demo', 'add', '--target-version', '1', '--transport-url', NOWHERE], {}, /target version must look like 'X\.Y'/],
    [
      'rpc-client',
      ['demo', 'add', '--transport-url', NOWHERE],
      { HERMOD_RPC_RESPONSE_TIMEOUT: 'zz' },
      /environment HERMOD_RPC_RESPONSE_TIMEOUT/,
    ],
    ['rpc-client', ['demo', 'add', '--log-level', 'loud'], {}, /'--log-level <level>' argument 'loud' is invalid/],
    ['rpc-server', ['s', '-t', 'x', '--concurrency', '-1', '--transport-url', NOWHERE], {}, /argument '-1' is invalid/],
    ['rpc-server', ['s', '-t', 'x', '--concurrency', '0', '--transport-url', NOWHERE], {}, /argument '0' is invalid/],
    ['rpc-server', ['s', '-t', 'x', '--concurrency', 'abc', '--transport-url', NOWHERE], {}, /argument 'abc' is invalid/],
    ['rpc-server', ['s', '-t', 'x', '--target-version', '1', '--transport-url', NOWHERE], {}, /target version must look like/],
    [
      'rpc-server',
      ['s', '-t', 'x', '--endpoints', broken, '--transport-url', NOWHERE],
      {},
      /broken\.mjs:3: SyntaxError: Unexpected identifier 'oops'/,
    ],
    // An ES module in a .js file outside a "type": "module" package: Node 20's --check passed it
    // (no line was given), so the check reads it as a module too.
    [
      'rpc-server',
      ['s', '-t', 'x', '--endpoints', brokenJs, '--transport-url', NOWHERE],
      {},
      /broken\.js:2: SyntaxError: Unexpected token ';'/,
    ],
    [
      'rpc-server',
      ['s', '-t', 'x', '--endpoints', path.join(ctx.dir, 'none.mjs'), '--transport-url', NOWHERE],
      {},
      /--endpoints \S*none\.mjs: \S*none\.mjs does not exist\n/,
    ],
    // A module the user's module imports is named by Node's own text, importer included.
    [
      'rpc-server',
      ['s', '-t', 'x', '--endpoints', needs, '--transport-url', NOWHERE],
      {},
      /needs\.mjs: Cannot find package 'hermod-no-such-package' imported from \S*needs\.mjs/,
    ],
    // esbuild's error on one line with its place, as hermod run says it (it printed a literal \n
    // after "Transform failed with 1 error:").
    [
      'rpc-server',
      ['s', '-t', 'x', '--endpoints', badTs, '--transport-url', NOWHERE],
      {},
      /--endpoints \S*bad\.ts: \S*bad\.ts:2:\d+: TransformError: Unexpected "\)"\n/,
    ],
    // A directory (Node's text named hermod's loader as the importer) and a path without its
    // extension (as require would take it): said in the user's terms, with the likely file.
    [
      'rpc-server',
      ['s', '-t', 'x', '--endpoints', ctx.dir, '--transport-url', NOWHERE],
      {},
      /--endpoints \S+: \S+ is a directory: name the module file\n/,
    ],
    [
      'rpc-server',
      ['s', '-t', 'x', '--endpoints', path.join(ctx.dir, 'empty'), '--transport-url', NOWHERE],
      {},
      /--endpoints \S*empty: \S*empty does not exist; did you mean \S*empty\.cjs\?\n/,
    ],
    // CommonJS module.exports that serves nothing: refused (it was served with no methods).
    [
      'rpc-server',
      ['s', '-t', 'x', '--endpoints', emptyCjs, '--transport-url', NOWHERE],
      {},
      /--endpoints \S*empty\.cjs: its endpoint has no methods to serve/,
    ],
    [
      'rpc-server',
      ['s', '-t', 'x', '--endpoints', plainTarget, '--transport-url', NOWHERE],
      {},
      /--endpoints \S*plain-target\.mjs: its endpoint #2 has a target that is a plain object, not a Target: make it new Target\(\{ namespace: "things", version: "1\.2" \}\) with Target imported from hermod\n/,
    ],
    ['notify-listen', ['--pool', 'p', '--transport-url', ctx.url], {}, /listener pools are not supported on AMQP 1\.0 \(pool 'p'\)/],
    ['notify-send', ['x', '--timeout', '0', '--transport-url', NOWHERE], {}, /'--timeout <seconds>' argument '0' is invalid/],
    ['hermod-router', ['--port', '0', '--config', 'rpc.retry=1'], {}, /takes only log\.\* keys with --config \(got 'rpc\.retry'\)/],
  ];
  for (const [name, args, env, message] of cases) {
    const r = await run(name, args, env);
    assert.is(r.code, 2, `${name} ${args.join(' ')}: exit ${r.code}\n${r.err}`);
    assert.match(r.err, message, `${name} ${args.join(' ')}`);
  }
});

t('exit 0, 1, 3, 4, 5 and 6 of rpc-client; a "no such method" said once; --json errors are JSON', async (ctx) => {
  const url = ['--transport-url', ctx.url];
  const ok = await run('rpc-client', ['ex', 'add', 'a=2', 'b=3', ...url]);
  assert.is(ok.code, 0, ok.err);
  assert.is(ok.out, '5\n');
  assert.is(ok.err, '', 'a call that works says nothing on stderr');
  const remote = await run('rpc-client', ['ex', 'fail', 'message=boom', ...url]);
  assert.is(remote.code, 1);
  assert.match(remote.err, /remote error: DemoError: boom/);
  const timeout = await run('rpc-client', ['nobody', 'add', '--timeout', '0.3', ...url]);
  assert.is(timeout.code, 3);
  // A deadline spent while the first connect is still under way is a timeout, not "cannot connect"
  // (exit 5): the router is up.
  const early = await run('rpc-client', ['ex', 'add', '--timeout', '0.0001', ...url]);
  assert.is(early.code, 3, early.err);
  assert.match(
    early.err,
    /^error: timeout: not connected to amqp:\/\/127\.0\.0\.1:\d+ yet: the attempt under way had not failed when add timed out/,
  );
  const nsm = await run('rpc-client', ['ex', 'nosuch', ...url]);
  assert.is(nsm.code, 4);
  assert.is(nsm.err, 'error: no such method: nosuch\n');
  const cannot = await run('rpc-client', ['ex', 'add', '--transport-url', NOWHERE, '--config', 'amqp1.retryInterval=20']);
  assert.is(cannot.code, 5);
  assert.match(
    cannot.err,
    /reconnecting to 127\.0\.0\.1:1 \(connect ECONNREFUSED 127\.0\.0\.1:1\): attempt 1 failed, next try (in \d+ ms|in \d+\.\d s|at once)/,
    'each attempt logged',
  );
  assert.match(cannot.err, /error: cannot connect to amqp:\/\/127\.0\.0\.1:1/);
  const big = await run('rpc-client', ['ex', 'echo', `value=${'v'.repeat(5000)}`, '--config', 'maxMessageSize=1000', ...url]);
  assert.is(big.code, 6, big.err);
  assert.match(big.err, /MessageTooLarge/);
  const json = await run('rpc-client', ['ex', 'nosuch', '--json', ...url]);
  assert.is(json.code, 4);
  assert.equal(JSON.parse(json.err), { error: { status: 4, code: 'HERMOD_ERR_NO_SUCH_METHOD', message: 'no such method: nosuch' } });
  // Usage and configuration mistakes are JSON too with --json (they were plain text).
  for (const [args, code, message] of [
    [['ex', 'add', 'x'], 'HERMOD_ERR_USAGE', /argument 'x' is not key=value/],
    [['ex', 'add', '--config', 'rpc.retry=x'], 'HERMOD_ERR_CONFIG', /invalid value for rpc\.retry/],
    [['ex', 'add', '--start', '--cast'], 'HERMOD_ERR_USAGE', /--start makes a call/],
    [['ex'], 'HERMOD_ERR_USAGE', /missing required argument 'method'/],
  ] as const) {
    const r = await run('rpc-client', [...args, '--json', ...url]);
    assert.is(r.code, 2, r.err);
    const e = (JSON.parse(r.err) as { error: { status: number; code: string; message: string } }).error;
    assert.is(e.status, 2);
    assert.is(e.code, code);
    assert.match(e.message, message);
  }
});

t('a reader that goes away (| head): rpc-client and notify-listen end quietly with 0; the unread notification goes back', async (ctx) => {
  const url = ['--transport-url', ctx.url];
  // Before: an unhandled 'error' event (EPIPE), a stack trace and exit 1.
  const client = start('rpc-client', ['ex', 'add', 'a=2', 'b=3', ...url], { killAfterMs: 30_000 });
  client.child.stdout!.destroy();
  assert.is(await client.exited, 0, client.err);
  assert.is(client.err, '');
  const listener = start('notify-listen', ['--topic', 'gone', ...url], { killAfterMs: 30_000 });
  const transport = await getTransport(ctx.url, { config: defaultConfig() });
  try {
    await until(() => listener.err.includes('listening on'), 'the listener', 30_000);
    const notifier = new Notifier(transport, { publisherId: 'p', topics: ['gone'] });
    await notifier.info({}, 'x.read', { i: 1 });
    await until(() => listener.out.includes('x.read'), 'the first line');
    listener.child.stdout!.destroy();
    // Not awaited: the listener gives it back, and the router offers it again until a taker comes.
    const second = notifier.info({}, 'x.unread', { i: 2 });
    assert.is(await listener.exited, 0, listener.err);
    assert.match(listener.err, /stdout closed/);
    assert.not.match(listener.err, /EPIPE|Unhandled/);
    const got: string[] = [];
    const next = new NotificationListener(
      transport,
      [new Target({ topic: 'gone' })],
      [
        {
          info: (_c: unknown, _p: string, eventType: string) => {
            got.push(eventType);
          },
        },
      ],
    );
    await next.start();
    await second;
    await until(() => got.length > 0, 'the unread notification');
    assert.equal(got, ['x.unread']);
    await next.stop();
    await next.wait(1000);
  } finally {
    await transport.close();
  }
});

t('--timeout bounds the whole rpc-client command, its contract lookup included, against a peer that never answers', async () => {
  // A peer that takes the connection and says nothing: the first connect hangs until its timeout.
  const silent = net.createServer((s) => s.on('error', () => {}));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  const port = (silent.address() as net.AddressInfo).port;
  try {
    // a=1 is JSON-typed: the contract is looked up first. Before, the lookup waited the whole
    // --timeout for the connect, and the call then got a whole --timeout of its own. Measured
    // against the same command without the lookup, run alongside: on a loaded machine starting
    // a CLI alone took seconds (10 s in all against 3 s of --timeout, in a CI run at load 15).
    const args = ['demo', 'add', 'a=1', 'b=2', '--timeout', '4', '--transport-url', `amqp://127.0.0.1:${port}/`];
    const timed = async (extra: string[]) => {
      const t0 = Date.now();
      const r = await run('rpc-client', [...args, ...extra]);
      return { ...r, ms: Date.now() - t0 };
    };
    const [r, plain] = await Promise.all([timed([]), timed(['--no-contract'])]);
    assert.is(r.code, 3, r.err);
    assert.match(r.err, /timed out after 4 s \(--timeout, the contract lookup included\)/);
    assert.is(plain.code, 3, plain.err);
    assert.ok(r.ms - plain.ms < 2500, `took ${r.ms} ms, against ${plain.ms} ms without the contract lookup`);
  } finally {
    silent.close();
  }
});

t('rpc-client --timeout with a contract lookup: a late reply is reported as the --timeout the user gave', async (ctx) => {
  // seconds=5 is JSON-typed: the contract lookup spends from the budget, and the reply times out.
  const late = await run('rpc-client', ['ex', 'sleep', 'seconds=5', '--timeout', '2', '--transport-url', ctx.url]);
  assert.is(late.code, 3, late.err);
  assert.match(late.err, /\(sleep on topic ex\) after 2 s \(--timeout, the contract lookup included\)/);
});

t('rpc-client with a refused login: the error names the method called, not the contract lookup', async (ctx) => {
  // The router offers ANONYMOUS only: the lookup is refused first, and the error is the call's.
  const refused = await run('rpc-client', ['ex', 'add', 'a=1', 'b=2', '--transport-url', ctx.url.replace('amqp://', 'amqp://alice:x@')]);
  assert.is(refused.code, 5, refused.err);
  assert.match(refused.err, /not retrying for add\)/);
  assert.not.match(refused.err, /describe/);
});

t('exit 5: rpc-server, notify-listen and notify-send that cannot connect log each attempt, then give up', async () => {
  // 3 s: at load 10 a 1 s budget ran out before the first attempt had failed (no line to match).
  const fast = ['--transport-url', NOWHERE, '--config', 'amqp1.retryInterval=50', '--config', 'rpc.responseTimeout=3s'];
  for (const [name, args] of [
    ['rpc-server', ['s', '-t', 'x', ...fast]],
    ['notify-listen', fast],
    ['notify-send', ['compute.x', ...fast]],
  ] as const) {
    const r = await run(name, [...args]);
    assert.is(r.code, 5, `${name}: ${r.err}`);
    assert.match(
      r.out + r.err,
      /INFO {2}\S+( \S+)?: reconnecting to 127\.0\.0\.1:1 \(connect ECONNREFUSED 127\.0\.0\.1:1\): attempt 1 failed, next try (in \d+ ms|in \d+\.\d s|at once)/,
      name,
    );
    assert.match(r.err, /error: cannot connect to amqp:\/\/127\.0\.0\.1:1/, name);
  }
  // On RabbitMQ too the bound at start is rpc.responseTimeout (it was 3 × rabbit.connectTimeout: 30 s).
  const rabbit = ['--transport-url', 'rabbit://127.0.0.1:1/', '--config', 'rabbit.retryInterval=50', '--config', 'rpc.responseTimeout=1s'];
  for (const [name, args] of [
    ['rpc-server', ['s', '-t', 'x', ...rabbit]],
    ['notify-listen', rabbit],
  ] as const) {
    const t0 = Date.now();
    const r = await run(name, [...args]);
    assert.is(r.code, 5, `${name}: ${r.err}`);
    assert.match(r.err, /error: cannot connect to rabbit:\/\/127\.0\.0\.1:1: .*timed out after (1 s|\d+ ms)\)/, name);
    assert.ok(Date.now() - t0 < 20_000, `${name} gave up after ${Date.now() - t0} ms`);
  }
});

t('exit 3: notify-send --timeout when no listener takes it; exit 7: a server stopped with work aborted', async (ctx) => {
  const t0 = Date.now();
  // 2 s: the first connect comes out of the same deadline, and at load it took over 0.5 s
  // (then the text says "not connected yet", another timeout).
  const n = await run('notify-send', ['compute.x', '--topic', 'nobody-listens', '--timeout', '2', '--transport-url', ctx.url]);
  assert.is(n.code, 3, n.err);
  assert.match(n.err, /timeout: not taken within 2 s \(nobody listening on nobody-listens\.info\?\)/);
  assert.ok(Date.now() - t0 < 15_000, `${Date.now() - t0} ms, not the old silent minute`);
  // The library's own deadline first (rpc.responseTimeout shorter than --timeout): 3 too, not 1.
  const own = await run('notify-send', ['compute.x', '--topic', 'nobody-listens', '--transport-url', ctx.url], {
    HERMOD_RPC_RESPONSE_TIMEOUT: '0.5s',
  });
  assert.is(own.code, 3, own.err);
  assert.match(own.err, /nobody serves it: notification: the router released it/);
  // A cast (and a fanout cast) nobody receives: 3, "nobody serves it", as a call (it was 6).
  for (const extra of [[], ['--fanout']]) {
    // The router releases it at once; the deadline only has to outlast a slow first connect.
    const cast = await run('rpc-client', ['nobody-casts', 'x', '--cast', ...extra, '--timeout', '3', '--transport-url', ctx.url]);
    assert.is(cast.code, 3, cast.err);
    assert.match(cast.err, /nobody serves it/);
  }
  const s = start('rpc-server', ['x7', '--topic', 'ex7', '--shutdown-timeout', '0.3', '--transport-url', ctx.url]);
  await until(() => s.out.includes('serving topic ex7'), 'the second server', 10_000);
  const forwarded = ctx.router.stats().forwarded;
  const call = run('rpc-client', ['ex7', 'sleep', 'seconds=5', '--transport-url', ctx.url]);
  // The request reached the server: it is in flight when the signal comes.
  await until(() => ctx.router.stats().forwarded > forwarded, 'the call to reach the server', 15_000);
  await new Promise((r) => setTimeout(r, 200));
  s.child.kill('SIGTERM');
  assert.is(await s.exited, 7, s.out + s.err);
  assert.is((await call).code, 1, 'the caller got ServerStopped');
});

t('--repeat: stops at the first timeout unless --keep-going, counts attempts, no made-up latency', async (ctx) => {
  const t0 = Date.now();
  const r = await run('rpc-client', ['nobody', 'add', '--repeat', '1000', '--timeout', '0.2', '--transport-url', ctx.url]);
  assert.is(r.code, 3);
  assert.ok(Date.now() - t0 < 15_000, 'stopped at the first timeout, not after 1000 of them');
  assert.match(r.out, /^1 of 1000 calls attempted, 0 ok, 1 failed in [\d.]+ s\n$/, 'no rate, no p50 of nothing');
  assert.match(r.err, /stopping at the first timeout \(call 1 of 1000\); --keep-going goes on/);
  const k = await run('rpc-client', [
    'nobody',
    'add',
    '--repeat',
    '3',
    '--keep-going',
    '--timeout',
    '0.2',
    '--json',
    '--transport-url',
    ctx.url,
  ]);
  assert.is(k.code, 3, k.out + k.err);
  const s = JSON.parse(k.out);
  assert.equal([s.count, s.requested, s.ok, s.failed, s.rate, s.p50ms, s.p99ms], [3, 3, 0, 3, null, null, null]);
  assert.is(k.err.trim().split('\n').length, 1, 'the first error only');
  assert.is(JSON.parse(k.err).error.status, 3);
});

t('Ctrl-C during --repeat prints the partial summary and exits 130', async (ctx) => {
  const before = ctx.router.stats().forwarded;
  const p = start('rpc-client', ['ex', 'add', 'a=1', 'b=1', '--repeat', '1000000', '--transport-url', ctx.url]);
  await until(() => ctx.router.stats().forwarded > before + 20, 'some calls to go through', 15_000);
  p.child.kill('SIGINT');
  assert.is(await p.exited, 130, p.err);
  const m =
    /^(\d+) of 1000000 calls attempted \(interrupted\), (\d+) ok, 0 failed in [\d.]+ s: [\d.]+\/s, p50 [\d.]+ ms, p99 [\d.]+ ms\n$/.exec(
      p.out,
    );
  assert.ok(m, p.out);
  assert.ok(Number(m![1]) > 0 && m![1] === m![2], p.out);
  assert.not.ok(p.err.includes('\r'), 'no progress counter into a pipe');
});

t('logging: methods served, failed requests at info, every request at debug, --quiet, --log-json; pino lines', async (ctx) => {
  const d = start('rpc-server', ['x2', '--topic', 'ex2', '--log-level', 'debug', '--transport-url', ctx.url]);
  const j = start('rpc-server', ['x3', '--topic', 'ex3', '--log-json', '--transport-url', ctx.url]);
  const q = start('rpc-server', ['x4', '--topic', 'ex4', '--quiet', '--transport-url', ctx.url]);
  try {
    await until(() => d.out.includes('serving topic ex2') && j.out.includes('serving topic ex3'), 'the servers', 10_000);
    assert.match(
      d.out,
      /serving topic ex2 as x2 on amqp:\/\/127\.0\.0\.1:\d+\/ \(exchange openstack\): v1\.0: echo, add, sleep, fail, info, resize\n/,
    );
    for (const topic of ['ex2', 'ex3', 'ex4', 'ex']) {
      assert.is((await run('rpc-client', [topic, 'add', 'a=1', 'b=2', '--transport-url', ctx.url])).code, 0);
      assert.is((await run('rpc-client', [topic, 'fail', '--transport-url', ctx.url])).code, 1);
    }
    await until(() => /DEBUG rpc-server x2: call add ok/.test(d.out), 'a debug line per request');
    await until(() => j.out.includes('"outcome":"error"'), 'the failed request in JSON');
    await until(() => /INFO {2}rpc-server x1: call fail error .*DemoError: failed on purpose/.test(ctx.server.out), 'a failure at info');
    assert.not.match(ctx.server.out, /call add ok/, 'no line per successful request at info');
    const lines = j.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(
      lines.every((l) => typeof l.time === 'string' && l.name === 'rpc-server x3' && typeof l.msg === 'string' && l.pid === j.child.pid),
    );
    assert.equal(
      lines.map((l) => l.level),
      ['info', 'info'],
      'serving, and the failure',
    );
    assert.ok(!lines.some((l) => l.method === 'add'), 'ok requests are debug');
    assert.is(q.out, '', '--quiet: no info lines');
  } finally {
    for (const p of [d, j, q]) assert.is(await stop(p), 0);
  }
});

t('--quiet and --log-level warn keep the address each CLI listens on (port 0 is otherwise unknowable); silent drops it', async (ctx) => {
  const url = ['--transport-url', ctx.url];
  for (const [name, args, line] of [
    ['hermod-gateway', ['--port', '0', '--quiet', ...url], /INFO {2}hermod-gateway: listening on http:\/\/127\.0\.0\.1:\d+ /],
    [
      'rpc-server',
      ['q1', '--topic', 'quiet', '--metrics-port', '0', '--log-level', 'warn', ...url],
      /INFO {2}rpc-server q1: metrics at http:\/\/127\.0\.0\.1:\d+\/metrics/,
    ],
    ['hermod-router', ['--port', '0', '--log-level', 'warn'], /INFO {2}hermod-router: router listening on amqp:\/\/127\.0\.0\.1:\d+\//],
  ] as const) {
    const p = start(name, [...args], { killAfterMs: 30_000 });
    try {
      await until(() => line.test(p.out), `${name}'s address`, 30_000);
    } finally {
      // Not its exit status: rpc-server may take the SIGTERM before it installed its handler.
      await stop(p);
    }
    assert.is(p.out.trim().split('\n').length, 1, `${name} logs nothing else at warn: ${p.out}`);
  }
  const silent = start('rpc-server', ['q2', '--topic', 'quiet', '--metrics-port', '0', '--log-level', 'silent', ...url], {
    killAfterMs: 30_000,
  });
  await new Promise((r) => setTimeout(r, 1500));
  await stop(silent);
  assert.is(silent.out, '', silent.out);
});

t('hermod-router: --quiet keeps the listening line; --log-json; log.* from --config', async () => {
  const q = start('hermod-router', ['--port', '0', '--quiet', '--log-json', '--config', 'log.level=debug']);
  try {
    await until(() => q.out.includes('listening on'), 'the listening line', 10_000);
    const line = JSON.parse(q.out.trim().split('\n')[0]!) as Record<string, unknown>;
    assert.is(line.level, 'info');
    assert.is(line.name, 'hermod-router');
    assert.match(String(line.msg), /^router listening on amqp:\/\/127\.0\.0\.1:\d+\//);
  } finally {
    assert.is(await stop(q), 0);
  }
  // Every line is JSON; --quiet (warn) outranks log.level=debug from --config: no "SIGTERM: …" info line.
  const lines = q.out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { msg: string });
  assert.is(lines.length, 1, q.out);
});

t.run();
