// `hermod run --watch` recycling its worker on a real RabbitMQ node: after every `recycleAfter`
// reloads the worker holding the reloaded modules is handed over to a fresh process (it starts,
// consumes, then the old one drains and exits), under a steady call rate with no failed call.
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as assert from 'uvu/assert';
import { alive } from '../../scripts/rabbit-node.js';
import { RPCClient, Target } from '../../src/index.js';
import { sleep, until } from '../support/assert.js';
import { hermodRun, linesOf, type ProcSuiteCtx, procSuite, type Run } from '../support/ops-run.js';

const t = procSuite<Run>('hermod run --watch recycles its worker (RabbitMQ)', 'recycle');

t('recycleAfter 3: 10 reloads under load, a fresh pid after every 3rd, newest code after each, 0 failed calls', async (ctx) => {
  const version = (v: number) =>
    writeFileSync(
      path.join(ctx.dir, 'ep.js'),
      `export default { async v() { return [${v}, process.pid]; }, async slow(_c, { ms }) { await new Promise((r) => setTimeout(r, ms)); return [${v}, process.pid]; } };\n`,
    );
  version(1);
  const topic = `run-recycle-${process.pid}`;
  writeFileSync(
    path.join(ctx.dir, 'hermod.config.json'),
    JSON.stringify({
      config: { transportUrl: ctx.url, log: { level: 'info' } },
      watch: { debounceMs: 30, recycleAfter: 3 },
      services: { svc: { endpoints: './ep.js', topic, server: 'r' } },
    }),
  );
  const run = hermodRun([], ctx.dir);
  ctx.procs.push(run);
  const client = new RPCClient(ctx.transport, new Target({ topic }), { timeout: 10_000 });
  const seen: Array<[number, number]> = [];
  const failures: unknown[] = [];
  let stop = false;
  // Steady rate: 6 callers, each a call then 5 ms of pause; a slow call now and then is in
  // flight when a hand-over stops the old worker.
  const loop = async (i: number) => {
    let n = 0;
    while (!stop) {
      try {
        const slow = seen.length > 0 && i === 0 && n++ % 10 === 0;
        seen.push((await client.call({}, slow ? 'slow' : 'v', slow ? { ms: 300 } : {})) as [number, number]);
      } catch (err) {
        if (seen.length > 0) failures.push(err);
        else await sleep(100);
      }
      await sleep(5);
    }
  };
  const loops = Array.from({ length: 6 }, (_, i) => loop(i));
  const recycles = () => linesOf(run, (l) => l.event === 'worker-recycle');
  const pids: number[] = [];
  try {
    await until(() => seen.length > 0, `the first answer (${run.err})`, 20_000);
    pids.push(seen.at(-1)![1]);
    for (let v = 2; v <= 11; v++) {
      version(v);
      const reloads = v - 1;
      if (reloads % 3 === 0) {
        // The worker asks to be recycled; its replacement loads the newest code itself.
        await until(() => recycles().length === reloads / 3, `recycle ${reloads / 3} (${run.err})`, 20_000);
        const line = recycles().at(-1)!;
        assert.is(line.reloads, 3);
        assert.is(line.oldWorkerPid, pids.at(-1));
        assert.is.not(line.workerPid, line.oldWorkerPid);
        pids.push(line.workerPid as number);
        const mark = seen.length;
        await until(() => seen.slice(mark).some(([, pid]) => pid === line.workerPid), `pid ${line.workerPid} answering`, 10_000);
        await until(() => !alive(line.oldWorkerPid as number), `old pid ${line.oldWorkerPid} gone`, 10_000);
        const after = seen.length;
        await until(() => seen.length > after + 20, 'calls after the hand-over');
        assert.equal(
          seen.slice(after).filter(([cv, pid]) => cv !== v || pid !== line.workerPid),
          [],
          `after recycle ${reloads / 3}, every answer is version ${v} from pid ${line.workerPid}`,
        );
      } else {
        await until(() => seen.at(-1)?.[0] === v, `version ${v} answering`, 10_000);
        assert.is(seen.at(-1)![1], pids.at(-1), 'a reload keeps the pid');
      }
    }
  } finally {
    stop = true;
    await Promise.all(loops);
  }
  assert.equal(failures, [], 'no call failed across 10 reloads and 3 recycles');
  assert.is(new Set(pids).size, 4, `4 pids in turn: ${pids.join(', ')}`);
  assert.equal(
    recycles().map((l) => l.reloads),
    [3, 3, 3],
  );
  assert.is(linesOf(run, (l) => l.event === 'worker-crash' || l.event === 'recycle-failed').length, 0, 'a recycle is not a crash');
  assert.ok(seen.length > 200, `calls kept flowing (${seen.length})`);
  run.child.kill('SIGTERM');
  assert.is(await run.exited, 0, run.err);
  assert.is(linesOf(run, (l) => /^worker 1 stopped \(exit status 0\)$/.test(String(l.msg))).length, 1);
});

/**
 * A watched run of one service, recycled after every reload, whose module loads in the first
 * worker's pid and, in any other process where the JavaScript condition `hangs` holds, writes
 * the file `hanging` and hangs at its top level: a recycle's replacement that never consumes, while the old worker's reloads
 * succeed. Returns the run, a call, the first worker's pid and `version(v)`, which writes the code.
 */
async function hangingRun(ctx: ProcSuiteCtx<Run>, name: string, handOverTimeoutMs: number, hangs: string) {
  const version = (v: number) =>
    writeFileSync(
      path.join(ctx.dir, 'ep.js'),
      `import { existsSync, readFileSync, writeFileSync } from 'node:fs';
const f = new URL('./first-pid', import.meta.url);
if (!existsSync(f)) writeFileSync(f, String(process.pid));
else if (readFileSync(f, 'utf8') !== String(process.pid) && ${hangs}) {
  writeFileSync(new URL('./hanging', import.meta.url), String(process.pid));
  await new Promise(() => {});
}
export default { async v() { return [${v}, process.pid]; } };
`,
    );
  version(1);
  const topic = `run-${name}-${process.pid}`;
  writeFileSync(
    path.join(ctx.dir, 'hermod.config.json'),
    JSON.stringify({
      config: { transportUrl: ctx.url, log: { level: 'info' }, rpc: { stopTimeout: '1s' } },
      watch: { debounceMs: 30, recycleAfter: 1, handOverTimeoutMs },
      services: { svc: { endpoints: './ep.js', topic, server: name } },
    }),
  );
  const run = hermodRun([], ctx.dir);
  ctx.procs.push(run);
  const client = new RPCClient(ctx.transport, new Target({ topic }), { timeout: 5_000 });
  const call = () => client.call({}, 'v', {}) as Promise<[number, number]>;
  let first = 0;
  for (const end = Date.now() + 20_000; !first && Date.now() < end; await sleep(100)) first = (await call().catch(() => [0, 0]))[1];
  assert.ok(first, `the first answer (${run.err})`);
  return { run, call, first, version };
}

t('a replacement that never consumes is stopped after handOverTimeoutMs; the old worker serves on and asks again', async (ctx) => {
  // Every replacement hangs before it consumes.
  const { run, call, first, version } = await hangingRun(ctx, 'hang', 1500, 'true');
  const failed = () => linesOf(run, (l) => l.event === 'recycle-failed');
  for (const v of [2, 3]) {
    version(v);
    await until(() => failed().length === v - 1, `recycle-failed ${v - 1} (${run.err})`, 20_000);
    const line = failed().at(-1)!;
    assert.is(line.handOverTimeoutMs, 1500);
    assert.is.not(line.workerPid, first);
    await until(() => !alive(line.workerPid as number), `the stuck replacement ${line.workerPid} gone`, 20_000);
    assert.equal(await call(), [v, first], `version ${v} from the first worker`);
  }
  assert.is(linesOf(run, (l) => l.event === 'worker-recycle' || l.event === 'worker-crash').length, 0, run.err);
  run.child.kill('SIGTERM');
  assert.is(await run.exited, 0, run.err);
});

t('the old worker dies while its replacement hangs: the slot restarts at the hand-over deadline and serves again', async (ctx) => {
  // A replacement hangs while the file `hang` exists.
  const { run, call, first, version } = await hangingRun(ctx, 'promote', 3000, "existsSync(new URL('./hang', import.meta.url))");
  writeFileSync(path.join(ctx.dir, 'hang'), '');
  version(2);
  // The recycle's replacement started (and hangs); then the worker it was to replace dies.
  await until(() => existsSync(path.join(ctx.dir, 'hanging')), `a replacement hanging (${run.err})`, 40_000);
  process.kill(first, 'SIGKILL');
  await until(() => linesOf(run, (l) => l.event === 'worker-crash').length === 1, 'the crash told');
  rmSync(path.join(ctx.dir, 'hang'));
  // Made the slot's worker at once, the hung replacement served nothing for good.
  await until(
    () => linesOf(run, (l) => l.event === 'recycle-failed').length === 1,
    `recycle-failed (${JSON.stringify(run.lines.slice(-8).map((l) => l.msg))})`,
    20_000,
  );
  assert.match(String(linesOf(run, (l) => l.event === 'recycle-failed')[0]!.msg), /restarting the worker/);
  let answer: [number, number] | undefined;
  for (const end = Date.now() + 20_000; !answer && Date.now() < end; await sleep(100)) answer = await call().catch(() => undefined);
  assert.ok(answer, `an answer after the restart (${JSON.stringify(run.lines.slice(-6))})`);
  assert.is(answer![0], 2);
  assert.is.not(answer![1], first);
  run.child.kill('SIGTERM');
  assert.is(await run.exited, 0, run.err);
});

t(
  'a reload into a loop that blocks the event loop: the worker is killed at reloadTimeoutMs + 15 s and restarted, and serves again',
  async (ctx) => {
    // From a fuzzer: a save of `while (true) {}` wedged the worker for good, every call timing out,
    // no later save taken, nothing logged; only a SIGTERM ended the run.
    const topic = `run-wedge-${process.pid}`;
    const ep = path.join(ctx.dir, 'ep.js');
    writeFileSync(ep, 'export default { async v() { return [1, process.pid]; } };\n');
    writeFileSync(
      path.join(ctx.dir, 'hermod.config.json'),
      JSON.stringify({
        config: { transportUrl: ctx.url, log: { level: 'info' } },
        watch: { debounceMs: 30, reloadTimeoutMs: 1500 },
        services: { svc: { endpoints: './ep.js', topic, server: 'w' } },
      }),
    );
    const run = hermodRun([], ctx.dir);
    ctx.procs.push(run);
    const client = new RPCClient(ctx.transport, new Target({ topic }), { timeout: 3000 });
    let first: [number, number] | undefined;
    for (const end = Date.now() + 20_000; !first && Date.now() < end; await sleep(100))
      first = (await client.call({}, 'v', {}).catch(() => undefined)) as typeof first;
    assert.ok(first, `served (${run.err})`);
    // Blocks while the file `block` exists: the restarted worker loads the same module and serves.
    writeFileSync(path.join(ctx.dir, 'block'), '');
    writeFileSync(
      ep,
      "import { existsSync } from 'node:fs';\nwhile (existsSync(new URL('./block', import.meta.url))) {}\nexport default { async v() { return [2, process.pid]; } };\n",
    );
    await until(() => linesOf(run, (l) => l.event === 'worker-unresponsive').length === 1, `the wedged worker told (${run.err})`, 30_000);
    const told = linesOf(run, (l) => l.event === 'worker-unresponsive')[0]!;
    assert.is(told.workerPid, first![1]);
    assert.match(String(told.msg), /has not answered for 1[6-9] s .*killing it/);
    rmSync(path.join(ctx.dir, 'block'));
    let answer: [number, number] | undefined;
    for (const end = Date.now() + 20_000; !answer && Date.now() < end; await sleep(100))
      answer = (await client.call({}, 'v', {}).catch(() => undefined)) as typeof answer;
    assert.ok(answer, `an answer after the restart (${JSON.stringify(run.lines.slice(-6).map((l) => l.msg))})`);
    assert.is(answer![0], 2);
    assert.is.not(answer![1], first![1]);
    run.child.kill('SIGTERM');
    assert.is(await run.exited, 0, run.err);
  },
);

t.run();
