import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

// `npm run demo` is the first command of the README: it must run to the end on a fresh machine.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const t = suite('demo');

t('npm run demo runs router, servers and client to the end and exits 0', () => {
  // As a user's pipe: uvu run directly sets FORCE_COLOR, which would colour console.log's objects.
  const env = { ...process.env };
  delete env.FORCE_COLOR;
  const run = spawnSync(process.execPath, [path.join(root, 'dist/bin/demo.js')], { cwd: root, encoding: 'utf8', timeout: 60_000, env });
  assert.is(run.status, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /result after [\d.]+ s/);
  // The fanout cast reached both servers, and the demo shows it (a cast has no reply to print).
  assert.match(
    run.stdout,
    /▶ fanout cast[^\n]*\n {4}alpha received it: calls served \d+ → \d+\n {4}beta received it: calls served \d+ → \d+\n/,
  );
  // One job from start to result: its token, progress lines in order, the result.
  const job = run.stdout.slice(run.stdout.indexOf('▶ start resize'));
  assert.match(job, /^ {4}token: job [0-9a-f]{8}… on server (alpha|beta) /m, run.stdout);
  const steps = [...job.matchAll(/^ {4}(pending|running|succeeded)( \d+%)?( step (\d) of 4)?$/gm)].map((m) => m[0].trim());
  assert.ok(steps.length >= 3, `progress lines: ${JSON.stringify(steps)}`);
  assert.match(steps.find((l) => l.startsWith('running') && l.includes('%')) ?? '', /^running \d+% step [1-3] of 4$/);
  assert.is(steps.at(-1), 'succeeded 100% step 4 of 4');
  const fractions = steps.map((l) => Number(/(\d+)%/.exec(l)?.[1] ?? 0));
  assert.equal(
    fractions,
    [...fractions].sort((a, b) => a - b),
    'progress only grows',
  );
  const took = /^ {4}result after ([\d.]+) s: \{ image: 'cat\.png', size: '1024x768', server: '(alpha|beta)' \}$/m.exec(job);
  assert.ok(took, job);
  assert.ok(Number(took[1]) >= 2, 'the job took its 2 s');
  // A pipe: no escape codes anywhere (bold, colours, line rewrites).
  assert.ok(!run.stdout.includes('\x1b'), 'no escape codes');
  assert.match(run.stdout, /all stopped/);
});

t('the demo shows hermod run with two workers sharing the calls and one scrape summing them, without escape codes', () => {
  // NO_COLOR and a pipe: plain text only.
  const run = spawnSync(process.execPath, [path.join(root, 'dist/bin/demo.js')], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, NO_COLOR: '1' },
  });
  assert.is(run.status, 0, run.stdout + run.stderr);
  assert.not.ok(run.stdout.includes('\u001b['), 'no escape codes');
  assert.match(run.stdout, /\[hermod run\] worker 1 started/);
  assert.match(run.stdout, /\[hermod run\] worker 2 started/);
  const spread = /answered by calc-1 × (\d+), calc-2 × (\d+)/.exec(run.stdout);
  assert.ok(spread, `both workers answered:\n${run.stdout}`);
  assert.is(Number(spread[1]) + Number(spread[2]), 20);
  const scraped = [...run.stdout.matchAll(/oslo_messaging_rpc_server_invocation_end_total\{[^}]*server="(calc-[12])"[^}]*\} (\d+)/g)];
  assert.equal(
    scraped.map((m) => `${m[1]} ${m[2]}`),
    [`calc-1 ${spread[1]}`, `calc-2 ${spread[2]}`],
    'the scrape counts what each worker answered',
  );
  assert.match(run.stdout, /20 calls counted over both workers in one scrape/);
  assert.match(run.stdout, /hermod run exited with status 0/);
});

t.run();
