import net from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runCli } from '../support/cli-procs.js';

// README "Logging": with --log-json, the error a long-running CLI exits with is a JSON line of
// its log, not a plain `error: …`; also when it fails before its log exists (a bad --config, a
// missing --config-file, commander's own parse errors) and for hermod-router's own checks.
// None of these reach a broker.

const t = suite('--log-json: the exit error is a JSON line');

/** Runs `name` with `args`; asserts its stderr is one fatal JSON line with `status`, whose msg matches `msg`. */
async function jsonExit(name: string, args: string[], status: number, msg: RegExp, logName = name, env?: Record<string, string>) {
  const r = await runCli(name, args, { killAfterMs: 30_000, ...(env ? { env } : {}) });
  assert.is(r.code, status, `${name} ${args.join(' ')}: ${r.err}`);
  const lines = r.err.trim().split('\n');
  assert.is(lines.length, 1, `${name} ${args.join(' ')}: one line\n${r.err}`);
  let line: { level?: string; name?: string; msg?: string; status?: number } = {};
  try {
    line = JSON.parse(lines[0]!) as typeof line;
  } catch {
    assert.unreachable(`${name} ${args.join(' ')}: not a JSON line: ${r.err}`);
  }
  assert.is(line.level, 'fatal');
  assert.is(line.name, logName);
  assert.is(line.status, status);
  assert.match(line.msg ?? '', msg);
}

t('rpc-server, notify-listen, hermod-gateway: a bad --config, a missing --config-file, a bad or unknown flag', async () => {
  await jsonExit('notify-listen', ['--log-json', '--config', 'rpc.retyr=1'], 2, /unknown configuration key 'rpc\.retyr'/);
  await jsonExit('notify-listen', ['--log-json', '--bogus'], 2, /^unknown option '--bogus'$/);
  await jsonExit('rpc-server', ['s', '--topic', 't', '--log-json', '--concurrency', '0'], 2, /--concurrency.*needs a whole number ≥ 1/);
  await jsonExit('hermod-gateway', ['--log-json', '--config-file', 'nope.json'], 2, /cannot read gateway config file nope\.json/);
  // Without --log-json: the plain line, as before.
  const plain = await runCli('notify-listen', ['--bogus'], { killAfterMs: 30_000 });
  assert.is(plain.code, 2);
  assert.is(plain.err, "error: unknown option '--bogus'\n");
});

t('JSON asked for by the environment or by --config log.json, not only by --log-json', async () => {
  // Its log would be JSON (HERMOD_LOG_JSON, a --config override): so is the error before it.
  await jsonExit('notify-listen', ['--bogus'], 2, /^unknown option '--bogus'$/, undefined, { HERMOD_LOG_JSON: 'true' });
  await jsonExit('rpc-server', ['s', '--topic', 't', '--concurrency', '0'], 2, /--concurrency/, undefined, { HERMOD_LOG_JSON: '1' });
  await jsonExit('hermod-gateway', ['--config', 'log.json=true', '--config-file', 'nope.json'], 2, /cannot read gateway config file/);
  await jsonExit('notify-listen', ['--config=log.json=on', '--config', 'rpc.retyr=1'], 2, /unknown configuration key 'rpc\.retyr'/);
  // The command line overrides the environment, and --log-json overrides both.
  const off = await runCli('notify-listen', ['--config', 'log.json=false', '--bogus'], {
    killAfterMs: 30_000,
    env: { HERMOD_LOG_JSON: 'true' },
  });
  assert.is(off.err, "error: unknown option '--bogus'\n");
  await jsonExit('notify-listen', ['--config', 'log.json=false', '--log-json', '--bogus'], 2, /^unknown option/);
  const no = await runCli('notify-listen', ['--bogus'], { killAfterMs: 30_000, env: { HERMOD_LOG_JSON: 'false' } });
  assert.is(no.err, "error: unknown option '--bogus'\n");
});

t('hermod-router: a port in use (1), its own flag checks (2)', async () => {
  const taken = net.createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
  const { port } = taken.address() as net.AddressInfo;
  try {
    await jsonExit(
      'hermod-router',
      ['--host', '127.0.0.1', '--port', String(port), '--log-json'],
      1,
      new RegExp(`^port ${port} is in use`),
    );
  } finally {
    taken.close();
  }
  await jsonExit('hermod-router', ['--tls-cert', 'x', '--log-json'], 2, /^--tls-cert and --tls-key go together$/);
  await jsonExit('hermod-router', ['--log-json', '--port', 'x'], 2, /--port.*expected a TCP port/);
});

t('hermod status --log-json: every stderr line is JSON (a Node warning, a reconnect, the failure)', async () => {
  // From a review: its Node warnings were plain text (no captureConsole) and so was its failure.
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
  const { port } = closed.address() as net.AddressInfo;
  await new Promise<void>((r) => closed.close(() => r()));
  const r = await runCli(
    'hermod',
    [
      'status',
      '--once',
      '--wait',
      '1',
      '--log-json',
      '--transport-url',
      `amqp://127.0.0.1:${port}/?idle_timeout=30`,
      '--config',
      'amqp1.idleTimeout=10000',
    ],
    { killAfterMs: 30_000 },
  );
  assert.is(r.code, 5, r.err);
  const lines = r.err.trim().split('\n');
  const parsed = lines.map((l) => {
    try {
      return JSON.parse(l) as { level: string; name: string; msg: string };
    } catch {
      assert.unreachable(`not a JSON line: ${l}`);
      throw new Error('unreachable');
    }
  });
  assert.ok(
    parsed.some((l) => l.level === 'warn' && /HERMOD_URL_OPTION_OVERRIDES_CONFIG/.test(l.msg)),
    r.err,
  );
  const last = parsed.at(-1)!;
  assert.is(last.level, 'fatal');
  assert.is(last.name, 'hermod status');
  assert.match(last.msg, /cannot connect to .* within --wait/);
  await jsonExit('hermod', ['status', '--log-json', '--bogus'], 2, /^unknown option '--bogus'$/, 'hermod status');
});

t('hermod run, whose log is JSON by default: --workers 0x2, an unknown flag, a bad --config', async () => {
  await jsonExit('hermod', ['run', '--workers', '0x2'], 2, /--workers: must be a whole number/, 'hermod run');
  await jsonExit('hermod', ['run', '--bogus'], 2, /^unknown option '--bogus'$/, 'hermod run');
  await jsonExit('hermod', ['run', '--config', 'rpc.retyr=1'], 2, /unknown configuration key 'rpc\.retyr'/, 'hermod run');
});

t.run();
