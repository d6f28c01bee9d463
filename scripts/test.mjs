#!/usr/bin/env node
// Runs the uvu suites, one process per test file, several at a time, and ends with the plain
// `N passed, N failed, N skipped` line CI reads. Arguments narrow the run: `npm test -- rpc` runs
// test files whose path matches /rpc/.
//
// TEST_JOBS sets how many files run at once (default: twice the cores, see jobsDefault). Most
// of the suites' wall time is waiting (RabbitMQ round trips, Python peers, timeouts under test),
// so a 2-core machine runs four at a time. Files in SERIAL run alone, first, with nothing beside
// them. Each file's output is printed whole when it ends, so files never interleave.
// TEST_COVERAGE=0 skips the c8 coverage summary.
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const filter = process.argv[2] ? new RegExp(`(${process.argv[2]}).*\\.test\\.js$`) : /\.test\.js$/;
const c8 = path.join(root, 'node_modules', 'c8', 'bin', 'c8.js');
const uvu = path.join(root, 'node_modules', 'uvu', 'bin.js');
const lingerReport = pathToFileURL(path.join(root, 'scripts', 'linger-report.mjs')).href;

// Files that must run with no other file beside them. faults and shutdown-race start RabbitMQ
// nodes of their own, kill -9 them, restart them and raise memory alarms on them, and assert
// how fast hermod notices and recovers (reconnects, stop deadlines): with other suites' CPU use
// beside them those bounds measure the neighbours, not hermod.
const SERIAL = [/^integration[\\/]faults\.test\.js$/, /^integration[\\/]shutdown-race\.test\.js$/];

// Measured wall and CPU seconds per file (scripts/test-times.json, `[wall, cpu]`, refreshed with
// TEST_TIMES_OUT=path): the longest files start first so the run does not end waiting on one long
// file. A file not listed gets a guess from its tier.
const times = (() => {
  try {
    return JSON.parse(readFileSync(path.join(root, 'scripts', 'test-times.json'), 'utf8'));
  } catch {
    return {};
  }
})();
const tierGuess = { integration: 20, 'in-process': 5, unit: 1 };
const timesOf = (f) => {
  const t = times[f.split(path.sep).join('/')];
  return Array.isArray(t) ? t : typeof t === 'number' ? [t, undefined] : [undefined, undefined];
};
const weight = (f) => timesOf(f)[0] ?? tierGuess[f.split(path.sep)[0]] ?? 5;
// Files that mostly wait (deadlines, idle timeouts, jobs' polling under test: under a fifth of a
// core over at least 15 s) may also run in slots of their own beside the TEST_JOBS ones
// (TEST_SLEEPER_JOBS, default half as many): they add little load, and in the shared slots they
// held a quarter of the run's wall time on a 2-core machine.
const sleeper = (f) => {
  const [wall, cpu] = timesOf(f);
  return wall !== undefined && cpu != null && wall >= 15 && cpu / wall < 0.2;
};

// How long a file's process may stay alive after uvu's totals before it counts as a leaked
// handle (TEST_LINGER_MS to change it).
const LINGER_MS = Number.parseInt(process.env.TEST_LINGER_MS ?? '', 10) || 15_000;
const jobsDefault = () => 2 * (os.availableParallelism?.() ?? os.cpus().length);
const jobs = Math.max(1, Number.parseInt(process.env.TEST_JOBS ?? '', 10) || jobsDefault());
const sleeperJobsSet = Number.parseInt(process.env.TEST_SLEEPER_JOBS ?? '', 10);
const sleeperJobs = Number.isNaN(sleeperJobsSet) ? Math.floor(jobs / 2) : Math.max(0, sleeperJobsSet);
const coverage = process.env.TEST_COVERAGE !== '0';

// Suites live in three tiers: test/unit (pure logic), test/in-process (memory driver, embedded
// router on port 0) and test/integration (a real RabbitMQ node and Python peers). One throwaway
// RabbitMQ node serves the whole run (it takes 4-8 s to boot); suites isolate themselves with
// their own vhosts and names. It is started when the run selects an integration suite.
const { RabbitNode, rabbitAvailable } = await import(path.join(root, 'dist/scripts/rabbit-node.js'));
const selected = readdirSync(path.join(root, 'dist/test'), { recursive: true })
  .map(String)
  .filter((f) => filter.test(f));
if (selected.length === 0) {
  console.log(`no test file matches ${process.argv[2]}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const needsRabbit = selected.some((f) => f.startsWith(`integration${path.sep}`));
let rabbit;
const children = new Set();
const stopRabbit = async () => {
  if (rabbit) {
    const r = rabbit;
    rabbit = undefined;
    await r.stop();
  }
};
// An interrupted run must not leave its RabbitMQ node or its test processes behind.
for (const [sig, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
]) {
  process.on(sig, () => {
    for (const c of children) c.kill('SIGTERM');
    stopRabbit().finally(() => process.exit(code));
  });
}
if (needsRabbit && rabbitAvailable()) {
  const t0 = Date.now();
  rabbit = await RabbitNode.start({ name: 'hermod-test', management: true });
  console.log(`RabbitMQ node ${rabbit.nodename} on 127.0.0.1:${rabbit.port} (booted in ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}

// Every test process (and every process it starts) writes V8 coverage here; c8 reports on the
// lot at the end, as `c8 uvu` did for the single process it used to run.
const covDir = path.join(root, 'coverage', 'tmp');
if (coverage) {
  rmSync(covDir, { recursive: true, force: true });
  mkdirSync(covDir, { recursive: true });
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: strips ANSI colour sequences (ESC [ ... m)
const plain = (s) => s.replace(/\x1b\[[0-9;]*m/g, '');
const reEscape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// CPU seconds of every process the run started and reaped (test files, the CLIs and peers they
// ran, the RabbitMQ node): on Linux, the cutime and cstime fields of /proc/self/stat (in
// 1/100 s). Unlike wall time it hardly depends on what else loads the machine.
const childCpu = () => {
  try {
    const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
    return (Number(f[13]) + Number(f[14])) / 100;
  } catch {
    return undefined;
  }
};
// A file's CPU is what the run's reaped-children counter grew by when that file's process was
// reaped: the process reaps its own children (CLIs, peers) before it exits, so they count too.
let cpuSeen = childCpu() ?? 0;

/** Runs one test file in its own uvu process; resolves with its counts and its output. */
function runFile(file) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    // Colour only on a terminal: CI logs stay plain text.
    const args = ['--import', lingerReport, uvu, 'dist/test', `^${reEscape(file)}$`, ...(process.stdout.isTTY ? [] : ['--no-color'])];
    const child = spawn(process.execPath, args, {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        FORCE_COLOR: process.env.FORCE_COLOR ?? '0',
        ...(coverage ? { NODE_V8_COVERAGE: covDir } : {}),
        ...(rabbit ? { RABBIT_TEST_NODE: JSON.stringify(rabbit.info) } : {}),
      },
    });
    children.add(child);
    let out = '';
    let stuck;
    let endedStuck = false;
    let doneAt;
    const onData = (chunk) => {
      out += chunk;
      // uvu prints its totals when every suite of the file has run. A process still alive
      // LINGER_MS later is held open by a leaked handle (a timer, a socket): that is a failure,
      // and ending it here keeps CI from hanging on it. A file's own teardown has run by then,
      // so its process exits within a second or so.
      if (!stuck && /Duration:\s+[\d.]+m?s/.test(plain(out))) {
        doneAt = Date.now();
        stuck = setTimeout(() => {
          out += `\nFAIL the test process did not exit ${LINGER_MS / 1000} s after its last suite: a leaked handle keeps it alive (counted as a failure)\n`;
          endedStuck = true;
          // scripts/linger-report.mjs prints what is still alive (sockets, timers and where they
          // were made) on SIGUSR2; its output lands in `out` before the SIGTERM ends the process.
          child.kill('SIGUSR2');
          stuck = setTimeout(() => child.kill('SIGTERM'), 1000);
        }, LINGER_MS);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    let cpu;
    child.on('exit', () => {
      const now = childCpu();
      if (now !== undefined) {
        cpu = now - cpuSeen;
        cpuSeen = now;
      }
    });
    child.on('close', (code, signal) => {
      clearTimeout(stuck);
      children.delete(child);
      const text = plain(out);
      const num = (re) => {
        const m = re.exec(text);
        return m ? Number(m[1]) : undefined;
      };
      const total = num(/Total:\s+(\d+)/);
      const passed = num(/Passed:\s+(\d+)/);
      const skipped = num(/Skipped:\s+(\d+)/) ?? 0;
      const linger = doneAt === undefined ? undefined : (Date.now() - doneAt) / 1000;
      const r = { file, out, seconds: (Date.now() - t0) / 1000, cpu, linger, passed: passed ?? 0, skipped, failed: 0 };
      if (total === undefined || passed === undefined) {
        r.out += `\nFAIL ${file} ended without a summary (exit ${code ?? signal})\n`;
        r.failed = 1;
      } else {
        r.failed = total - passed + (endedStuck ? 1 : 0);
        if (r.failed === 0 && code !== 0 && !endedStuck) {
          r.out += `\nFAIL ${file} exited ${code ?? signal} after its suites passed\n`;
          r.failed = 1;
        }
      }
      resolve(r);
    });
  });
}

const results = [];
const report = (r) => {
  results.push(r);
  const status = r.failed ? `FAILED (${r.failed})` : 'ok';
  process.stdout.write(
    `\n── ${r.file.split(path.sep).join('/')}: ${status}, ${r.seconds.toFixed(1)} s${r.cpu === undefined ? '' : `, ${r.cpu.toFixed(1)} s CPU`}${r.linger > 2 ? `, exited ${r.linger.toFixed(1)} s after its last suite` : ''}\n${r.out.replace(/\s+$/, '')}\n`,
  );
};

const t0 = Date.now();
const byWeight = (a, b) => weight(b) - weight(a) || a.localeCompare(b);
const serial = selected.filter((f) => SERIAL.some((re) => re.test(f))).sort(byWeight);
const queue = selected.filter((f) => !serial.includes(f)).sort(byWeight);
for (const f of serial) report(await runFile(f));
const nextSleeper = () => {
  const i = queue.findIndex(sleeper);
  return i === -1 ? undefined : queue.splice(i, 1)[0];
};
await Promise.all([
  ...Array.from({ length: Math.min(jobs, queue.length) }, async () => {
    for (let f = queue.shift(); f !== undefined; f = queue.shift()) report(await runFile(f));
  }),
  ...Array.from({ length: Math.min(sleeperJobs, queue.filter(sleeper).length) }, async () => {
    for (let f = nextSleeper(); f !== undefined; f = nextSleeper()) report(await runFile(f));
  }),
]);
const wall = (Date.now() - t0) / 1000;
await stopRabbit();

if (coverage) {
  await new Promise((resolve) => {
    const c = spawn(process.execPath, [c8, 'report', '--temp-directory', covDir], { cwd: root, stdio: 'inherit' });
    c.on('close', resolve);
  });
}

const sum = (k) => results.reduce((n, r) => n + r[k], 0);
const cpu = childCpu();
const slowest = [...results].sort((a, b) => b.seconds - a.seconds).slice(0, 8);
const hungriest = [...results]
  .filter((r) => r.cpu !== undefined)
  .sort((a, b) => b.cpu - a.cpu)
  .slice(0, 8);
console.log(
  `\n${results.length} files in ${wall.toFixed(1)} s with ${jobs} at a time and ${sleeperJobs} more for waiting files (${serial.length} alone first)${
    cpu === undefined ? '' : `, ${cpu.toFixed(0)} s of CPU`
  }; slowest: ${slowest.map((r) => `${r.file.split(path.sep).join('/')} ${r.seconds.toFixed(0)} s`).join(', ')}${
    hungriest.length ? `; most CPU: ${hungriest.map((r) => `${r.file.split(path.sep).join('/')} ${r.cpu.toFixed(0)} s`).join(', ')}` : ''
  }`,
);
if (process.env.TEST_TIMES_OUT) {
  const { writeFileSync } = await import('node:fs');
  // One file a line, as the formatter keeps it.
  const lines = [...results]
    .sort((a, b) => b.seconds - a.seconds)
    .map(
      (r) =>
        `  ${JSON.stringify(r.file.split(path.sep).join('/'))}: [${r.seconds.toFixed(1)}, ${r.cpu === undefined ? 'null' : r.cpu.toFixed(1)}]`,
    );
  writeFileSync(process.env.TEST_TIMES_OUT, `{\n${lines.join(',\n')}\n}\n`);
}
const failedFiles = results.filter((r) => r.failed).map((r) => r.file.split(path.sep).join('/'));
if (failedFiles.length) console.log(`failed in: ${failedFiles.join(', ')}`);
const failed = sum('failed');
const skipped = sum('skipped');
console.log(`\n${sum('passed')} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 ? 1 : 0);
