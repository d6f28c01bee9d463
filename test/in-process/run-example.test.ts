// The README's hermod.config.json is examples/run/hermod.config.json, and it runs as written:
// two workers of a JavaScript service and a TypeScript service, on the embedded router.
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultConfig, getTransport, RPCClient, Target } from '../../src/index.js';
import { parseRunSpec } from '../../src/ops/run/config.js';
import { Router } from '../../src/router/router.js';
import { until } from '../support/assert.js';

const execFileAsync = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const example = path.join(root, 'examples', 'run', 'hermod.config.json');

test('the README example is the example file, and it validates', () => {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const m = /<!-- run-example[^>]*-->\s*```json\n([\s\S]*?)```/.exec(readme);
  assert.ok(m, 'README has the marked hermod.config.json');
  assert.equal(JSON.parse(m![1]!), JSON.parse(readFileSync(example, 'utf8')));
  const spec = parseRunSpec(JSON.parse(m![1]!), example);
  assert.equal(
    spec.services.map((s) => s.name),
    ['calc', 'greeter'],
  );
});

test('the example runs: calc on two workers, greeter from TypeScript; SIGTERM exits 0', async () => {
  const router = new Router({ port: 0 });
  const url = `amqp://127.0.0.1:${await router.start()}/`;
  const child = spawn(process.execPath, [path.join(root, 'dist/bin/hermod.js'), 'run', example, '--config', `transportUrl=${url}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const transport = await getTransport(url, { config: defaultConfig() });
  try {
    await until(() => (out.match(/"event":"serving"/g) ?? []).length === 3, '3 servers serving', 20_000).catch((err: Error) => {
      throw new Error(`${err.message}; the runner said:\n${out}`);
    });
    const calc = new RPCClient(transport, new Target({ topic: 'calc', namespace: 'calc', version: '1.1' }), { timeout: 5000 });
    assert.is(await calc.call({}, 'add', { a: 2, b: 40 }), 42);
    const who = await Promise.all([1, 2].map((n) => calc.prepare({ server: `calc-host-${n}` }).call({}, 'whoami', {})));
    assert.equal(
      who.map((w) => (w as { worker: number }).worker),
      [1, 2],
    );
    const greeter = new RPCClient(transport, new Target({ topic: 'greeter' }), { timeout: 5000 });
    assert.is(await greeter.call({}, 'hello', { name: 'operator' }), 'hello operator');
    // The README's calls of the running example, each printing what its comment says.
    const calls = /<!-- readme-example: run-calls -->\s*```sh\n([\s\S]*?)```/.exec(readFileSync(path.join(root, 'README.md'), 'utf8'));
    assert.ok(calls, 'README has the marked run-calls block');
    const lines = calls![1]!.split('\n').filter((l) => l.startsWith('npx rpc-client '));
    assert.is(lines.length, 3);
    for (const line of lines) {
      const [command, expected] = line.split(/\s+# /) as [string, string];
      // Not spawnSync: the router answering it runs in this process.
      const r = await execFileAsync(
        process.execPath,
        [path.join(root, 'dist/bin/rpc-client.js'), ...command.trim().split(/\s+/).slice(2)],
        {
          encoding: 'utf8',
          timeout: 15_000,
          env: { ...process.env, HERMOD_TRANSPORT_URL: url },
        },
      ).catch((err: Error & { stderr?: string }) => {
        throw new Error(`${command}: ${err.message} ${err.stderr}`);
      });
      const shown = r.stdout.replace(/\s+/g, ' ').trim();
      const want = new RegExp(
        `^${expected
          .split('…')
          .map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
          .join('.+')}$`,
      );
      assert.match(shown, want, `${command}: ${shown}`);
    }
    child.kill('SIGTERM');
    assert.is(await exited, 0, out);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await transport.close();
    await router.stop();
  }
});

test.run();
