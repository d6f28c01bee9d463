import { writeFileSync } from 'node:fs';
import path from 'node:path';
import * as assert from 'uvu/assert';
import { alive } from '../../scripts/rabbit-node.js';
import { RPCClient, Target } from '../../src/index.js';
import { sleep, until } from '../support/assert.js';
import { hermodRun, type ProcSuiteCtx, procSuite, type Run } from '../support/ops-run.js';

const count = (run: Run, pred: (l: Record<string, unknown>) => boolean) => run.lines.filter(pred).length;

const t = procSuite<Run>('hermod run on RabbitMQ', 'run');
type Ctx = ProcSuiteCtx<Run>;

function runFile(ctx: Ctx, services: Record<string, unknown>): string {
  const file = path.join(ctx.dir, 'hermod.config.json');
  writeFileSync(file, JSON.stringify({ config: { transportUrl: ctx.url }, services }, null, 2));
  return file;
}

t('workers share the topic, keep their own names, restart after a kill, and SIGTERM drains them all (exit 0)', async (ctx) => {
  writeFileSync(
    path.join(ctx.dir, 'ep.js'),
    `export default (c) => ({
  async whoami() { return { server: c.server, worker: c.worker, pid: process.pid }; },
  async slow(_ctx, { ms }) { await new Promise((r) => setTimeout(r, ms)); return c.worker; },
  async mark() {},
});
`,
  );
  const topic = `run-w-${process.pid}`;
  const file = runFile(ctx, { work: { endpoints: './ep.js', topic, server: 'node', workers: 2 } });
  const run = hermodRun([], ctx.dir);
  ctx.procs.push(run);
  const serving = () => count(run, (l) => l.event === 'serving');
  await until(() => serving() === 2, `two workers serving (${run.err})`, 15_000);

  const client = new RPCClient(ctx.transport, new Target({ topic }), { timeout: 5000 });
  type Who = { server: string; worker: number; pid: number };
  const answers = await Promise.all(Array.from({ length: 40 }, () => client.call({}, 'whoami', {}) as Promise<Who>));
  const byWorker = new Map<number, number>();
  for (const a of answers) byWorker.set(a.worker, (byWorker.get(a.worker) ?? 0) + 1);
  assert.equal([...byWorker.keys()].sort(), [1, 2], 'both workers answered');
  assert.ok(Math.min(...byWorker.values()) >= 5, `load shared: ${JSON.stringify([...byWorker])}`);

  // Server-directed calls and fanout reach each worker by its own name.
  const one = (await client.prepare({ server: 'node-1' }).call({}, 'whoami', {})) as Who;
  const two = (await client.prepare({ server: 'node-2' }).call({}, 'whoami', {})) as Who;
  assert.equal([one.server, one.worker, two.server, two.worker], ['node-1', 1, 'node-2', 2]);
  await client.prepare({ fanout: true }).cast({ request_id: 'req-fanout-1' }, 'mark', {});
  await until(() => count(run, (l) => l.method === 'mark' && l.outcome === 'ok') === 2, 'the fanout cast on both workers');
  const mark = run.lines.find((l) => l.method === 'mark')!;
  for (const k of ['service', 'worker', 'topic', 'method', 'durationMs', 'outcome', 'requestId']) assert.ok(k in mark, `log field ${k}`);
  assert.is(mark.requestId, 'req-fanout-1');
  assert.is(mark.service, 'work');

  // A worker killed outright is logged and replaced under the same name, serving the run file
  // the primary read at start: not the one on disk now, half written by an editor.
  writeFileSync(file, '{ "config": { "transportUrl": "amqp://nowhere:1/" }, "services": { "work": { "endp');
  process.kill(one.pid, 'SIGKILL');
  await until(() => count(run, (l) => l.event === 'worker-crash') === 1, 'the crash logged');
  const crash = run.lines.find((l) => l.event === 'worker-crash')!;
  assert.is(crash.worker, 1);
  assert.is(crash.signal, 'SIGKILL');
  await until(() => serving() === 3, 'worker 1 serving again', 15_000);
  const again = (await client.prepare({ server: 'node-1' }).call({}, 'whoami', {})) as Who;
  assert.is(again.server, 'node-1');
  assert.is.not(again.pid, one.pid);

  // SIGTERM: calls already running finish, every worker stops, the runner exits 0.
  const slow = [client.call({}, 'slow', { ms: 700 }), client.call({}, 'slow', { ms: 700 })];
  await sleep(200);
  run.child.kill('SIGTERM');
  const results = await Promise.all(slow);
  assert.equal(results.sort(), [1, 2], 'the running calls finished on both workers');
  assert.is(await run.exited, 0, run.err);
  assert.is(
    count(run, (l) => /^worker \d stopped \(exit status 0\)$/.test(String(l.msg))),
    2,
  );
});

t('credentials the broker refuses, with workers: the run exits 5 as a single process does, not restarting workers forever', async (ctx) => {
  writeFileSync(path.join(ctx.dir, 'ep.js'), 'export default { async ping() { return 1; } };\n');
  const file = path.join(ctx.dir, 'hermod.config.json');
  const services = { work: { endpoints: './ep.js', topic: `run-c-${process.pid}`, server: 'node', workers: 2 } };
  writeFileSync(file, JSON.stringify({ config: { transportUrl: ctx.node.url(ctx.vhost, 'guest', 'not-the-password') }, services }));
  const single = hermodRun(['--workers', '1'], ctx.dir);
  ctx.procs.push(single);
  assert.is(await single.exited, 5, `${single.err}\n${JSON.stringify(single.lines)}`);
  const run = hermodRun([], ctx.dir);
  ctx.procs.push(run);
  // Workers were restarted forever (backoff capped at 10 s): a service manager saw it active.
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([run.exited, new Promise((r) => (timer = setTimeout(r, 30_000, 'still running')))]);
  clearTimeout(timer);
  assert.is(code, 5, `${run.err}\n${JSON.stringify(run.lines)}`);
  assert.ok(
    count(run, (l) => /exited \(status 5\) before any worker served; stopping/.test(String(l.msg))) >= 1,
    JSON.stringify(run.lines.filter((l) => l.level !== 'info')),
  );
  assert.is(
    count(run, (l) => /restarting in/.test(String(l.msg))),
    0,
    'no worker restarted',
  );
});

/**
 * Two workers of one service, each running a 1.5 s call: the run, the workers' pids and the two
 * calls' results (1 and 2, the workers' numbers), started 300 ms ago.
 */
async function twoBusyWorkers(ctx: Ctx, tag: string) {
  writeFileSync(
    path.join(ctx.dir, 'ep.js'),
    `export default (c) => ({
  async whoami() { return { worker: c.worker, pid: process.pid }; },
  async slow(_ctx, { ms }) { await new Promise((r) => setTimeout(r, ms)); return c.worker; },
});
`,
  );
  const topic = `run-${tag}-${process.pid}`;
  runFile(ctx, { work: { endpoints: './ep.js', topic, server: 'node', workers: 2 } });
  const run = hermodRun([], ctx.dir);
  ctx.procs.push(run);
  await until(() => count(run, (l) => l.event === 'serving') === 2, `two workers serving (${run.err})`, 15_000);
  const client = new RPCClient(ctx.transport, new Target({ topic }), { timeout: 10_000 });
  const pids = await Promise.all(
    ['node-1', 'node-2'].map(async (server) => ((await client.prepare({ server }).call({}, 'whoami', {})) as { pid: number }).pid),
  );
  const slow = Promise.all(['node-1', 'node-2'].map((server) => client.prepare({ server }).call({}, 'slow', { ms: 1500 })));
  slow.catch(() => {});
  await sleep(300);
  return { run, pids, slow };
}

t('a killed primary: each worker finishes the call it runs, then exits', async (ctx) => {
  const { run, pids, slow } = await twoBusyWorkers(ctx, 'k');
  run.child.kill('SIGKILL');
  assert.equal((await slow).sort(), [1, 2], 'both running calls answered after the primary died');
  await until(() => !pids.some(alive), 'both workers gone', 10_000);
  assert.is(
    count(run, (l) => /the primary is gone/.test(String(l.msg))),
    2,
    'each worker said why it stopped',
  );
});

t('Ctrl-C (SIGINT to the primary and each worker, as a terminal sends it): the workers drain, nothing aborted', async (ctx) => {
  const { run, pids, slow } = await twoBusyWorkers(ctx, 'i');
  // The group's signal reaches a worker after the primary's stop request here (the order a busy
  // machine can give): taken as a second signal, it aborted the calls.
  run.child.kill('SIGINT');
  await until(() => count(run, (l) => /^asked by the primary/.test(String(l.msg))) === 2, 'both workers asked to stop', 5000);
  for (const pid of pids) process.kill(pid, 'SIGINT');
  assert.equal((await slow).sort(), [1, 2], 'both running calls answered');
  assert.is(await run.exited, 0, run.err);
  assert.is(
    count(run, (l) => /again/.test(String(l.msg))),
    0,
    JSON.stringify(run.lines.filter((l) => /again/.test(String(l.msg)))),
  );
});

t('Ctrl-C to the whole process group while the workers still load: they stop, the run exits 0', async (ctx) => {
  writeFileSync(path.join(ctx.dir, 'ep.js'), 'export default { async ping() { return 1; } };\n');
  runFile(ctx, { work: { endpoints: './ep.js', topic: `run-g-${process.pid}`, server: 'node', workers: 2 } });
  const run = hermodRun([], ctx.dir, { group: true });
  ctx.procs.push(run);
  try {
    // The primary forks at this line; its workers then load their modules for a while.
    await until(() => count(run, (l) => /^starting 2 workers/.test(String(l.msg))) === 1, `the primary forking (${run.err})`, 15_000);
    // A terminal's Ctrl-C: every process of the group. A worker that died of it (Node's default
    // action, before its handlers) made the run exit 7 although nothing was cut.
    process.kill(-run.child.pid!, 'SIGINT');
    assert.is(await run.exited, 0, `${run.err}\n${JSON.stringify(run.lines)}`);
    assert.is(
      count(run, (l) => /SIGINT|signal/.test(String(l.msg)) && l.level === 'warn'),
      0,
      JSON.stringify(run.lines),
    );
  } finally {
    try {
      process.kill(-run.child.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

t('the output closed (| head): the workers stop and the run exits 0, no worker taken for crashed', async (ctx) => {
  writeFileSync(path.join(ctx.dir, 'ep.js'), 'export default { async ping() { return process.pid; } };\n');
  const topic = `run-o-${process.pid}`;
  runFile(ctx, { work: { endpoints: './ep.js', topic, server: 'node', workers: 2 } });
  const run = hermodRun([], ctx.dir);
  ctx.procs.push(run);
  await until(() => count(run, (l) => l.event === 'serving') === 2, `two workers serving (${run.err})`, 15_000);
  // The reader goes away, as `hermod run | head -3` does: the next line a worker logs fails.
  run.child.stdout!.destroy();
  const client = new RPCClient(ctx.transport, new Target({ topic }), { timeout: 5000 });
  const pids = new Set(await Promise.all(Array.from({ length: 20 }, () => client.call({}, 'ping', {}) as Promise<number>)));
  // Each worker stopped gracefully on EPIPE; the primary took that for a crash and forked it
  // again (the run ended only because the primary's own next info line failed too).
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([run.exited, new Promise((r) => (timer = setTimeout(r, 20_000, 'still running')))]);
  clearTimeout(timer);
  assert.is(code, 0, run.err);
  // Lines of warn and above still arrive (stderr): a crash would be told there.
  assert.is(
    count(run, (l) => l.event === 'worker-crash'),
    0,
    JSON.stringify(run.lines.filter((l) => l.level !== 'info')),
  );
  await until(() => ![...pids].some(alive), 'the workers gone', 10_000);
});

t('--watch under load through the runner: 0 failed calls, a broken module keeps the old code, the fixed one loads', async (ctx) => {
  const write = (body: string) => writeFileSync(path.join(ctx.dir, 'ep.js'), body);
  const version = (v: number) => write(`export default { async v() { return ${v}; } };\n`);
  version(1);
  const topic = `run-r-${process.pid}`;
  runFile(ctx, { svc: { endpoints: ['./ep.js'], topic, server: 'r' } });
  const run = hermodRun(['--watch', '--config', 'log.level=warn'], ctx.dir);
  ctx.procs.push(run);
  // log.level=warn keeps the request lines out; the loops below wait for the first answer.
  const client = new RPCClient(ctx.transport, new Target({ topic }), { timeout: 5000 });
  const seen: number[] = [];
  const failures: unknown[] = [];
  let stop = false;
  const loop = async () => {
    while (!stop) {
      try {
        seen.push((await client.call({}, 'v', {})) as number);
      } catch (err) {
        if (seen.length > 0) failures.push(err);
        else await sleep(100);
      }
    }
  };
  const loops = Array.from({ length: 6 }, loop);
  try {
    await until(() => seen.length > 0, 'the first answer', 15_000);
    for (let v = 2; v <= 5; v++) {
      version(v);
      await until(() => seen.at(-1) === v, `version ${v} answering`, 5000);
    }
    write('export default { async v() { return 6; } };\nexport const oops = ;\n');
    await until(() => count(run, (l) => l.event === 'reload-failed') === 1, 'the failed reload logged');
    const failed = run.lines.find((l) => l.event === 'reload-failed')!;
    assert.is(failed.file, `${path.join(ctx.dir, 'ep.js')}:2`);
    assert.is(failed.service, 'svc');
    const n = seen.length;
    await until(() => seen.length > n + 20, 'calls still answered');
    assert.is(seen.at(-1), 5, 'the old code still serves');
    version(7);
    await until(() => seen.at(-1) === 7, 'the fixed module serving', 5000);
  } finally {
    // A failed step must not leave the loops calling (they would spin once the transport closes).
    stop = true;
    await Promise.all(loops);
  }
  assert.equal(failures, [], 'no call failed');
  assert.ok(seen.length > 100, `calls kept flowing (${seen.length})`);
  run.child.kill('SIGTERM');
  assert.is(await run.exited, 0, run.err);
});

t.run();
