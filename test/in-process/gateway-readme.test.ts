// The README's Gateway walkthrough, run as written: its key lines in bash, its gateway file, the
// rpc-server and hermod-gateway CLIs, and every curl line of its REST and JSON-RPC examples,
// each answer matched against the comment under it ("…" matches anything, "(NNN)" is the status).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Router } from '../../src/router/router.js';
import { until } from '../support/assert.js';
import { type CliProc, startCli } from '../support/cli-procs.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const readme = readFileSync(path.join(root, 'README.md'), 'utf8');

function block(tag: string): string {
  const m = new RegExp(`<!-- readme-example: ${tag} -->\\s*\`\`\`\\w+\\n([\\s\\S]*?)\`\`\``).exec(readme);
  assert.ok(m, `README has the marked ${tag} block`);
  return m![1]!;
}

interface Example {
  command: string;
  expected?: string;
  status: number;
}

/** The curl commands of a block, each with the comment that follows it (or ends its line). */
function examples(text: string): Example[] {
  const out: Example[] = [];
  let current: { command: string[]; expected: string[] } | undefined;
  const finish = () => {
    if (!current) return;
    let expected = current.expected.map((l) => l.trim()).join('');
    let status = 200;
    const st = /\s*\((\d{3})\)$/.exec(expected);
    if (st) {
      status = Number(st[1]);
      expected = expected.slice(0, st.index);
    }
    out.push({ command: current.command.join('\n'), status, ...(expected ? { expected } : {}) });
    current = undefined;
  };
  for (const line of text.split('\n')) {
    if (line.startsWith('curl ')) {
      finish();
      const inline = /^(.*?)\s+# (.*)$/.exec(line);
      current = { command: [inline ? inline[1]! : line], expected: inline ? [inline[2]!] : [] };
    } else if (line.startsWith('#')) current?.expected.push(line.replace(/^#\s?/, ''));
    else if (line.trim() !== '') current?.command.push(line);
  }
  finish();
  return out;
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const pattern = (s: string) => new RegExp(`^${s.split('…').map(escapeRe).join('.*')}$`);

/** Matches an answer against the README's comment; a batch's members in any order (they come in completion order). */
function matches(body: string, expected: string): string | undefined {
  if (!expected.startsWith('[')) return pattern(expected).test(body) ? undefined : `${body} does not match ${expected}`;
  const members = expected
    .slice(1, -1)
    .split(/(?<=\}),(?=\{"jsonrpc")/)
    .map(pattern);
  const got = (JSON.parse(body) as unknown[]).map((x) => JSON.stringify(x));
  if (got.length !== members.length) return `${got.length} answers, the README shows ${members.length}: ${body}`;
  for (const m of members) {
    const i = got.findIndex((g) => m.test(g));
    if (i < 0) return `no answer matches ${m}: ${body}`;
    got.splice(i, 1);
  }
  return undefined;
}

/** Runs a bash command to its end, at most 15 s. */
function sh(command: string, env: NodeJS.ProcessEnv): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', command], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

const t = suite('README: Gateway');

t('the walkthrough runs as written: keys file, gateway file, every curl example and its answer', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hermod-readme-gw-'));
  const router = new Router({ port: 0 });
  const url = `amqp://127.0.0.1:${await router.start()}/`;
  const procs: CliProc[] = [];
  try {
    // The key lines of the start block, in bash, in the directory of the gateway file.
    const start = block('gateway-start');
    const keyLines = start.split('\n').filter((l) => /^KEY=|^printf .*> keys\.json$/.test(l));
    assert.is(keyLines.length, 2, 'the KEY and keys.json lines');
    const keys = spawnSync('bash', ['-c', `set -euo pipefail\n${keyLines.join('\n')}\nprintf %s "$KEY"`], { cwd: dir, encoding: 'utf8' });
    assert.is(keys.status, 0, keys.stderr);
    const KEY = keys.stdout;
    assert.match(KEY, /^[0-9a-f]{64}$/);
    assert.match(start, /^npx rpc-server alpha --topic demo &$/m);
    assert.match(start, /^npx hermod-gateway --config-file gw.json &/m);
    writeFileSync(path.join(dir, 'gw.json'), block('gateway-file'));

    const server = startCli('rpc-server', ['alpha', '--topic', 'demo', '--transport-url', url], { cwd: dir });
    procs.push(server);
    await until(() => /serving topic demo/.test(server.out), `rpc-server serving (${server.out}${server.err})`, 15_000);
    // Started from elsewhere: the file's relative keysFile is read next to it.
    const gw = startCli('hermod-gateway', ['--config-file', path.join(dir, 'gw.json'), '--port', '0', '--transport-url', url], {
      cwd: tmpdir(),
    });
    procs.push(gw);
    await until(() => /listening on http:\/\/127\.0\.0\.1:\d+/.test(gw.out), `the gateway listening (${gw.out}${gw.err})`, 15_000);
    const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(gw.out)![1]!;

    const all = [...examples(block('gateway-rest')), ...examples(block('gateway-jsonrpc'))];
    assert.is(all.length, 8, 'six REST and two JSON-RPC examples');
    /** Runs one example against the gateway, checks its status and answer, and returns the answer. */
    const run = async (ex: Example, env: NodeJS.ProcessEnv) => {
      const command = `${ex.command.replaceAll('localhost:8080', `127.0.0.1:${port}`)} -w '\\n%{http_code}'`;
      // Not spawnSync: the router runs in this process and must keep answering meanwhile.
      const out = await sh(command, { ...process.env, ...env });
      assert.is(out.status, 0, `${ex.command}: ${out.stderr}`);
      const nl = out.stdout.lastIndexOf('\n');
      const body = out.stdout.slice(0, nl);
      const status = Number(out.stdout.slice(nl + 1));
      assert.is(status, ex.status, `${ex.command} → ${status} ${body}`);
      if (ex.expected !== undefined) {
        const wrong = matches(body, ex.expected);
        assert.not.ok(wrong, `${ex.command}\n${wrong}`);
      }
      return body;
    };
    for (const ex of all) await run(ex, { KEY });
    // Jobs over HTTP: the start's "job" becomes $JOB for the commands after it.
    const jobs = examples(
      block('gateway-jobs')
        .split('\n')
        .filter((l) => !l.startsWith('JOB='))
        .join('\n'),
    );
    assert.is(jobs.length, 4, 'start, poll, wait, cancel');
    let JOB = '';
    for (const ex of jobs) {
      const body = await run(ex, { KEY, JOB });
      JOB ||= JSON.parse(body).job;
    }
    assert.match(JOB, /^[A-Za-z0-9_-]{100,}$/);
    // Without the key: refused, as the README's keys file makes every API route need one.
    const anon = await sh(`curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:${port}/add/2/40`, process.env);
    assert.is(anon.stdout, '401');
    gw.child.kill('SIGTERM');
    assert.is(await gw.exited, 0, gw.err);
  } finally {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGTERM');
    await Promise.all(procs.map((p) => p.exited));
    await router.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

t.run();
