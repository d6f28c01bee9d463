#!/usr/bin/env node
// Runs the uvu suites under c8 and ends with the plain `N passed, N failed, N skipped` line CI
// reads. Arguments narrow the run: `npm test -- rpc` runs test files whose path matches /rpc/.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const filter = process.argv[2] ? `(${process.argv[2]}).*\\.test\\.js$` : '\\.test\\.js$';
const c8 = path.join(root, 'node_modules', 'c8', 'bin', 'c8.js');
const uvu = path.join(root, 'node_modules', 'uvu', 'bin.js');

// Suites live in three tiers: test/unit (pure logic), test/in-process (memory driver, embedded
// router on port 0) and test/integration (a real RabbitMQ node and Python peers). One throwaway
// RabbitMQ node serves the whole run (it takes 4-8 s to boot); suites isolate themselves with
// their own vhosts. It is started when the run selects an integration suite.
const { RabbitNode, rabbitAvailable } = await import(path.join(root, 'dist/scripts/rabbit-node.js'));
const { readdirSync } = await import('node:fs');
const selected = readdirSync(path.join(root, 'dist/test'), { recursive: true })
  .map(String)
  .filter((f) => new RegExp(filter).test(f));
if (selected.length === 0) {
  console.log(`no test file matches ${process.argv[2]}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const needsRabbit = selected.some((f) => f.startsWith(`integration${path.sep}`));
let rabbit;
if (needsRabbit && rabbitAvailable()) {
  const t0 = Date.now();
  rabbit = await RabbitNode.start({ name: 'hermod-test' });
  console.log(`RabbitMQ node ${rabbit.nodename} on 127.0.0.1:${rabbit.port} (booted in ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}
const stopRabbit = async () => {
  if (rabbit) {
    const r = rabbit;
    rabbit = undefined;
    await r.stop();
  }
};
// An interrupted run must not leave its RabbitMQ node behind.
for (const [sig, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
]) {
  process.on(sig, () => {
    stopRabbit().finally(() => process.exit(code));
  });
}

const child = spawn(process.execPath, [c8, process.execPath, uvu, 'dist/test', filter], {
  cwd: root,
  stdio: ['ignore', 'pipe', 'inherit'],
  env: {
    ...process.env,
    FORCE_COLOR: process.env.FORCE_COLOR ?? '0',
    ...(rabbit ? { RABBIT_TEST_NODE: JSON.stringify(rabbit.info) } : {}),
  },
});
let out = '';
let stuck;
let endedStuck = false;
child.stdout.on('data', (chunk) => {
  out += chunk;
  process.stdout.write(chunk);
  // uvu prints its totals when every suite has run. A test process still alive a minute later is
  // held open by a leaked handle (a timer, a socket): that is a failure of the run, and ending it
  // here keeps CI from hanging on it.
  if (!stuck && /Duration:\s+[\d.]+ms/.test(out)) {
    stuck = setTimeout(() => {
      console.log('\nFAIL the test process did not exit 60 s after its last suite: a leaked handle keeps it alive (counted as a failure)');
      endedStuck = true;
      child.kill('SIGTERM');
    }, 60_000);
    stuck.unref();
  }
});
child.on('close', async (code, signal) => {
  await stopRabbit();
  // eslint-disable-next-line no-control-regex
  // biome-ignore lint/suspicious/noControlCharactersInRegex: strips ANSI colour sequences (ESC [ ... m)
  const text = out.replace(/\x1b\[[0-9;]*m/g, '');
  const num = (re) => {
    const m = re.exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const total = num(/Total:\s+(\d+)/);
  const passed = num(/Passed:\s+(\d+)/);
  const skipped = num(/Skipped:\s+(\d+)/) ?? 0;
  if (total === undefined || passed === undefined) {
    console.log(`\nthe test run ended without a summary (exit ${code ?? signal})`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
  const failed = total - passed + (endedStuck ? 1 : 0);
  console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(failed > 0 || (code !== 0 && !endedStuck) ? 1 : 0);
});
