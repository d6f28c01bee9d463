// Real processes on a real RabbitMQ node: `hermod run --workers 2 --metrics-port 0` serves one
// scrape in the primary that sums both workers' metrics; `hermod status --json` (a process too)
// sees the servers of `hermod run` (beacons on in the run file) and of `rpc-server --beacon`
// appear, get busy and disappear when they stop.
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as assert from 'uvu/assert';
import { RPCClient, Target } from '../../src/index.js';
import type { PresenceRow } from '../../src/ops/status/index.js';
import { until } from '../support/assert.js';
import { procSuite } from '../support/ops-run.js';
import { samples, scrape } from '../support/prometheus.js';

const bin = (name: string) => path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', `${name}.js`);

interface Proc {
  child: ChildProcess;
  /** stdout lines that parsed as JSON. */
  json: Array<Record<string, unknown>>;
  text: string;
  exited: Promise<number | null>;
}

function start(name: string, args: string[], cwd: string): Proc {
  const child = spawn(process.execPath, [bin(name), ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = { child, json: [], text: '', exited: new Promise((r) => child.once('exit', (code) => r(code))) };
  let buf = '';
  const take = (d: Buffer) => {
    p.text += d;
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        p.json.push(JSON.parse(line) as Record<string, unknown>);
      } catch {}
    }
  };
  child.stdout!.on('data', take);
  child.stderr!.on('data', (d: Buffer) => {
    p.text += d;
  });
  return p;
}

/** The servers of the status view's latest refresh. */
function latest(status: Proc): PresenceRow[] {
  const last = status.json.filter((l) => Array.isArray(l.servers)).at(-1);
  return (last?.servers as PresenceRow[] | undefined) ?? [];
}
const row = (status: Proc, name: string) => latest(status).find((r) => r.name === name);

const t = procSuite<Proc>('hermod run metrics and status, real processes', 'observe', (dir) =>
  writeFileSync(path.join(dir, 'ep.js'), 'export default (c) => ({ async whoami() { return c.server; } });\n'),
);

t('hermod run --workers 2 --metrics-port: one scrape in the primary sums both workers', async (ctx) => {
  const topic = `obs-m-${process.pid}`;
  writeFileSync(
    path.join(ctx.dir, 'hermod.config.json'),
    JSON.stringify({ config: { transportUrl: ctx.url }, services: { calc: { endpoints: './ep.js', topic, server: 'calc' } } }),
  );
  const run = start('hermod', ['run', '--workers', '2', '--metrics-port', '0'], ctx.dir);
  ctx.procs.push(run);
  await until(() => run.json.filter((l) => l.event === 'serving').length === 2, `two workers serving (${run.text})`, 15_000);
  const url = String(run.json.find((l) => l.event === 'metrics')?.url);
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);

  const client = new RPCClient(ctx.transport, new Target({ topic }), { timeout: 5000 });
  const answers = await Promise.all(Array.from({ length: 40 }, () => client.call({}, 'whoami', {}) as Promise<string>));
  const perServer = new Map<string, number>();
  for (const a of answers) perServer.set(a, (perServer.get(a) ?? 0) + 1);
  assert.equal([...perServer.keys()].sort(), ['calc-1', 'calc-2'], 'both workers answered');

  const text = await scrape(url);
  const ends = samples(text).filter((s) => s.name === 'oslo_messaging_rpc_server_invocation_end_total' && s.labels.topic === topic);
  const byServer = Object.fromEntries(ends.map((s) => [s.labels.server, s.value]));
  assert.equal(byServer, Object.fromEntries(perServer), 'each worker counted its own calls, in one scrape');
  // Series the workers share are summed: one connection up in each worker.
  const up = samples(text).filter((s) => s.name === 'hermod_connection_up' && s.labels.driver === 'rabbit');
  assert.is(
    up.reduce((n, s) => n + s.value, 0),
    2,
    `both workers' connections (${JSON.stringify(up)})`,
  );

  run.child.kill('SIGTERM');
  assert.is(await run.exited, 0, run.text);
  const after = await fetch(url).then(
    () => 'answered',
    (err: Error) => err.name,
  );
  assert.is(after, 'TypeError', 'the metrics endpoint closed with the primary (fetch failed)');
});

t('hermod status sees servers of hermod run (beacons in the run file) and of rpc-server --beacon appear, get busy and go', async (ctx) => {
  const topic = `obs-s-${process.pid}`;
  writeFileSync(
    path.join(ctx.dir, 'hermod.config.json'),
    JSON.stringify({
      config: { transportUrl: ctx.url, log: { level: 'warn' } },
      beacons: { intervalMs: 200, version: '3.1.4' },
      services: { calc: { endpoints: './ep.js', topic, server: 'calc', workers: 2 } },
    }),
  );
  const status = start('hermod', ['status', topic, '--json', '--refresh', '0.1', '--transport-url', ctx.url], ctx.dir);
  ctx.procs.push(status);
  await until(() => status.json.length > 0, `the status view running (${status.text})`, 10_000);

  const run = start('hermod', ['run'], ctx.dir);
  const server = start(
    'rpc-server',
    ['solo', '-t', topic, '--endpoints', './ep.js', '--beacon', '200', '--transport-url', ctx.url],
    ctx.dir,
  );
  ctx.procs.push(run, server);
  await until(
    () => ['calc-1', 'calc-2', 'solo'].every((n) => row(status, n)?.status === 'up'),
    `three servers up in the view (${JSON.stringify(latest(status))} ${run.text} ${server.text})`,
    15_000,
  );
  assert.is(row(status, 'calc-1')!.version, '3.1.4');
  assert.is(row(status, 'solo')!.pid, server.child.pid);
  assert.is.not(row(status, 'calc-1')!.pid, row(status, 'calc-2')!.pid, 'one beacon per worker');

  // Busy: calls show up as served counts (and a rate) on the servers that took them.
  const client = new RPCClient(ctx.transport, new Target({ topic }), { timeout: 5000 });
  await Promise.all(Array.from({ length: 60 }, () => client.call({}, 'whoami', {})));
  await client.prepare({ server: 'solo' }).call({}, 'whoami', {});
  await until(
    () => ['calc-1', 'calc-2', 'solo'].reduce((n, name) => n + (row(status, name)?.served ?? 0), 0) === 61,
    `61 calls served in the view (${JSON.stringify(latest(status))})`,
  );
  assert.ok(
    status.json.some((l) => (l.servers as PresenceRow[]).some((r) => r.rate > 0)),
    'a rate above 0 while busy',
  );

  // Gone: a clean stop says goodbye (stopped), then the row disappears.
  // The goodbye shows for one interval (200 ms): look for it in every refresh since the signal.
  const shownStopped = (from: number, name: string) =>
    status.json.slice(from).some((l) => (l.servers as PresenceRow[]).some((r) => r.name === name && r.status === 'stopped'));
  let from = status.json.length;
  server.child.kill('SIGTERM');
  assert.is(await server.exited, 0, server.text);
  await until(() => row(status, 'solo') === undefined, 'rpc-server gone from the view', 5000);
  assert.ok(shownStopped(from, 'solo'), 'rpc-server shown stopped before it went');
  assert.equal(
    latest(status).map((r) => r.name),
    ['calc-1', 'calc-2'],
  );
  from = status.json.length;
  run.child.kill('SIGTERM');
  assert.is(await run.exited, 0, run.text);
  await until(() => latest(status).length === 0, `hermod run's workers gone (${JSON.stringify(latest(status))})`, 5000);
  assert.ok(shownStopped(from, 'calc-1') && shownStopped(from, 'calc-2'), 'both workers said goodbye');

  status.child.kill('SIGTERM');
  assert.is(await status.exited, 0, status.text);
});

t.run();
