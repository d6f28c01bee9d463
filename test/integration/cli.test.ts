import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RabbitNode } from '../../scripts/rabbit-node.js';
import { sleep, until } from '../support/assert.js';
import { bin, type CliProc as Proc, runCli as run, startCli as start } from '../support/cli-procs.js';

/** Runs `file` with `args` (HERMOD_* variables of the test's environment left out, as the CLIs get them). */
function runScript(file: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HERMOD_')));
  return new Promise((resolve) => {
    execFile(file, args, { env, timeout: 30_000 }, (err, out, errOut) =>
      resolve({ code: typeof err?.code === 'number' ? err.code : err ? -1 : 0, out, err: errOut }),
    );
  });
}

interface Ctx {
  router: Proc;
  server: Proc;
  url: string;
}
const t = suite<Ctx>('CLIs as subprocesses', { router: undefined as never, server: undefined as never, url: '' });

t.before(async (ctx) => {
  ctx.router = start('hermod-router', ['--port', '0']);
  await until(() => /listening on (amqp:\/\/\S+)/.test(ctx.router.out), 'the router to listen', 10_000);
  ctx.url = /listening on (amqp:\/\/\S+)/.exec(ctx.router.out)![1]!;
  ctx.server = start('rpc-server', ['s1', '--topic', 'cli', '--transport-url', ctx.url, '--log-level', 'debug']);
  await until(() => ctx.server.out.includes('serving topic cli'), 'the server to serve', 10_000);
});
t.after(async (ctx) => {
  for (const p of [ctx.server, ctx.router]) {
    if (p.child.exitCode === null) {
      p.child.kill('SIGTERM');
      await p.exited;
    }
  }
});

t('call prints the result; JSON values parse, others stay strings', async (ctx) => {
  const r = await run('rpc-client', ['cli', 'add', 'a=2', 'b=40', '--transport-url', ctx.url]);
  assert.is(r.code, 0, r.err);
  assert.is(r.out.trim(), '42');
  const e = await run('rpc-client', ['cli', 'echo', 'value=hello', '--json', '--transport-url', ctx.url]);
  assert.is(e.out.trim(), '"hello"');
  await until(() => /call add ok/.test(ctx.server.out), 'a log line per request at debug');
});

t("a server's text reaches the terminal without control sequences; lines and tabs stay", async (ctx) => {
  // An OSC sequence that retitles the terminal, a C1 CSI and a bidi override, in a string result.
  const text = 'a\u001b]0;pwned\u0007b\u009b31mc\u202ed\ne\tf\r\ng\rh';
  const plain = await run('rpc-client', ['cli', 'echo', `value=${text}`, '--transport-url', ctx.url]);
  assert.is(plain.code, 0, plain.err);
  // A CRLF line end stays; a carriage return alone would overwrite the line.
  assert.is(plain.out, 'a\\u001b]0;pwned\\u0007b\\u009b31mc\\u202ed\ne\tf\r\ng\\rh\n');
  const json = await run('rpc-client', ['cli', 'echo', `value=${text}`, '--json', '--transport-url', ctx.url]);
  assert.is(json.out, '"a\\u001b]0;pwned\\u0007b\\u009b31mc\\u202ed\\ne\\tf\\r\\ng\\rh"\n');
  assert.is(JSON.parse(json.out), text, 'the JSON output still means the same string');
  const nested = await run('rpc-client', ['cli', 'echo', `value={"k":"x\u009by"}`, '--transport-url', ctx.url]);
  assert.is(nested.out, '{\n  "k": "x\\u009by"\n}\n');
});

t('a number JSON would not carry as written, or a key given twice, is a usage error (2), not sent changed', async (ctx) => {
  const url = ['--transport-url', ctx.url];
  // 1e400 went out as null and 12345678901234567890 as 12345678901234567000, exit 0; a=1 a=2 sent 2.
  for (const [args, message] of [
    [
      ['value=1e400'],
      /error: value=1e400: the number 1e400 is beyond what JSON can carry: it would be sent as null; quote it to send it as a string: value='"1e400"'/,
    ],
    [
      ['value=12345678901234567890'],
      /error: value=12345678901234567890: the integer 12345678901234567890 is beyond 2\^53: it would be sent as 12345678901234567000; quote it/,
    ],
    [
      ['value={"ids":[1,-9007199254740993]}'],
      /the integer -9007199254740993 is beyond 2\^53: .*quote it to send it as a string inside the JSON/,
    ],
    [['a=1', 'a=2'], /error: a is given twice: only one value would be sent/],
    // Inside a JSON value too: JSON.parse kept the last, {"z":2} was sent.
    [['value={"x":1,"y":{"z":1, "z" :2}}'], /error: value=.*: the key "z" is given twice in one object: only the last value would be sent/],
  ] as Array<[string[], RegExp]>) {
    const r = await run('rpc-client', ['cli', 'echo', ...args, ...url]);
    assert.is(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, message);
    assert.is(r.out, '');
  }
  const ctxTwice = await run('rpc-client', ['cli', 'echo', '--context', 'u=1', '--context', 'u=2', ...url]);
  assert.is(ctxTwice.code, 2, ctxTwice.err);
  assert.match(ctxTwice.err, /u is given twice/);
  // --context takes one entry each time: the arguments after it are the call's, not the context's.
  const ctxThenArgs = await run('rpc-client', ['cli', 'info', '--context', 'user=u1', '--context', 'project=p1', '--json', ...url]);
  assert.is(ctxThenArgs.code, 0, ctxThenArgs.err);
  const info = JSON.parse(ctxThenArgs.out) as { context: Record<string, unknown> };
  assert.is(info.context.user, 'u1');
  assert.is(info.context.project, 'p1');
  const argAfter = await run('rpc-client', ['cli', 'echo', '--context', 'user=u1', 'value=7', '--json', ...url]);
  assert.is(argAfter.code, 0, argAfter.err);
  assert.is(argAfter.out.trim(), '7');
  const notify = await run('notify-send', ['ev', 'n=1e400', ...url]);
  assert.is(notify.code, 2, notify.err);
  assert.match(notify.err, /n=1e400: the number 1e400 is beyond what JSON can carry/);
  // Quoted, it is a string; 2^53 itself and numbers inside strings arrive as written.
  const quoted = await run('rpc-client', ['cli', 'echo', 'value="12345678901234567890"', '--json', ...url]);
  assert.is(quoted.code, 0, quoted.err);
  assert.is(quoted.out.trim(), '"12345678901234567890"');
  const exact = await run('rpc-client', ['cli', 'echo', 'a=9007199254740992', 'b=["1e400"]', 'c=1.5e3', '--json', ...url]);
  assert.is(exact.code, 0, exact.err);
  assert.equal(JSON.parse(exact.out), { a: 9007199254740992, b: ['1e400'], c: 1500 });
});

t('exit statuses: remote error 1, no such method 4, timeout 3, cannot connect 5, usage 2', async (ctx) => {
  const f = await run('rpc-client', ['cli', 'fail', 'message=boom', '--transport-url', ctx.url]);
  assert.is(f.code, 1);
  assert.match(f.err, /remote error: DemoError: boom/);
  const n = await run('rpc-client', ['cli', 'frobnicate', '--transport-url', ctx.url]);
  assert.is(n.code, 4);
  assert.is(n.err.trim(), 'error: no such method: frobnicate');
  const to = await run('rpc-client', ['nobody', 'add', '--timeout', '0.5', '--transport-url', ctx.url]);
  assert.is(to.code, 3);
  assert.match(to.err, /timeout/);
  const cc = await run('rpc-client', [
    'cli',
    'add',
    '--timeout',
    '2',
    '--transport-url',
    'amqp://127.0.0.1:1/',
    '--config',
    'amqp1.retryInterval=50',
  ]);
  assert.is(cc.code, 5);
  assert.match(cc.err, /cannot connect to amqp:\/\/127\.0\.0\.1:1/);
  const bad = await run('rpc-client', ['cli', 'add', '--config', 'rpc.respnseTimeout=5', '--transport-url', ctx.url]);
  assert.is(bad.code, 2);
  assert.match(bad.err, /did you mean 'rpc.responseTimeout'/);
});

t(
  'a broker down: the contract lookup and the call share one rpc.retry (3 attempts, one "no more tries"), on both protocols',
  async (ctx) => {
    // a=1 asks for the contract first. The call after a lookup that had spent attempts on the
    // broker counted its own retries again: attempt 4 (and up to 8 s instead of about 3.5).
    const runs = await Promise.all(
      ['amqp', 'amqp', 'rabbit', 'rabbit'].map((scheme) =>
        run('rpc-client', ['cli', 'add', 'a=1', 'b=2', '--transport-url', `${scheme}://127.0.0.1:1/`]),
      ),
    );
    // The wrong protocol, met first by the lookup, is still said in the call's name.
    const wrong = await run('rpc-client', ['cli', 'add', 'a=1', 'b=2', '--transport-url', ctx.url.replace(/^amqp:/, 'rabbit:')]);
    assert.is(wrong.code, 2, wrong.err);
    assert.match(wrong.err, /\(call add not retried\)/);
    assert.not.match(wrong.err, /describe/);
    for (const r of runs) {
      assert.is(r.code, 5, r.err);
      assert.match(r.err, /gave up after 3 attempts, retry=2/);
      assert.is((r.err.match(/no more tries/g) ?? []).length, 1, r.err);
      assert.not.match(r.err, /attempt 4/);
    }
  },
);

t('--wait-for-server: the call waits for a server that starts later; nobody within the wait is a timeout (3)', async (ctx) => {
  const caller = start('rpc-client', ['later', 'add', 'a=1', 'b=2', '--wait-for-server', '20', '--transport-url', ctx.url]);
  await sleep(800);
  assert.is(caller.child.exitCode, null, 'still waiting');
  const later = start('rpc-server', ['s2', '--topic', 'later', '--transport-url', ctx.url]);
  try {
    assert.is(await caller.exited, 0, caller.err);
    assert.is(caller.out.trim(), '3');
    assert.match(caller.err, /server s2 of later answered after \d+ ms/);
  } finally {
    later.child.kill('SIGTERM');
    await later.exited;
  }
  const none = await run('rpc-client', ['nobody', 'add', '--wait-for-server', '0.5', '--transport-url', ctx.url]);
  assert.is(none.code, 3, none.err);
  assert.match(none.err, /no server of topic nobody answered within 500 ms/);
  // A target the command cannot use is a usage error at once, not after the wait.
  const t0 = Date.now();
  const both = await run('rpc-client', [
    'cli',
    'echo',
    '--fanout',
    '--server',
    's9',
    '--wait-for-server',
    '10',
    '--transport-url',
    ctx.url,
  ]);
  assert.is(both.code, 2, both.err);
  assert.match(both.err, /both fanout and directed to server/);
  assert.ok(Date.now() - t0 < 8000, `usage error after ${Date.now() - t0} ms`);
  // No broker: the wait goes on past rpc.retry's attempts, and the log does not say it stopped.
  const down = await run('rpc-client', [
    'cli',
    'add',
    '--wait-for-server',
    '1.5',
    '--transport-url',
    'amqp://127.0.0.1:1/',
    '--config',
    'amqp1.retryInterval=50',
    '--config',
    'rpc.retry=1',
  ]);
  assert.is(down.code, 3, down.err);
  assert.not.match(down.err, /no more tries/);
});

t('a result larger than a pipe holds reaches a slow reader whole', async (ctx) => {
  // process.exit() right after the write dropped what the pipe had not taken: 64 KiB of 120 kB
  // arrived, exit 0. The reader starts a second late, so the pipe is full when the result is written.
  const script = `"$0" "$1" cli echo "value=$2" --transport-url "$3" | (sleep 1; wc -c); echo "status \${PIPESTATUS[0]}"`;
  const r = await runScript('bash', ['-c', script, process.execPath, bin('rpc-client'), 'x'.repeat(120_000), ctx.url]);
  assert.is(r.code, 0, r.err);
  assert.equal(r.out.trim().split(/\s+/), ['120001', 'status', '0'], r.err);
});

t('server-directed, cast, fanout and --repeat statistics', async (ctx) => {
  const i = await run('rpc-client', ['cli', 'info', '--server', 's1', '--json', '--transport-url', ctx.url]);
  assert.is(JSON.parse(i.out).server, 's1');
  const c = await run('rpc-client', ['cli', 'echo', 'value=1', '--cast', '--transport-url', ctx.url]);
  assert.match(c.out, /cast sent/);
  const f = await run('rpc-client', ['cli', 'echo', 'value=2', '--fanout', '--transport-url', ctx.url]);
  assert.match(f.out, /cast sent \(fanout\)/);
  const r = await run('rpc-client', ['cli', 'add', 'a=1', 'b=1', '--repeat', '50', '--json', '--transport-url', ctx.url]);
  const stats = JSON.parse(r.out);
  assert.is(stats.count, 50);
  assert.is(stats.ok, 50);
  assert.ok(stats.rate > 0 && stats.p50ms > 0 && stats.p99ms >= stats.p50ms);
});

t('SIGTERM: the server finishes its in-flight call, replies, and exits 0', async (ctx) => {
  const server = start('rpc-server', ['s2', '--topic', 'drain', '--transport-url', ctx.url]);
  await until(() => server.out.includes('serving topic drain'), 'the second server', 10_000);
  const before = (ctx.router.out.match(/connection open/g) ?? []).length;
  const call = run('rpc-client', ['drain', 'sleep', 'seconds=2', '--transport-url', ctx.url]);
  // The call goes out right after the client's connection opens; signal only once it is running.
  await until(() => (ctx.router.out.match(/connection open/g) ?? []).length > before, 'the client to connect', 10_000);
  await new Promise((r) => setTimeout(r, 500));
  server.child.kill('SIGTERM');
  const [code, res] = await Promise.all([server.exited, call]);
  assert.is(code, 0);
  assert.is(res.code, 0, res.err);
  assert.match(res.out, /"slept": 2/);
  assert.match(server.out, /SIGTERM: no new work; finishing 1 in-flight/);
});

t('endpoint modules and --help-config', async (ctx) => {
  const h = await run('rpc-server', ['--help-config']);
  assert.is(h.code, 0);
  assert.match(h.out, /rpc.responseTimeout/);
  const { writeFileSync, mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(path.join(tmpdir(), 'hermod-ep-'));
  try {
    // The module's source text holds a template literal of its own.
    writeFileSync(
      path.join(dir, 'ep.mjs'),
      // biome-ignore lint/suspicious/noTemplateCurlyInString: JavaScript source written to a file
      'export default class { constructor(c) { this.c = c; } async hello(_ctx, a) { return `hi ${a.name} from ${this.c.server}`; } }\n',
    );
    const s = start('rpc-server', ['mod1', '--topic', 'mod', '--endpoints', path.join(dir, 'ep.mjs'), '--transport-url', ctx.url]);
    await until(() => s.out.includes('serving topic mod'), 'the module server', 10_000);
    const r = await run('rpc-client', ['mod', 'hello', 'name=ann', '--transport-url', ctx.url]);
    assert.is(r.out.trim(), 'hi ann from mod1');
    s.child.kill('SIGTERM');
    assert.is(await s.exited, 0);
    // TypeScript in a package without "type": "module" (npm init's default): Node reads it as
    // CommonJS, and it failed to load ("Cannot require() ES Module … in a cycle").
    writeFileSync(path.join(dir, 'package.json'), '{ "name": "app" }\n');
    writeFileSync(path.join(dir, 'greet.ts'), "export const greet = (n: string): string => 'hello ' + n;\n");
    writeFileSync(
      path.join(dir, 'ep.ts'),
      "import { greet } from './greet';\nexport default { async hello(_c: unknown, a: { name: string }): Promise<string> { return greet(a.name); } };\n",
    );
    const ts = start('rpc-server', ['mod2', '--topic', 'modts', '--endpoints', path.join(dir, 'ep.ts'), '--transport-url', ctx.url]);
    await until(() => ts.out.includes('serving topic modts') || ts.child.exitCode !== null, 'the TypeScript module server', 10_000);
    const r2 = await run('rpc-client', ['modts', 'hello', 'name=bob', '--transport-url', ctx.url]);
    assert.is(r2.out.trim(), 'hello bob', ts.out + ts.err);
    ts.child.kill('SIGTERM');
    assert.is(await ts.exited, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t('notify-listen prints what notify-send sends, filtered, and exits after --count', async (ctx) => {
  // One value per flag, repeated or comma-separated: before, --topic and --priority were
  // variadic, and `notify-send --topic t ev` took `ev` for a second topic.
  const l = start('notify-listen', [
    '--topic',
    'clinote,clinote2',
    '--priority',
    'warn',
    '--priority',
    'info, error',
    '--json',
    '--count',
    '2',
    '--event-type',
    '^compute\\.',
    '--transport-url',
    ctx.url,
  ]);
  await until(() => l.err.includes('listening on'), 'the listener to listen', 10_000);
  for (const [event, prio, topic] of [
    ['compute.start', 'warn', 'clinote'],
    ['network.up', 'info', 'clinote'],
    ['compute.end', 'info', 'clinote2'],
  ]) {
    const r = await run('notify-send', [
      '--topic',
      topic!,
      event!,
      'id=7',
      'name=vm',
      '--priority',
      prio!,
      '--publisher-id',
      'cli.host',
      '--transport-url',
      ctx.url,
    ]);
    assert.is(r.code, 0, `${r.err}\nlistener out: ${l.out}\nlistener err: ${l.err}`);
    assert.match(r.out, new RegExp(`sent ${prio} ${event}`));
  }
  assert.is(await l.exited, 0, l.err);
  const lines = l.out
    .trim()
    .split('\n')
    .map((x) => JSON.parse(x) as Record<string, unknown>);
  assert.equal(
    lines.map((x) => [x.priority, x.event_type, x.publisher_id]),
    [
      ['warn', 'compute.start', 'cli.host'],
      ['info', 'compute.end', 'cli.host'],
    ],
  );
  assert.equal(lines[0]!.payload, { id: 7, name: 'vm' });
  const bad = await run('notify-send', ['x', '--priority', 'loud', '--transport-url', ctx.url]);
  assert.is(bad.code, 2);
  assert.match(bad.err, /unknown priority 'loud'; use one of audit, debug, info, warn, error, critical, sample/);
  // The option before the event type: the event is read as such, and the bad priority is what is said.
  const afterTopic = await run('notify-send', ['--transport-url', ctx.url, '--topic', 't9', 'ev', '--priority', 'bogus']);
  assert.is(afterTopic.code, 2);
  assert.match(afterTopic.err, /unknown priority 'bogus'/);
  const badListen = await run('notify-listen', ['--priority', 'info,loud', '--transport-url', ctx.url]);
  assert.is(badListen.code, 2);
  assert.match(badListen.err, /unknown priority 'loud'; use one of audit/);
  // The variadic form of before is refused with the way to say it now, not read as something else.
  const twoWords = await run('notify-listen', ['--topic', 'a', 'b', '--transport-url', ctx.url]);
  assert.is(twoWords.code, 2, twoWords.err);
  assert.match(twoWords.err, /unexpected argument 'b'.*--topic a --topic b or --topic a,b/);
  const emptyListen = await run('notify-listen', ['--topic', 'a,', '--transport-url', ctx.url]);
  assert.is(emptyListen.code, 2, emptyListen.err);
  assert.match(emptyListen.err, /--topic: a topic cannot be empty/);
  // Two payloads: key=value arguments were dropped silently for --payload.
  const both = await run('notify-send', ['x', 'a=1', '--payload', '{"b":2}', '--transport-url', ctx.url]);
  assert.is(both.code, 2);
  assert.match(both.err, /key=value arguments \(a=1\) and --payload are two payloads/);
  const noop = await run('notify-send', ['x', 'a=1', '--driver', 'noop', '--transport-url', ctx.url]);
  assert.is(noop.code, 0, noop.err);
  assert.match(noop.out, /^not sent: no driver sends it \(noop\)$/m);
  // A routing config with no rule for the event sends nothing (oslo drops it): not "sent".
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hermod-routing-'));
  try {
    const routing = path.join(dir, 'routing.json');
    writeFileSync(routing, JSON.stringify({ group: { log: { accepted_events: ['compute.*'] } } }));
    const via = ['--driver', 'routing', '--config', `notifications.routingConfig=${routing}`, '--transport-url', ctx.url];
    const unrouted = await run('notify-send', ['image.upload', 'a=1', ...via]);
    assert.is(unrouted.code, 0, unrouted.err);
    assert.match(unrouted.out, /^not sent: no rule of the routing config \(.*routing\.json\) selects a driver for image\.upload at info$/m);
    const routed = await run('notify-send', ['compute.start', 'a=1', ...via]);
    assert.is(routed.code, 0, routed.err);
    assert.match(routed.out, /^sent info compute\.start$/m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const empty = await run('notify-send', ['x', '--topic', '', '--transport-url', ctx.url]);
  assert.is(empty.code, 2, empty.err);
  assert.match(empty.err, /--topic: a topic cannot be empty/);
  const carrier = await run('notify-send', ['x', '--driver', 'pigeon', '--transport-url', ctx.url]);
  assert.is(carrier.code, 2);
  assert.match(carrier.err, /--driver: unknown notification driver 'pigeon'; use one of messagingv2/);
});

t.run();

// The same CLIs on RabbitMQ (`--transport-url rabbit://…`), against the run's RabbitMQ node.
interface RCtx {
  node: RabbitNode;
  vhost: string;
  url: string;
  servers: Proc[];
}
const r = suite<RCtx>('CLIs on RabbitMQ', {} as RCtx);
r.before(async (ctx) => {
  ctx.node = await RabbitNode.shared();
  ctx.vhost = await ctx.node.addVhost(`cli-${process.pid}`);
  ctx.url = ctx.node.url(ctx.vhost);
  ctx.servers = [
    start('rpc-server', ['r1', '--topic', 'rcli', '--transport-url', ctx.url, '--log-level', 'debug']),
    start('rpc-server', ['r2', '--topic', 'rcli', '--transport-url', ctx.url, '--log-level', 'debug']),
  ];
  for (const s of ctx.servers) await until(() => s.out.includes('serving topic rcli'), 'the rabbit server to serve', 20_000);
});
r.after(async (ctx) => {
  for (const p of ctx.servers ?? [])
    if (p.child.exitCode === null) {
      p.child.kill('SIGTERM');
      await p.exited;
    }
  await ctx.node.deleteVhost(ctx.vhost);
  await ctx.node.release();
});

r('call, server-directed call, fanout cast and exit statuses over rabbit://', async (ctx) => {
  const c = await run('rpc-client', ['rcli', 'add', 'a=20', 'b=22', '--transport-url', ctx.url]);
  assert.is(c.code, 0, c.err);
  assert.is(c.out.trim(), '42');
  const info = await run('rpc-client', ['rcli', 'info', '--server', 'r2', '--json', '--transport-url', ctx.url]);
  assert.is(JSON.parse(info.out).server, 'r2');
  const f = await run('rpc-client', ['rcli', 'echo', 'value=all', '--fanout', '--transport-url', ctx.url]);
  assert.is(f.code, 0, f.err);
  await until(() => ctx.servers.every((s) => /cast echo ok/.test(s.out)), 'the fanout cast on both servers');
  const n = await run('rpc-client', ['rcli-nobody', 'add', '--transport-url', ctx.url]);
  assert.is(n.code, 3);
  assert.match(n.err, /nobody serves it/);
  const bad = await run('rpc-client', ['rcli', 'add', '--transport-url', ctx.node.url(ctx.vhost, 'guest', 'nope')]);
  assert.is(bad.code, 5);
  assert.match(bad.err, /ACCESS_REFUSED/);
  // The login is refused for good: the reconnect line says so, not "next try in 30.0 s".
  assert.match(bad.err, /connecting to 127\.0\.0\.1:\d+ \[publisher\] \(.*\): attempt 1 failed, not retrying\n/);
  assert.not.match(bad.err, /reconnecting to|next try/);
  assert.not.match(bad.err, /nope/, 'no password in the message');
  // With --log-json the failure that ends a server is a JSON line of its log too (it was plain text).
  const server = await run('rpc-server', [
    'rcli-bad',
    '--topic',
    'rcli-bad',
    '--log-json',
    '--transport-url',
    ctx.node.url(ctx.vhost, 'guest', 'nope'),
  ]);
  assert.is(server.code, 5, server.err);
  const last = JSON.parse(server.err.trim().split('\n').at(-1)!) as { level: string; name: string; msg: string; status: number };
  assert.is(last.level, 'fatal');
  assert.is(last.name, 'rpc-server rcli-bad');
  assert.match(last.msg, /ACCESS_REFUSED/);
  assert.is(last.status, 5);
});

r(
  'a reader that goes away (| true): rpc-client closes its connection first, nothing is left unacknowledged in its reply queue',
  async (ctx) => {
    // Before: it exited at the failed write, the connection cut without a close, and its reply
    // stayed unacknowledged in a reply_<uuid> queue until the queue expired (30 minutes).
    const before = new Set((await ctx.node.queues(ctx.vhost)).keys());
    for (let i = 0; i < 3; i++) {
      const c = start('rpc-client', ['rcli', 'add', 'a=2', 'b=3', '--transport-url', ctx.url], { killAfterMs: 30_000 });
      c.child.stdout!.destroy();
      assert.is(await c.exited, 0, c.err);
    }
    // The broker lists a queue's messages a moment after its consumer went.
    let left: string[] = [];
    for (const end = Date.now() + 10_000; Date.now() < end; await sleep(200)) {
      left = [...(await ctx.node.queues(ctx.vhost))].filter(([name, q]) => !before.has(name) && q.messages > 0).map(([name]) => name);
      if (left.length === 0) break;
    }
    assert.equal(left, [], 'replies left unacknowledged');
  },
);

r.run();
