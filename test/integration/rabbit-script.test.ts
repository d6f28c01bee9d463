// `npm run rabbit` (README "RabbitMQ"): scripts/rabbit-node.ts run directly starts a throwaway
// node, prints a URL hermod connects to, and on Ctrl-C stops the node and deletes its data.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { alive } from '../../scripts/rabbit-node.js';
import { defaultConfig, getTransport, RPCClient, RPCServer, Target } from '../../src/index.js';
import { until } from '../support/assert.js';

const script = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'scripts', 'rabbit-node.js');

test('npm run rabbit: a URL on stdout, calls work over it, Ctrl-C leaves no node and no data behind', async () => {
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    err += d;
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  try {
    await until(() => out.includes('\n') && err.includes('Ctrl-C'), `the URL and the node line (${err})`, 45_000);
    const url = out.trim();
    assert.match(url, /^rabbit:\/\/guest:guest@127\.0\.0\.1:\d+\/$/);
    const [, pid, dir] = /\(pid (\d+), data in (\S+)\)/.exec(err) ?? [];
    assert.ok(pid && dir && existsSync(dir), err);
    const tr = await getTransport(url, { config: defaultConfig() });
    const server = new RPCServer(tr, new Target({ topic: 'script', server: 's' }), [
      {
        async add(_c: unknown, a: { a: number; b: number }) {
          return a.a + a.b;
        },
      },
    ]);
    await server.start();
    assert.is(await new RPCClient(tr, new Target({ topic: 'script' }), { timeout: 5000 }).call({}, 'add', { a: 2, b: 3 }), 5);
    await server.stop();
    await server.wait(1000);
    await tr.close();
    child.kill('SIGINT');
    assert.is(await exited, 0, err);
    assert.not.ok(alive(Number(pid)), 'the node is gone');
    assert.not.ok(existsSync(dir!), 'its data is gone');
  } finally {
    clearTimeout(killer);
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test.run();
