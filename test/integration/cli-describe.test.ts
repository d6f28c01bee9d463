import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { until } from '../support/assert.js';
import { type CliProc as Proc, runCli, startCli as start } from '../support/cli-procs.js';
import { slowProxy } from '../support/slow-proxy.js';

// rpc-client reading published contracts end to end: the CLIs as subprocesses (a router, an
// rpc-server with the demo endpoints and one with an endpoints module of its own), the usage
// printed by --describe, and key=value words coerced by the contract.

const run = (args: string[]) => runCli('rpc-client', args);

/** An endpoints module whose contract says `code` is a string and `n` an integer; both methods echo what they got, with its type. */
const MODULE = `
export default class Labels {
  static contracts = {
    label: {
      args: { type: 'object', required: ['code'], properties: { code: { type: 'string', maxLength: 8, description: 'kept as text' }, n: { type: 'integer' } } },
      result: { type: 'object' },
      description: 'Echoes code and n with their types.',
    },
  };
  label(_ctx, args) { return { code: args.code, codeType: typeof args.code, n: args.n ?? null, nType: typeof args.n }; }
  loose(_ctx, args) { return { code: args.code, codeType: typeof args.code }; }
}
`;

interface Ctx {
  router: Proc;
  servers: Proc[];
  url: string;
  dir: string;
}
const t = suite<Ctx>('rpc-client --describe and contract coercion (CLIs as subprocesses)', {} as Ctx);

t.before(async (ctx) => {
  ctx.dir = mkdtempSync(path.join(tmpdir(), 'hermod-describe-'));
  writeFileSync(path.join(ctx.dir, 'labels.mjs'), MODULE);
  ctx.router = start('hermod-router', ['--port', '0']);
  await until(() => /listening on (amqp:\/\/\S+)/.test(ctx.router.out), 'the router to listen', 10_000);
  ctx.url = /listening on (amqp:\/\/\S+)/.exec(ctx.router.out)![1]!;
  ctx.servers = [
    start('rpc-server', ['d1', '--topic', 'demo', '--transport-url', ctx.url]),
    start('rpc-server', ['l1', '--topic', 'labels', '--endpoints', path.join(ctx.dir, 'labels.mjs'), '--transport-url', ctx.url]),
  ];
  await until(() => ctx.servers.every((s) => s.out.includes('serving topic')), 'both servers to serve', 10_000);
});
t.after(async (ctx) => {
  for (const p of [...(ctx.servers ?? []), ctx.router]) {
    if (p && p.child.exitCode === null) {
      p.child.kill('SIGTERM');
      await p.exited;
    }
  }
  rmSync(ctx.dir, { recursive: true, force: true });
});

t('--describe prints the usage of a demo method from its published contract, and calls nothing', async (ctx) => {
  const r = await run(['demo', 'add', '--describe', '--transport-url', ctx.url]);
  assert.is(r.code, 0, r.err);
  assert.is(
    r.out,
    [
      'usage: rpc-client demo add a=<number> b=<number>',
      '  Adds two numbers.',
      '  a            number, required',
      '  b            number, required',
      '  (other names are refused)',
      '  returns number',
      '',
    ].join('\n'),
  );
  const sleep = await run(['demo', 'sleep', '--describe', '--transport-url', ctx.url]);
  assert.match(sleep.out, /^usage: rpc-client demo sleep \[seconds=…\]\n/);
  assert.match(sleep.out, /seconds +number \(≥ 0, ≤ 3600\) +default 1/);
  const info = await run(['demo', 'info', '--json', '--transport-url', ctx.url]);
  assert.is((JSON.parse(info.out) as { calls: number }).calls, 1, '--describe ran nothing: info is the first call');
});

t('--describe of a module endpoint and of a method without a contract', async (ctx) => {
  const r = await run(['labels', 'label', '--describe', '--transport-url', ctx.url]);
  assert.is(r.code, 0, r.err);
  assert.match(r.out, /^usage: rpc-client labels label code=<string> \[n=…\]\n {2}Echoes code and n with their types\.\n/);
  assert.match(r.out, /code +string \(length ≤ 8\), required +kept as text/);
  assert.match(r.out, /n +integer\n/);
  const loose = await run(['labels', 'loose', '--describe', '--transport-url', ctx.url]);
  assert.is(loose.code, 0, loose.err);
  assert.match(loose.out, /labels loose: no contract is published for it/);
  // A method the server does not have: as a call would say (it printed "no contract" and exit 0).
  const nope = await run(['labels', 'nope', '--describe', '--transport-url', ctx.url]);
  assert.is(nope.code, 4, nope.out);
  assert.match(nope.err, /no such method: nope/);
});

t('key=value coercion by the contract: a=1 a number where it says number, text where it says string', async (ctx) => {
  const add = await run(['demo', 'add', 'a=1', 'b=2', '--transport-url', ctx.url]);
  assert.is(add.code, 0, add.err);
  assert.is(add.out.trim(), '3');
  // Without the contract `code=42` would be the number 42 and break it; the contract keeps the text.
  const label = await run(['labels', 'label', 'code=42', 'n=5', '--json', '--transport-url', ctx.url]);
  assert.is(label.code, 0, label.err);
  assert.equal(JSON.parse(label.out), { code: '42', codeType: 'string', n: 5, nType: 'number' });
  const fail = await run(['demo', 'fail', 'message=123', '--transport-url', ctx.url]);
  assert.is(fail.code, 1);
  assert.match(fail.err, /remote error: DemoError: 123/, 'message is a string in the contract');
  // No contract for `loose`: JSON values parse as without contracts.
  const loose = await run(['labels', 'loose', 'code=42', '--json', '--transport-url', ctx.url]);
  assert.equal(JSON.parse(loose.out), { code: 42, codeType: 'number' });
});

t(
  '--no-contract skips the lookup: values read as JSON (code=42 a number, which the contract refuses); not with --describe',
  async (ctx) => {
    const label = await run(['labels', 'label', 'code=42', '--no-contract', '--transport-url', ctx.url]);
    assert.is(label.code, 2, label.out);
    assert.match(label.err, /ContractViolation.*\/code must be string/);
    const loose = await run(['labels', 'loose', 'code=42', '--no-contract', '--json', '--transport-url', ctx.url]);
    assert.is(loose.code, 0, loose.err);
    assert.equal(JSON.parse(loose.out), { code: 42, codeType: 'number' });
    const both = await run(['labels', 'label', '--describe', '--no-contract', '--transport-url', ctx.url]);
    assert.is(both.code, 2, both.out);
    assert.match(both.err, /--describe prints the contract; not with --no-contract/);
  },
);

t('a value the contract refuses: the server says which, the exit status is 2 (a bad argument, as the exit table says)', async (ctx) => {
  const r = await run(['demo', 'add', 'a=1', 'b=two', '--transport-url', ctx.url]);
  assert.is(r.code, 2, r.out);
  assert.match(r.err, /ContractViolation.*arguments of add break its contract: \/b must be number/);
});

t('a first connect slower than the contract fetch\'s 1 s is waited for, as the call would (it said "cannot connect")', async (ctx) => {
  // TCP is up at once, the AMQP open comes 1.5 s late.
  const proxy = await slowProxy(ctx.url, 1500);
  try {
    const label = await run(['labels', 'label', 'code=42', '--json', '--transport-url', proxy.url]);
    assert.is(label.code, 0, label.err);
    assert.equal(JSON.parse(label.out), { code: '42', codeType: 'string', n: null, nType: 'undefined' });
  } finally {
    await proxy.close();
  }
});

t.run();
