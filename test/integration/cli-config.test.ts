import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { silentPeer } from '../support/slow-proxy.js';

// The bins' configuration sources and usage errors. Nothing here needs a peer: usage errors
// are reported before connecting, and the rest connects to a closed port (the error names the
// retry budget in force) or to memory:// (where nobody serves, so a call times out).
const bin = (name: string) => path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', `${name}.js`);
const NOWHERE = 'amqp://127.0.0.1:1/';

async function run(
  name: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; out: string; err: string }> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HERMOD_')));
  const child = spawn(process.execPath, [bin(name), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...base, ...env } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    err += d;
  });
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  return { code, out, err };
}

const t = suite('CLIs: usage errors exit 2, CLI defaults are the lowest config source');
const dir = mkdtempSync(path.join(tmpdir(), 'hermod-cli-config-'));
t.after(() => rmSync(dir, { recursive: true, force: true }));

t('rpc-client: usage errors exit 2 as its help promises', async () => {
  const notKv = await run('rpc-client', ['cli', 'add', 'foo', '--transport-url', NOWHERE]);
  assert.is(notKv.code, 2, notKv.err);
  assert.match(notKv.err, /argument 'foo' is not key=value/);
  const ctx = await run('rpc-client', ['cli', 'add', 'a=1', '--context', 'user', '--transport-url', NOWHERE]);
  assert.is(ctx.code, 2, ctx.err);
  assert.match(ctx.err, /argument 'user' is not key=value/);
  const noMethod = await run('rpc-client', ['cli', '--transport-url', NOWHERE]);
  assert.is(noMethod.code, 2, noMethod.err);
  assert.match(noMethod.err, /missing required argument 'method'/);
  const repeat = await run('rpc-client', ['cli', 'add', '--repeat', '0', '--transport-url', NOWHERE]);
  assert.is(repeat.code, 2, repeat.err);
  assert.match(repeat.err, /option '--repeat <n>' argument '0' is invalid\. needs a whole number ≥ 1/);
  const timeout = await run('rpc-client', ['cli', 'add', '--timeout', '0', '--transport-url', NOWHERE]);
  assert.is(timeout.code, 2, timeout.err);
  assert.match(timeout.err, /option '--timeout <seconds>' argument '0' is invalid\. needs a number of seconds > 0/);
  const option = await run('rpc-client', ['cli', 'add', '--no-such-option']);
  assert.is(option.code, 2, option.err);
});

t('rpc-client: a broker-bound value out of range exits 2 naming its key, not 5 ("cannot connect") after retries', async () => {
  // Port 1: were the value let through, the run would end in "cannot connect" (exit 5).
  const frame = await run('rpc-client', ['cli', 'add', '--timeout', '10', '--transport-url', 'rabbit://127.0.0.1:1/?frameMax=4095']);
  assert.is(frame.code, 2, frame.err);
  assert.match(frame.err, /invalid value for rabbit\.frameMax \(from the transport URL\): must be at least 4096/);
  const file = path.join(dir, 'ttl.json');
  writeFileSync(file, JSON.stringify({ rabbit: { transientQueuesTtl: 10_000_000_000_000 } }));
  const ttl = await run('rpc-client', ['cli', 'add', '--timeout', '10', '--transport-url', 'rabbit://127.0.0.1:1/', '--config-file', file]);
  assert.is(ttl.code, 2, ttl.err);
  assert.match(ttl.err, /invalid value for rabbit\.transientQueuesTtl \(from file .*ttl\.json\): must be at most 4294967295 ms/);
});

t('rpc-client: a URL option over a --config value wins, and stderr says so', async () => {
  const r = await run('rpc-client', [
    'cli',
    'add',
    '--timeout',
    '2',
    '--transport-url',
    'amqp://127.0.0.1:1/?idleTimeout=5000',
    '--config',
    'amqp1.idleTimeout=7000',
    '--config',
    'rpc.retry=0',
  ]);
  assert.match(r.err, /HermodWarning: the transport URL sets amqp1\.idleTimeout=5000, over 7000 from the configuration/);
});

t('notify-listen: a filter that is no regular expression exits 2 naming its flag and the pattern as typed', async () => {
  const bad = await run('notify-listen', ['--event-type', '(', '--transport-url', 'memory://']);
  assert.is(bad.code, 2, bad.err);
  // It said 'bad filter expression (: Invalid regular expression: /(/y: …': no flag, and the sticky flag hermod adds.
  assert.is(bad.err, 'error: --event-type: bad regular expression "(": Unterminated group\n');
  const pub = await run('notify-listen', ['--publisher-id', 'a[', '--transport-url', 'memory://']);
  assert.is(pub.code, 2, pub.err);
  assert.match(pub.err, /^error: --publisher-id: bad regular expression "a\[": /);
});

t('notify-send: usage errors exit 2', async () => {
  const notKv = await run('notify-send', ['compute.start', 'foo', '--transport-url', NOWHERE]);
  assert.is(notKv.code, 2, notKv.err);
  assert.match(notKv.err, /argument 'foo' is not key=value/);
  const json = await run('notify-send', ['compute.start', '--payload', '{nope', '--transport-url', NOWHERE]);
  assert.is(json.code, 2, json.err);
  assert.match(json.err, /--payload is not valid JSON/);
  // As in a key=value value: it went out as {"n":null,"i":12345678901234567000}, then as {"a":2}.
  const lost = await run('notify-send', ['compute.start', '--payload', '{"n":1e400,"i":12345678901234567890}', '--transport-url', NOWHERE]);
  assert.is(lost.code, 2, lost.err);
  assert.match(lost.err, /--payload: the number 1e400 is beyond what JSON can carry/);
  const twice = await run('notify-send', ['compute.start', '--payload', '{"a":{"b":1,"b":2}}', '--transport-url', NOWHERE]);
  assert.is(twice.code, 2, twice.err);
  assert.match(twice.err, /--payload: the key "b" is given twice in one object/);
  const prio = await run('notify-send', ['compute.start', '--priority', 'loud', '--transport-url', NOWHERE]);
  assert.is(prio.code, 2, prio.err);
  assert.match(prio.err, /unknown priority 'loud'/);
});

t(
  'notify-send --timeout against a peer that takes the connection and never answers: exit 3 at the timeout, saying it is not connected (it blamed listeners, and closed 5 s later)',
  async () => {
    const silent = await silentPeer();
    try {
      const port = silent.port;
      const started = performance.now();
      const r = await run('notify-send', ['compute.x', 'a=1', '--transport-url', `amqp://127.0.0.1:${port}/`, '--timeout', '1']);
      const took = performance.now() - started;
      assert.is(r.code, 3, r.err);
      assert.match(r.err, new RegExp(`not taken within 1 s \\(not connected to 127\\.0\\.0\\.1:${port} yet`));
      assert.ok(took < 4000, `${Math.round(took)} ms`);
    } finally {
      await silent.close();
    }
  },
);

t('rpc-client retries a connection twice by default; env, --config and a config file override that', async () => {
  const args = ['cli', 'add', '--timeout', '10', '--transport-url', NOWHERE, '--config', 'amqp1.retryInterval=20'];
  const byDefault = await run('rpc-client', args);
  assert.is(byDefault.code, 5, byDefault.err);
  assert.match(byDefault.err, /cannot connect to amqp:\/\/127\.0\.0\.1:1.*gave up after 3 attempts, retry=2/);
  // The attempt that spends the budget says so (it announced a next try that never came).
  assert.match(byDefault.err, /attempt 3 failed, no more tries \(rpc\.retry=2\)\n/);
  assert.match(byDefault.err, /attempt 2 failed, next try /);
  const byEnv = await run('rpc-client', args, { HERMOD_RPC_RETRY: '0' });
  assert.is(byEnv.code, 5, byEnv.err);
  assert.match(byEnv.err, /gave up after 1 attempt, retry=0/);
  const byFlag = await run('rpc-client', [...args, '--config', 'rpc.retry=0']);
  assert.is(byFlag.code, 5, byFlag.err);
  assert.match(byFlag.err, /retry=0\)/);
  const file = path.join(dir, 'retry.json');
  writeFileSync(file, JSON.stringify({ rpc: { retry: 1 } }));
  const byFile = await run('rpc-client', [...args, '--config-file', file]);
  assert.is(byFile.code, 5, byFile.err);
  assert.match(byFile.err, /gave up after 2 attempts, retry=1/);
});

t('notify-send retries a connection twice by default; HERMOD_NOTIFICATIONS_RETRY overrides it', async () => {
  const args = ['compute.start', 'id=1', '--transport-url', NOWHERE, '--config', 'amqp1.retryInterval=20'];
  const byDefault = await run('notify-send', args);
  assert.is(byDefault.code, 5, byDefault.err);
  assert.match(byDefault.err, /cannot connect to amqp:\/\/127\.0\.0\.1:1.*retry=2\)/);
  assert.match(byDefault.err, /attempt 3 failed, no more tries \(notifications\.retry=2\)\n/);
  const byEnv = await run('notify-send', args, { HERMOD_NOTIFICATIONS_RETRY: '0' });
  assert.is(byEnv.code, 5, byEnv.err);
  assert.match(byEnv.err, /retry=0\)/);
  // Failing to connect for over a second: the reconnect lines say why it waits, and no line
  // claims the broker has it and is deciding ("waiting for the broker to take it").
  const slow = await run('notify-send', ['compute.start', 'id=1', '--transport-url', NOWHERE, '--config', 'amqp1.retryInterval=700']);
  assert.is(slow.code, 5, slow.err);
  assert.match(slow.err, /attempt 2 failed/);
  assert.not.match(slow.err, /waiting for the broker/);
});

t('the CLI transport URL default yields to a config file and to HERMOD_TRANSPORT_URL', async () => {
  const help = await run('rpc-client', ['--help-config']);
  assert.is(help.code, 0);
  assert.match(help.out, /transportUrl {2}\(default "amqp:\/\/127\.0\.0\.1:5672\/" here, library default "memory:\/\/"/);
  assert.match(help.out, /rpc\.retry {2}\(default 2 here, library default -1/);
  // memory:// in another process has no server: a call there times out instead of connecting anywhere.
  const file = path.join(dir, 'memory.json');
  writeFileSync(file, JSON.stringify({ transportUrl: 'memory://' }));
  const byFile = await run('rpc-client', ['cli', 'add', '--timeout', '0.3', '--config-file', file]);
  assert.is(byFile.code, 3, byFile.err);
  const byEnv = await run('rpc-client', ['cli', 'add', '--timeout', '0.3'], { HERMOD_TRANSPORT_URL: 'memory://' });
  assert.is(byEnv.code, 3, byEnv.err);
});

t.run();
