import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EventContext } from 'rhea';
import rhea from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { until } from '../support/assert.js';

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'hermod-router.js');

/** Runs hermod-router with `args` and `input` on stdin; kills it after `ms` if it is still up. */
function router(args: string[], input?: string, ms = 8000) {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const p = { child, out: '', err: '', exited: new Promise<number | null>((r) => child.once('exit', (code) => r(code))) };
  child.stdout.on('data', (d) => {
    p.out += d;
  });
  child.stderr.on('data', (d) => {
    p.err += d;
  });
  child.stdin.end(input ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  void p.exited.then(() => clearTimeout(timer));
  return p;
}

const t = suite<{ dir: string }>('hermod-router CLI: passwd, --users, secure defaults', { dir: '' });
t.before((ctx) => {
  ctx.dir = mkdtempSync(path.join(tmpdir(), 'hermod-router-cli-'));
});
t.after((ctx) => rmSync(ctx.dir, { recursive: true, force: true }));

t('passwd writes a hashed entry from stdin; --users then takes PLAIN logins and refuses a wrong password', async (ctx) => {
  const file = path.join(ctx.dir, 'users.json');
  const pw = router(['passwd', file, 'alice'], 'wonderland\n');
  assert.is(await pw.exited, 0, pw.err);
  assert.is(statSync(file).mode & 0o777, 0o600);
  assert.not.ok(readFileSync(file, 'utf8').includes('wonderland'));
  const help = router(['passwd', '--help']);
  assert.is(await help.exited, 0, help.err);
  assert.match(help.out, /^usage: hermod-router passwd <file> <user>/);
  // A missing directory: the error names the file asked for, not a temporary one.
  const nodir = router(['passwd', path.join(ctx.dir, 'none', 'u.json'), 'alice'], 'pw\n');
  assert.is(await nodir.exited, 1);
  assert.match(nodir.err, /cannot write .*none\/u\.json: ENOENT/);
  assert.not.match(nodir.err, /\.tmp/);
  const r = router(['--port', '0', '--users', file]);
  try {
    await until(() => /listening on amqp:\/\/127\.0\.0\.1:(\d+)\/ \(SASL: PLAIN \(1 users\)\)/.test(r.out), 'the listening line');
    const port = Number(/:(\d+)\//.exec(r.out)![1]);
    const login = (password: string) =>
      new Promise<string>((resolve) => {
        const c = rhea.create_container();
        c.on('error', () => {});
        const conn = c.connect({ port, host: '127.0.0.1', reconnect: false, username: 'alice', password } as never);
        conn.on('disconnected', () => {});
        conn.once('connection_open', () => {
          conn.close();
          resolve('open');
        });
        conn.once('connection_error', (e: EventContext) => resolve((e as unknown as { error: { condition: string } }).error.condition));
      });
    assert.is(await login('wonderland'), 'open');
    assert.is(await login('wrong'), 'amqp:unauthorized-access');
    await until(() => /refused 127\.0\.0\.1:\d+: authentication failed for user "alice"/.test(r.out), 'the refusal logged');
  } finally {
    r.child.kill('SIGTERM');
    await r.exited;
  }
});

t('a non-loopback bind without authentication exits 2 unless --allow-anonymous, which warns', async () => {
  const refused = router(['--host', '0.0.0.0', '--port', '0']);
  assert.is(await refused.exited, 2);
  assert.match(refused.err, /without authentication must be asked for/);
  // What to do, in flags.
  assert.match(refused.err, /--users <file>.*--tls-ca.*--allow-anonymous/);
  const open = router(['--host', '0.0.0.0', '--port', '0', '--allow-anonymous']);
  try {
    await until(() => /WARN {2}hermod-router: anonymous clients are accepted on 0\.0\.0\.0/.test(open.err), 'the warning');
  } finally {
    open.child.kill('SIGTERM');
    await open.exited;
  }
});

t('what rhea prints for a peer (console.error, console.warn) goes through the log: escaped, bounded, never a forged line', async () => {
  // An attach whose source terminus has a symbol descriptor holding a newline, a forged log line
  // and ANSI colours: rhea printed "Unknown terminus: …" to stderr as it came, once per frame.
  const r = router(['--port', '0']);
  try {
    await until(() => /listening on amqp:\/\/127\.0\.0\.1:(\d+)\//.test(r.out), 'the listening line');
    const port = Number(/:(\d+)\//.exec(r.out)![1]);
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    s.on('data', () => {});
    await new Promise((res) => s.once('connect', res));
    s.write(Buffer.from('414d5150030100000000001902010000005341c00c01a309414e4f4e594d4f5553', 'hex'));
    await new Promise((res) => setTimeout(res, 60));
    const attach =
      '414d5150000100000000001f02000000005310c01204a10673746465727240700001000060003f0000001a02000000005311c00d044043700000080070000008000000006502000000005312c05807a101724341404000a348780a323032362d30312d30315430303a30303a30302e3030305a20464154414c206865726d6f642d726f757465723a20666f72676564206c696e65201b5b33316d5245441b5b306d4500532945';
    s.write(Buffer.from(attach, 'hex'));
    await until(
      () => /console: Unknown terminus: x\\n2026-01-01T00:00:00\.000Z FATAL hermod-router: forged line \\u001b\[31mRED/.test(r.err),
      'the escaped line',
    );
    s.destroy();
    assert.not.match(r.err, /^2026-01-01T00:00:00\.000Z FATAL/m, 'no forged line');
    assert.not.ok(r.err.includes('\u001b'), 'no escape character reaches the terminal');
  } finally {
    r.child.kill('SIGTERM');
    await r.exited;
  }
});

t('timeouts are seconds: --help shows their defaults in seconds, a bad one exits 2', async () => {
  const help = router(['--help']);
  assert.is(await help.exited, 0);
  assert.match(
    help.out.replace(/\s+/g, ' '),
    /--handshake-timeout <seconds> time from connect to AMQP open \(TLS and SASL included; default 5 s\)/,
  );
  assert.not.match(help.out, /\(default: (5000|16000)\)/);
  for (const args of [
    ['--handshake-timeout', 'abc'],
    ['--handshake-timeout', '0'],
    ['--idle-timeout', '-1'],
  ]) {
    const bad = router([...args, '--port', '0']);
    assert.is(await bad.exited, 2, args.join(' '));
    assert.match(bad.err, /needs a number of seconds/);
  }
  // Limits: `abc` switched the bound off (NaN), 0 or -3 refused every client.
  for (const args of [
    ['--max-connections', 'abc'],
    ['--max-sessions', '0'],
    ['--max-links', '-3'],
    ['--max-message-size', '1.5'],
    ['--max-held-bytes', 'lots'],
    ['--max-login-checks', '0'],
    ['--max-logins-waiting', 'x'],
    ['--max-logins-per-address', '2.5'],
  ]) {
    const bad = router([...args, '--port', '0']);
    assert.is(await bad.exited, 2, args.join(' '));
    assert.match(bad.err, /needs a whole number ≥ 1/);
  }
  // A TLS file that cannot be read is the command line's mistake, named by its flag (it was
  // "cannot listen on …: ENOENT", exit 1).
  const noCert = router(['--tls-cert', '/nonexistent/cert.pem', '--tls-key', '/nonexistent/key.pem', '--port', '0']);
  assert.is(await noCert.exited, 2);
  assert.match(noCert.err, /cannot read --tls-cert file \/nonexistent\/cert\.pem: ENOENT/);
  // --tls-ca alone was dropped: the router listened in clear and anonymous, and on a public --host
  // refused to start, advising the --tls-ca it had been given.
  for (const host of ['127.0.0.1', '0.0.0.0']) {
    // Any readable file as the CA: the flag is refused before it is read.
    const caOnly = router(['--tls-ca', bin, '--host', host, '--port', '0']);
    assert.is(await caOnly.exited, 2, caOnly.out + caOnly.err);
    assert.match(caOnly.err, /--tls-ca needs --tls-cert and --tls-key/);
    assert.not.match(caOnly.out, /listening/);
  }
  // A held-bytes budget below one message would refuse every message that has to wait.
  const small = router(['--max-held-bytes', '1000', '--port', '0']);
  assert.is(await small.exited, 2);
  assert.match(small.err, /maxHeldBytes \(1000\) must be at least maxMessageSize \(16777216\)/);
});

t.run();
