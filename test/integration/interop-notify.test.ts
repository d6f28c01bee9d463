import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  defaultConfig,
  getTransport,
  NotificationFilter,
  NotificationListener,
  Notifier,
  PRIORITIES,
  Target,
  type Transport,
} from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { sleep, until } from '../support/assert.js';
import { Collector } from '../support/notify-cases.js';
import { OsloPeer, osloAvailable } from '../support/oslo.js';
import { sharedVhost } from '../support/rabbit-vhost.js';

// Notifications between hermod and python3-oslo.messaging, both ways, on RabbitMQ and on the
// embedded AMQP 1.0 router.

interface Broker {
  url: string;
  pools: boolean;
  stop(): Promise<void>;
}
interface Ctx {
  broker: Broker;
  transports: Transport[];
  listeners: NotificationListener[];
  peers: OsloPeer[];
}

function interopNotify(name: string, broker: () => Promise<Broker>) {
  const t = suite<Ctx>(name, {} as Ctx);
  t.before(async (ctx) => {
    if (!osloAvailable()) throw new Error('python3-oslo.messaging is not installed (.ci/run installs it)');
    ctx.broker = await broker();
  });
  t.after(async (ctx) => {
    await ctx.broker?.stop();
  });
  t.before.each((ctx) => {
    ctx.transports = [];
    ctx.listeners = [];
    ctx.peers = [];
  });
  t.after.each(async (ctx) => {
    for (const l of ctx.listeners) {
      await l.stop();
      await l.wait(1000);
    }
    await Promise.all(ctx.peers.map((p) => p.kill()));
    for (const tr of ctx.transports) await tr.close();
  });
  async function transport(ctx: Ctx): Promise<Transport> {
    const tr = await getTransport(ctx.broker.url, { config: defaultConfig() });
    ctx.transports.push(tr);
    return tr;
  }
  async function peer(ctx: Ctx, mode: 'notify' | 'listen', opts: Record<string, string | undefined> = {}): Promise<OsloPeer> {
    const p = await OsloPeer.start(mode, { url: ctx.broker.url, ...opts });
    ctx.peers.push(p);
    return p;
  }

  t('a Python Notifier reaches a hermod listener: every priority, fields intact, filters alike', async (ctx) => {
    const c = new Collector();
    const filtered = new Collector(new NotificationFilter({ eventType: '^compute\\.' }));
    const l = new NotificationListener(await transport(ctx), [new Target({ topic: 'py2h' })], [c, filtered]);
    await l.start();
    ctx.listeners.push(l);
    const py = await peer(ctx, 'notify');
    for (const p of PRIORITIES) {
      const r = await py.request({
        publisher_id: 'py.host',
        event_type: `compute.${p}`,
        priority: p,
        topics: ['py2h'],
        payload: { p, n: [1, 2.5, null], s: 'ü' },
        ctx: { request_id: 'req-py', user_id: 'u', auth_token: 'tok' },
      });
      assert.ok(r.ok, JSON.stringify(r.error));
    }
    const r1 = await py.request({
      publisher_id: 'py.host',
      event_type: 'network.x',
      priority: 'info',
      topics: ['py2h'],
      payload: {},
      driver: 'messaging',
    });
    assert.ok(r1.ok);
    await until(() => c.got.length === PRIORITIES.length + 1, 'every Python notification', 10000);
    for (const p of PRIORITIES) {
      const g = c.got.find((x) => x.eventType === `compute.${p}`)!;
      assert.is(g.priority, p);
      assert.is(g.publisherId, 'py.host');
      assert.equal(g.payload, { p, n: [1, 2.5, null], s: 'ü' });
      assert.is(g.ctx.request_id, 'req-py');
      assert.is(g.ctx.auth_token, undefined, 'oslo sanitizes the context too');
      assert.match(g.metadata.message_id!, /^[0-9a-f-]{36}$/);
    }
    assert.ok(
      c.got.some((g) => g.eventType === 'network.x'),
      'a 1.0 (messaging driver) notification is read too',
    );
    await sleep(100);
    assert.is(filtered.got.length, PRIORITIES.length, 'the filter kept compute.* only');
  });

  t("a hermod Notifier reaches a Python listener; a Python filter behaves like hermod's", async (ctx) => {
    const py = await peer(ctx, 'listen', { topics: 'h2py', name: 'pyl' });
    const pyFiltered = await peer(ctx, 'listen', { topics: 'h2pyf', name: 'pyf', 'filter-event-type': '^compute\\.' });
    const nt = new Notifier(await transport(ctx), { publisherId: 'hermod.host', topics: ['h2py'] });
    const sends = PRIORITIES.map((p) =>
      nt[p]({ request_id: 'req-h', project_id: 'pr', password: 'nope' }, `compute.${p}`, { p, ok: true }),
    );
    sends.push(nt.info({}, 'network.y', { other: 1 }));
    await Promise.all(sends);
    const got = (p: OsloPeer) => p.events.filter((e) => e.event === 'notification');
    await until(() => got(py).length === 8, 'Python got all 8', 10000);
    for (const p of PRIORITIES) {
      const e = got(py).find((x) => x.event_type === `compute.${p}`)!;
      assert.ok(e, `compute.${p} reached Python`);
      assert.is(e.priority, p);
      assert.is(e.publisher_id, 'hermod.host');
      assert.equal(e.payload, { p, ok: true });
      // oslo's rabbit driver adds `client_timeout` (null here) to every context it unpacks.
      const { client_timeout: _ct, ...seen } = e.ctx as Record<string, unknown>;
      assert.equal(seen, { request_id: 'req-h', project_id: 'pr' }, 'sanitized context');
      assert.match((e.metadata as { timestamp: string }).timestamp, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/);
    }
    // The same filter as the hermod test above, on the Python side.
    const nf = new Notifier(await transport(ctx), { publisherId: 'hermod.host', topics: ['h2pyf'] });
    await Promise.all([nf.info({}, 'network.z', {}), nf.info({}, 'compute.z', {}), nf.info({}, 'xcompute.z', {})]);
    await until(() => got(pyFiltered).length === 1, 'the filtered Python listener got compute.z', 10000);
    await sleep(300);
    assert.equal(
      got(pyFiltered).map((e) => e.event_type),
      ['compute.z'],
    );
  });

  if (name.includes('RabbitMQ')) {
    t('pools: a Python and a hermod listener in one pool share; another pool gets everything', async (ctx) => {
      const pyInPool = await peer(ctx, 'listen', { topics: 'pooled', name: 'py-a', pool: 'pool-a' });
      const h = new Collector();
      const hl = new NotificationListener(await transport(ctx), [new Target({ topic: 'pooled' })], [h], { pool: 'pool-a' });
      await hl.start();
      ctx.listeners.push(hl);
      const other = new Collector();
      const ol = new NotificationListener(await transport(ctx), [new Target({ topic: 'pooled' })], [other], { pool: 'pool-b' });
      await ol.start();
      ctx.listeners.push(ol);
      const py = await peer(ctx, 'notify');
      for (let i = 0; i < 20; i++)
        await py.request({ publisher_id: 'py', event_type: 'e', priority: 'info', topics: ['pooled'], payload: { i } });
      const pyGot = () => pyInPool.events.filter((e) => e.event === 'notification').length;
      await until(() => pyGot() + h.got.length === 20 && other.got.length === 20, 'pool a shares 20, pool b gets 20', 10000);
      // Round robin between one consumer each (hermod consumed once per priority binding: 7 of 8 shares).
      assert.ok(Math.abs(pyGot() - h.got.length) <= 6, `shared fairly: python ${pyGot()}, hermod ${h.got.length}`);
    });
  }
  return t;
}

interopNotify(
  'interop notifications on RabbitMQ',
  sharedVhost('inotify', {
    pools: true,
  }),
).run();

interopNotify('interop notifications through the embedded router (amqp1)', async () => {
  const router = new Router({ port: 0 });
  const port = await router.start();
  return { url: `amqp://127.0.0.1:${port}/`, pools: false, stop: () => router.stop() };
}).run();
