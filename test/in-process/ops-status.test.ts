import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultConfig, getTransport, RPCClient, RPCServer, Target, type Transport } from '../../src/index.js';
import { PresenceBeacon, type PresenceRow, PresenceView } from '../../src/ops/status/index.js';
import { renderTable } from '../../src/ops/status/table.js';
import { Router } from '../../src/router/router.js';
import { until } from '../support/assert.js';
import { Recorder } from '../support/endpoints.js';

interface Ctx {
  router: Router;
  url: string;
  transports: Transport[];
  servers: RPCServer[];
  beacons: PresenceBeacon[];
  children: ChildProcess[];
}
const t = suite<Ctx>('ops - status', { router: undefined as never, url: '', transports: [], servers: [], beacons: [], children: [] });

t.before.each(async (ctx) => {
  ctx.router = new Router({ port: 0 });
  ctx.url = `amqp://127.0.0.1:${await ctx.router.start()}/`;
  ctx.transports = [];
  ctx.servers = [];
  ctx.beacons = [];
  ctx.children = [];
});
t.after.each(async (ctx) => {
  for (const c of ctx.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const b of ctx.beacons) b.abort();
  for (const s of ctx.servers) {
    await s.stop();
    await s.wait(1000);
  }
  for (const tr of ctx.transports) await tr.close();
  await ctx.router.stop();
});

async function serve(ctx: Ctx, topic: string, name: string, intervalMs: number) {
  const transport = await getTransport(ctx.url, { config: defaultConfig() });
  ctx.transports.push(transport);
  const server = new RPCServer(transport, new Target({ topic, server: name }), [new Recorder(name)]);
  await server.start();
  ctx.servers.push(server);
  const beacon = new PresenceBeacon(server, { intervalMs, version: '2.1.0' });
  ctx.beacons.push(beacon);
  beacon.start();
  return { server, beacon, transport };
}

const bin = fileURLToPath(new URL('../../bin/hermod.js', import.meta.url));

function status(ctx: Ctx, args: string[]) {
  const child = spawn(process.execPath, [bin, 'status', '--transport-url', ctx.url, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  ctx.children.push(child);
  const snapshots: Array<{ servers: PresenceRow[]; note: string }> = [];
  let buf = '';
  let err = '';
  child.stdout!.on('data', (d) => {
    buf += d;
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      snapshots.push(JSON.parse(buf.slice(0, nl)));
      buf = buf.slice(nl + 1);
      nl = buf.indexOf('\n');
    }
  });
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, snapshots, exited, stderr: () => err };
}

const latest = (s: { snapshots: Array<{ servers: PresenceRow[] }> }) => s.snapshots.at(-1)?.servers ?? [];
const row = (s: { snapshots: Array<{ servers: PresenceRow[] }> }, name: string) => latest(s).find((r) => r.name === name);

t('hermod status sees servers come, get busy, stop (goodbye) and vanish (no more beacons)', async (ctx) => {
  const view = status(ctx, ['st1', '--json', '--refresh', '0.1']);
  await until(() => view.snapshots.length > 0, 'a first snapshot', 8000);
  assert.match(view.snapshots[0]!.note, /unknown peers may exist/);
  const a = await serve(ctx, 'st1', 'st-a', 200);
  const b = await serve(ctx, 'st1', 'st-b', 200);
  await serve(ctx, 'st-other', 'st-c', 200);
  await until(() => row(view, 'st-a')?.status === 'up' && row(view, 'st-b')?.status === 'up', 'both servers up', 5000);
  const r = row(view, 'st-a')!;
  assert.is(r.topic, 'st1');
  assert.is(r.pid, process.pid);
  assert.is(r.version, '2.1.0');
  assert.is(r.exchange, 'openstack');
  assert.ok(
    latest(view).every((x) => x.topic === 'st1'),
    'other topics filtered out',
  );

  // Busy: calls show in the served counter and the rate.
  const client = new RPCClient(a.transport, new Target({ topic: 'st1', server: 'st-a' }), { timeout: 3000 });
  for (let i = 0; i < 20; i++) await client.call({}, 'add', { a: i, b: 1 });
  await until(() => (row(view, 'st-a')?.served ?? 0) >= 20, 'served counter', 3000);
  assert.ok(view.snapshots.some((s) => s.servers.some((x) => x.name === 'st-a' && x.rate > 0)));

  // A clean stop says goodbye: stopped at once, then gone.
  await a.beacon.stop();
  await until(() => row(view, 'st-a')?.status === 'stopped', 'st-a stopped', 2000);
  await until(() => row(view, 'st-a') === undefined, 'st-a gone', 3000);
  assert.is(row(view, 'st-b')?.status, 'up');

  // Silence (a crash): stale after 2.5 intervals, gone after 6.
  b.beacon.abort();
  const t0 = Date.now();
  await until(() => row(view, 'st-b')?.status === 'stale', 'st-b stale', 3000);
  assert.ok(Date.now() - t0 >= 250, `stale after ${Date.now() - t0} ms`);
  await until(() => row(view, 'st-b') === undefined, 'st-b gone', 3000);

  view.child.kill('SIGTERM');
  assert.is(await view.exited, 0, view.stderr());
});

t('hermod status --once --json prints what it heard and exits 0; beacons nobody hears are not errors', async (ctx) => {
  const { beacon } = await serve(ctx, 'st2', 'st-once', 150);
  await until(() => beacon.sent + beacon.failures >= 2, 'beacons into the void', 3000);
  // --wait bounds the connect too: a loaded CI machine (Node 22, four suites at a time) missed 0.8 s.
  const view = status(ctx, ['--once', '--wait', '3', '--json']);
  assert.is(await view.exited, 0, view.stderr());
  assert.is(view.snapshots.length, 1);
  assert.ok(
    view.snapshots[0]!.servers.some((r) => r.name === 'st-once' && r.status === 'up'),
    JSON.stringify(view.snapshots),
  );
});

t('a beacon nobody hears does not hold up the stop (it added a whole interval)', async (ctx) => {
  const { beacon } = await serve(ctx, 'st-void', 'st-void', 5000);
  // The first beacon is on its way (released by the router, resent by the driver).
  await new Promise((r) => setTimeout(r, 100));
  const t0 = Date.now();
  await beacon.stop();
  assert.ok(Date.now() - t0 < 1500, `the beacon's stop took ${Date.now() - t0} ms with an interval of 5000`);
});

t('a bad option is a usage error (2)', async (ctx) => {
  const view = status(ctx, ['--refresh', 'soon']);
  assert.is(await view.exited, 2);
  assert.match(view.stderr(), /--refresh <seconds>' argument 'soon' is invalid\. needs a number of seconds/);
  // A flag where a value belongs: it became the topic, and the URL after it was lost.
  const flag = status(ctx, ['--presence-topic', '--once']);
  assert.is(await flag.exited, 2);
  assert.match(flag.stderr(), /--presence-topic <topic>' argument '--once' is invalid/);
});

t('an unreachable broker: each reconnect said on stderr (was silent until the connect gave up); --help names --config', async (ctx) => {
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise((r) => closed.close(r));
  const view = status({ ...ctx, url: `amqp://127.0.0.1:${port}/` }, ['--json']);
  await until(() => view.stderr().includes(`reconnecting to 127.0.0.1:${port}`), 'a reconnect line', 8000);
  assert.match(view.stderr(), /ECONNREFUSED/);
  assert.is(view.snapshots.length, 0);
  const help = spawnSync(process.execPath, [bin, 'status', '--help'], { encoding: 'utf8', timeout: 10_000 });
  assert.is(help.status, 0, help.stderr);
  assert.match(help.stdout, /--config key=value/);
  // The flags and the exit table every bin's --help has.
  assert.match(help.stdout, /--log-level <level>/);
  assert.match(help.stdout, /Exit status \(all hermod CLIs\)/);
  assert.is(help.stderr, '');
});

t('--once gives up on an unreachable broker at --wait, exit 5 with the reason (it waited the 60 s connect budget)', async (ctx) => {
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise((r) => closed.close(r));
  const t0 = Date.now();
  const view = status({ ...ctx, url: `amqp://127.0.0.1:${port}/` }, ['--once', '--wait', '1.5', '--quiet']);
  assert.is(await view.exited, 5, view.stderr());
  const took = Date.now() - t0;
  // Against the 60 s connect budget; a process starting at load takes seconds of its own.
  assert.ok(took < 30_000, `took ${took} ms with --wait 1.5`);
  assert.match(view.stderr(), new RegExp(`cannot connect to amqp://127\\.0\\.0\\.1:${port}/ within --wait \\(1\\.5 s\\): .*ECONNREFUSED`));
  // --quiet: no reconnect lines at info.
  assert.not.match(view.stderr(), /reconnecting to/);
  assert.is(view.snapshots.length, 0);
});

t('beacons from peers are checked and bounded; the table shows no control characters', async (ctx) => {
  const transport = await getTransport('memory://status-unit', { config: defaultConfig() });
  ctx.transports.push(transport);
  const view = new PresenceView(transport, { maxServers: 3 });
  const good = { name: 'n', host: 'h', pid: 1, topic: 't', exchange: 'x', served: 1, failed: 0, intervalMs: 1000 };
  for (const bad of [
    null,
    [],
    'x',
    { ...good, pid: -1 },
    { ...good, name: 'x'.repeat(300) },
    { ...good, intervalMs: 1 },
    { ...good, served: Number.NaN },
  ]) {
    view.add(bad, 0);
  }
  assert.is(view.rows([], 0).length, 0);
  for (let i = 0; i < 10; i++) view.add({ ...good, pid: i }, 0);
  view.add({ ...good, name: 'evil\x1b[2J' }, 0);
  assert.is(view.rows([], 0).length, 3);
  const table = renderTable(view.rows([], 0), []);
  assert.ok(!table.includes(String.fromCharCode(27)), 'no ESC in the table');
  assert.match(table, /evil\?\[2J/);
  assert.match(table, /unknown peers may exist/);
  // Nor bidi overrides, isolates, invisible characters or line separators (they went through:
  // U+202E shows the rest of a row reversed, U+200B hides a difference between two names).
  view.add({ ...good, name: 'evil\u202e\u2066', host: 'h\u200b1', version: '1\u2028' }, 0);
  const tricky = renderTable(view.rows([], 0), []);
  assert.not.match(tricky, /[\u202e\u2066\u200b\u2028]/);
  assert.match(tricky, /evil\?\? +h\?1 +\d+ +1\? /);
  // Forgotten 6 intervals after the last beacon.
  assert.is(view.rows([], 6001).length, 0);
});

t('a peer filling the view with made-up servers cannot keep real ones out of it, nor hold rows for days', async (ctx) => {
  const transport = await getTransport('memory://status-flood', { config: defaultConfig() });
  ctx.transports.push(transport);
  const view = new PresenceView(transport, { maxServers: 3 });
  const fake = { host: 'h', topic: 'zzz', exchange: 'x', served: 0, failed: 0, intervalMs: 1e12 };
  for (let i = 0; i < 3; i++) view.add({ ...fake, name: `fake${i}`, pid: i }, 0);
  // Before: a full view ignored every new server, and the fakes' one-day interval kept them 6 days.
  view.add({ name: 'host1', host: 'vm', pid: 7, topic: 'compute', exchange: 'x', served: 1, failed: 0, intervalMs: 1000 }, 10);
  assert.equal(
    view.rows(['compute'], 10).map((r) => r.name),
    ['host1'],
  );
  assert.is(view.rows([], 10).length, 3, 'the fake heard from longest ago gave way');
  const [row] = view.rows(['zzz'], 10);
  assert.is(row!.intervalMs, 86_400_000, 'the claimed interval is still shown');
  // Rows age by at most a minute per interval: stale after 150 s, forgotten after 6 minutes.
  assert.is(view.rows(['zzz'], 150_001)[0]!.status, 'stale');
  assert.is(view.rows(['zzz'], 360_001).length, 0);
});

t.run();
