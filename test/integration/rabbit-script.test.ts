// `npm run rabbit` (README "RabbitMQ"): scripts/rabbit-node.ts run directly starts a throwaway
// node, prints a URL hermod connects to, and on Ctrl-C stops the node and deletes its data.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { alive } from '../../scripts/rabbit-node.js';
import { defaultConfig, getTransport, RPCClient, RPCServer, Target } from '../../src/index.js';
import { until } from '../support/assert.js';
import { startScript } from '../support/cli-procs.js';

const script = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'scripts', 'rabbit-node.js');

test('npm run rabbit: a URL on stdout, calls work over it, Ctrl-C leaves no node and no data behind', async () => {
  const p = startScript(script, [], { killAfterMs: 60_000 });
  try {
    await until(() => p.out.includes('\n') && p.err.includes('Ctrl-C'), `the URL and the node line (${p.err})`, 45_000);
    const url = p.out.trim();
    assert.match(url, /^rabbit:\/\/guest:guest@127\.0\.0\.1:\d+\/$/);
    const [, pid, dir] = /\(pid (\d+), data in (\S+)\)/.exec(p.err) ?? [];
    assert.ok(pid && dir && existsSync(dir), p.err);
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
    p.child.kill('SIGINT');
    assert.is(await p.exited, 0, p.err);
    assert.not.ok(alive(Number(pid)), 'the node is gone');
    assert.not.ok(existsSync(dir!), 'its data is gone');
  } finally {
    if (p.child.exitCode === null) p.child.kill('SIGKILL');
  }
});

test('npm run rabbit: a node killed under it ends the script (status 1) and its data is deleted', async () => {
  const p = startScript(script, [], { killAfterMs: 60_000 });
  try {
    await until(() => p.err.includes('Ctrl-C'), `the node line (${p.err})`, 45_000);
    const [, pid, dir] = /\(pid (\d+), data in (\S+)\)/.exec(p.err) ?? [];
    assert.ok(pid && dir && existsSync(dir), p.err);
    process.kill(Number(pid), 'SIGKILL');
    assert.is(await p.exited, 1, p.err);
    assert.match(p.err, /exited on its own; its data is deleted/);
    assert.not.ok(existsSync(dir!), 'its data is gone');
  } finally {
    if (p.child.exitCode === null) p.child.kill('SIGKILL');
  }
});

test.run();
