// Reconnect lines (issue #13, "Silent waits"): every driver logs each reconnect attempt with the
// host, the reason and when the next try comes. The AMQP 1.0 case kills a real hermod-router
// process under a real rpc-server process and starts it again on the same port; the RabbitMQ
// case points rpc-server at a closed port.
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { until } from '../support/assert.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = (name: string) => path.join(root, 'bin', `${name}.js`);

interface Proc {
  child: ChildProcess;
  out: string;
  exited: Promise<number | null>;
}
function start(name: string, args: string[]): Proc {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HERMOD_')));
  const child = spawn(process.execPath, [bin(name), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const p: Proc = { child, out: '', exited: new Promise((r) => child.once('exit', (code) => r(code))) };
  // Bounded: nothing here runs for long.
  const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
  void p.exited.then(() => clearTimeout(timer));
  child.stdout!.on('data', (d) => {
    p.out += d;
  });
  child.stderr!.on('data', (d) => {
    p.out += d;
  });
  return p;
}
async function stop(p: Proc): Promise<void> {
  if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
  await p.exited;
}
/** A port nothing listens on now. */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

const t = suite<{ procs: Proc[] }>('reconnect lines name the host, the reason and the next try', { procs: [] });
t.after.each(async (ctx) => {
  for (const p of ctx.procs) await stop(p);
  ctx.procs = [];
});

t('AMQP 1.0: the router killed and restarted; the loss, each failed attempt with its reason and delay, the reconnect', async (ctx) => {
  const port = await freePort();
  const router = start('hermod-router', ['--port', String(port)]);
  ctx.procs.push(router);
  await until(() => router.out.includes('listening on'), 'the router', 15_000);
  const server = start('rpc-server', [
    's1',
    '-t',
    'reconnect',
    '--transport-url',
    `amqp://127.0.0.1:${port}/`,
    '--config',
    'amqp1.retryInterval=300',
  ]);
  ctx.procs.push(server);
  await until(() => server.out.includes('serving topic reconnect'), 'the server', 15_000);
  router.child.kill('SIGKILL');
  await router.exited;
  const host = `127\\.0\\.0\\.1:${port}`;
  await until(() => /attempt 2 failed/.test(server.out), 'two failed attempts', 15_000);
  // A killed peer reads as a close or as a reset (whether anything was in flight): either way a reason.
  assert.match(server.out, new RegExp(`WARN {2}rpc-server s1: disconnected from ${host}: \\S[^\\n]*\\n`));
  // The first attempt goes at once, when the loss is seen: that can be while the kernel still
  // tears the killed router down, its listener not closed yet. The connect is then reset, during
  // or just after its handshake (connect or read ECONNRESET, both seen at load), rather than
  // refused: a reason all the same.
  const attempt = new RegExp(
    `INFO {2}rpc-server s1: reconnecting to ${host} \\((?:connect (?:ECONNREFUSED|ECONNRESET) ${host}|read ECONNRESET)\\): attempt (\\d) failed, next try in (\\d+\\.\\d) s\\n`,
    'g',
  );
  const lines = [...server.out.matchAll(attempt)];
  assert.equal(
    lines.map((m) => m[1]),
    ['1', '2'],
    server.out,
  );
  // 300 ms, then 600 ms, each ±25%: the delay the driver waits, not a constant.
  const delays = lines.map((m) => Number(m[2]));
  assert.ok(delays[0]! >= 0.2 && delays[0]! <= 0.4, `first delay ${delays[0]} s`);
  assert.ok(delays[1]! >= 0.4 && delays[1]! <= 0.8, `second delay ${delays[1]} s`);
  assert.not.match(server.out, /trying again/);
  const again = start('hermod-router', ['--port', String(port)]);
  ctx.procs.push(again);
  await until(() => new RegExp(`INFO {2}rpc-server s1: connected to ${host}\\n`).test(server.out), 'the reconnect', 20_000);
});

t("RabbitMQ: each failed attempt says why, when the next comes and which connection (the server's own)", async (ctx) => {
  const port = await freePort();
  const server = start('rpc-server', [
    's1',
    '-t',
    'reconnect',
    '--transport-url',
    `rabbit://127.0.0.1:${port}/`,
    '--config',
    'rabbit.retryInterval=300',
  ]);
  ctx.procs.push(server);
  await until(() => /attempt 1 failed/.test(server.out), 'a failed attempt', 15_000);
  assert.match(
    server.out,
    new RegExp(
      `INFO {2}rpc-server s1: reconnecting to 127\\.0\\.0\\.1:${port} \\[server reconnect\\.s1\\] \\(connect ECONNREFUSED 127\\.0\\.0\\.1:${port}\\): attempt 1 failed, next try in 0\\.[234] s\\n`,
    ),
  );
});

t.run();
