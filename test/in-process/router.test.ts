import type { Connection, EventContext, Receiver, Sender } from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Router } from '../../src/router/router.js';
import { sleep, until } from '../support/assert.js';
import { rheaClose, rheaConnect, rheaDrop } from '../support/rhea-peer.js';

interface Ctx {
  router: Router;
  port: number;
  conns: Connection[];
}
const t = suite<Ctx>('router (rhea client as peer)', { router: undefined as never, port: 0, conns: [] });

t.before.each(async (ctx) => {
  ctx.router = new Router({ port: 0 });
  ctx.port = await ctx.router.start();
  ctx.conns = [];
});
t.after.each(async (ctx) => {
  for (const c of ctx.conns) await rheaClose(c);
  await ctx.router.stop();
});

async function conn(ctx: Ctx): Promise<Connection> {
  const c = await rheaConnect(ctx.port);
  ctx.conns.push(c);
  return c;
}

function collect(r: Receiver): Array<Record<string, unknown>> {
  const got: Array<Record<string, unknown>> = [];
  r.on('message', (e: EventContext) => got.push(e.message as unknown as Record<string, unknown>));
  return got;
}

const opened = (l: Sender | Receiver) =>
  new Promise<void>((resolve) => {
    if (l.is_open()) resolve();
    else l.once(l.is_receiver() ? 'receiver_open' : 'sender_open', () => resolve());
  });

t('open frame announces a product and ANONYMOUS-RELAY', async (ctx) => {
  const c = await conn(ctx);
  assert.is((c.properties as Record<string, unknown>).product, 'hermod-router');
  const caps = (c as unknown as { remote: { open: { offered_capabilities?: unknown } } }).remote.open.offered_capabilities;
  assert.ok(String(caps).includes('ANONYMOUS-RELAY'));
});

t('anycast is balanced across receivers; outcomes come back to the sender', async (ctx) => {
  const c1 = await conn(ctx);
  const c2 = await conn(ctx);
  const r1 = c1.open_receiver('work');
  const r2 = c2.open_receiver('work');
  const g1 = collect(r1);
  const g2 = collect(r2);
  await Promise.all([opened(r1), opened(r2)]);
  const s = (await conn(ctx)).open_sender('work');
  let accepted = 0;
  s.on('accepted', () => accepted++);
  await until(() => s.sendable(), 'credit for the sender');
  for (let i = 0; i < 20; i++) s.send({ body: `m${i}` });
  await until(() => accepted === 20, '20 accepted outcomes');
  assert.is(g1.length, 10);
  assert.is(g2.length, 10);
});

t('multicast: every receiver gets every message', async (ctx) => {
  const addr = 'openstack.org/om/rpc/multicast/openstack/t';
  const rs = await Promise.all([conn(ctx), conn(ctx), conn(ctx)]).then((cs) => cs.map((c) => c.open_receiver(addr)));
  const gots = rs.map(collect);
  await Promise.all(rs.map(opened));
  const s = (await conn(ctx)).open_sender(addr);
  let accepted = 0;
  s.on('accepted', () => accepted++);
  await until(() => s.sendable(), 'credit');
  for (let i = 0; i < 5; i++) s.send({ body: i });
  await until(() => gots.every((g) => g.length === 5), 'five copies each');
  await until(() => accepted === 5, 'one outcome per message after all copies settled');
});

t('thousands of presettled messages on one session keep flowing (session window is freed)', async (ctx) => {
  const addr = 'openstack.org/om/rpc/anycast/openstack/many';
  const r = (await conn(ctx)).open_receiver(addr);
  const got = collect(r);
  await opened(r);
  const s = (await conn(ctx)).open_sender({ target: { address: addr }, snd_settle_mode: 1 } as never);
  // Well past rhea's 2048-delivery session buffer, sent as credit allows.
  const total = 6000;
  let sent = 0;
  let pumping = true;
  // rhea's credit only drops once a transfer is written, so send in small bursts per tick.
  const pump = () => {
    for (let burst = 0; sent < total && s.sendable() && burst < 100; burst++) s.send({ body: sent++ });
    if (sent < total && pumping) setTimeout(pump, 1);
  };
  pump();
  try {
    // 30 s: 6000 messages at a burst a tick took over 10 s at the suite's load. A session window
    // that is not freed stops them for good at rhea's 2048, so this still fails on it.
    await until(() => got.length === total, `${total} presettled messages through`, 30_000);
  } catch (e) {
    // The count as it was at the deadline (the message above is built before the wait).
    throw new Error(`${(e as Error).message} (got ${got.length}, sent ${sent})`);
  } finally {
    // A pump left running after a failure kept the file's process alive past its suites.
    pumping = false;
  }
  assert.is(got[total - 1]!.body, total - 1);
});

t('a receiver that accepts and detaches at once: the sender hears accepted, not modified', async (ctx) => {
  const addr = 'openstack.org/om/rpc/anycast/openstack/quick';
  const r = (await conn(ctx)).open_receiver({ source: { address: addr }, autoaccept: false, credit_window: 0 } as never);
  r.add_credit(10);
  await opened(r);
  r.on('message', (e: EventContext) => {
    e.delivery!.accept();
    setImmediate(() => r.close());
  });
  const s = (await conn(ctx)).open_sender({ target: {} } as never);
  await until(() => s.sendable(), 'credit');
  const outcomes: string[] = [];
  for (const k of ['accepted', 'released', 'modified', 'rejected']) s.on(k, () => outcomes.push(k));
  s.send({ to: addr, body: 'once' } as never);
  await until(() => outcomes.length > 0, 'an outcome');
  await sleep(100);
  assert.equal(outcomes, ['accepted']);
});

t('named sender to an address with no receiver: no credit until one attaches, then held messages flow', async (ctx) => {
  const c = await conn(ctx);
  const s = c.open_sender('later');
  await opened(s);
  await sleep(50);
  assert.not.ok(s.sendable(), 'no credit without a receiver');
  const r = (await conn(ctx)).open_receiver('later');
  const got = collect(r);
  await until(() => s.sendable(), 'credit once a receiver exists');
  s.send({ body: 'finally' });
  await until(() => got.length === 1, 'the message');
  assert.is(got[0]!.body, 'finally');
});

t('anonymous relay: credit at once; no receiver means released within milliseconds', async (ctx) => {
  const c = await conn(ctx);
  const s = c.open_sender({ target: {} } as never);
  await until(() => s.sendable(), 'credit on the anonymous link');
  let released = 0;
  s.on('released', () => released++);
  const t0 = Date.now();
  s.send({ to: 'nobody-home', body: 'x' });
  await until(() => released === 1, 'released');
  assert.ok(Date.now() - t0 < 1500, `released after ${Date.now() - t0} ms`);
  const r = (await conn(ctx)).open_receiver('somebody');
  const got = collect(r);
  await opened(r);
  s.send({ to: 'somebody', body: 'y' });
  await until(() => got.length === 1, 'relayed by to');
});

t('a rejection travels back with its error condition', async (ctx) => {
  const r = (await conn(ctx)).open_receiver({ source: { address: 'picky' }, autoaccept: false } as never);
  r.on('message', (e: EventContext) => e.delivery!.reject({ condition: 'amqp:precondition-failed', description: 'no thanks' } as never));
  await opened(r);
  const s = (await conn(ctx)).open_sender('picky');
  let err: { condition?: string; description?: string } | undefined;
  s.on('rejected', (e: EventContext) => {
    err = (e.delivery as unknown as { remote_state: { error: typeof err } }).remote_state.error;
  });
  await until(() => s.sendable(), 'credit');
  s.send({ body: 1 });
  await until(() => err !== undefined, 'the rejection');
  assert.is(err!.condition, 'amqp:precondition-failed');
  assert.is(err!.description, 'no thanks');
});

t('a receiver that vanishes with unsettled messages: the sender hears modified(delivery-failed)', async (ctx) => {
  const rc = await rheaConnect(ctx.port);
  const r = rc.open_receiver({ source: { address: 'flaky' }, autoaccept: false } as never);
  let seen = 0;
  r.on('message', () => seen++);
  await opened(r);
  const s = (await conn(ctx)).open_sender({ target: { address: 'flaky' } } as never);
  const outcomes: string[] = [];
  let failedFlag: unknown;
  s as unknown as { set_option?: unknown };
  s.on('released', (e: EventContext) => {
    outcomes.push('released/modified');
    failedFlag = (e.delivery as unknown as { remote_state?: { delivery_failed?: boolean } }).remote_state?.delivery_failed;
  });
  s.on('modified', () => outcomes.push('modified'));
  await until(() => s.sendable(), 'credit');
  s.send({ body: 'a' });
  await until(() => seen === 1, 'delivery to the flaky receiver');
  await rheaDrop(rc);
  await until(() => outcomes.length > 0, 'an outcome after the receiver vanished');
  assert.is(failedFlag, true);
  await until(
    () => ctx.router.stats().connections === 1 + ctx.conns.length - 1 || ctx.router.stats().connections <= ctx.conns.length,
    'cleanup',
  );
});

t('dynamic sources get unique addresses; properties pass through with their types', async (ctx) => {
  const c = await conn(ctx);
  const d1 = c.open_receiver({ source: { dynamic: true } } as never);
  const d2 = c.open_receiver({ source: { dynamic: true } } as never);
  await Promise.all([opened(d1), opened(d2)]);
  const a1 = (d1.source as { address: string }).address;
  const a2 = (d2.source as { address: string }).address;
  assert.ok(a1 && a2 && a1 !== a2);
  const got = collect(d1);
  const s = (await conn(ctx)).open_sender({ target: {} } as never);
  await until(() => s.sendable(), 'credit');
  s.send({
    to: a1,
    body: 'p',
    correlation_id: 'cid-1',
    subject: 'subj',
    application_properties: { n: 42, s: 'str', b: true, f: 1.5 },
    message_annotations: { 'x-opt-a': 'v' },
  } as never);
  await until(() => got.length === 1, 'the message');
  const m = got[0]!;
  assert.is(m.correlation_id, 'cid-1');
  assert.is(m.subject, 'subj');
  assert.equal(m.application_properties, { n: 42, s: 'str', b: true, f: 1.5 });
  assert.equal(m.message_annotations, { 'x-opt-a': 'v' });
});

t('a slow receiver pushes back: the router holds at most its credit window per sender', async () => {
  const small = new Router({ port: 0, linkCredit: 10 });
  const port = await small.start();
  const rc = await rheaConnect(port);
  const sc = await rheaConnect(port);
  try {
    const r = rc.open_receiver({ source: { address: 'slow' }, credit_window: 0, autoaccept: true } as never);
    const got = collect(r);
    await opened(r);
    r.add_credit(2);
    const s = sc.open_sender('slow');
    let sent = 0;
    const pump = () => {
      while (s.sendable() && sent < 100) {
        s.send({ body: sent++ });
      }
    };
    s.on('sendable', pump);
    await sleep(150);
    pump();
    assert.is(got.length, 2);
    const st = small.stats();
    // rhea buffers the rest on the sending side; the router took only its window.
    assert.ok(st.held <= 10, `router holds ${st.held} messages; its window is 10`);
    assert.ok(st.forwarded <= 2, `router forwarded ${st.forwarded} with 2 credits`);
    r.add_credit(200);
    await until(() => got.length === sent, 'the held messages');
  } finally {
    await rheaClose(rc);
    await rheaClose(sc);
    await small.stop();
  }
});

t('a peer sending garbage or vanishing mid-stream does not take the router down', async (ctx) => {
  const net = await import('node:net');
  const sock = net.connect(ctx.port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  sock.write(Buffer.from('this is not AMQP at all \x00\x01\x02'));
  await sleep(100);
  sock.destroy();
  const c = await conn(ctx);
  const r = c.open_receiver('still-ok');
  const got = collect(r);
  await opened(r);
  const s = c.open_sender('still-ok');
  await until(() => s.sendable(), 'credit');
  s.send({ body: 'alive' });
  await until(() => got.length === 1, 'the router still routes');
});

t('a connection its client closed cleanly writes nothing and arms no idle timer afterwards', async (ctx) => {
  const c = await conn(ctx);
  // The router's side of it (rhea keeps it "ready" after a clean close: both close frames, then the socket ends).
  const server = [...(ctx.router as unknown as { connections: Set<Connection> }).connections].at(-1) as unknown as {
    socket: { once(e: string, f: () => void): void };
    heartbeat_in?: unknown;
    heartbeat_out?: unknown;
    _write_frame(): void;
  };
  const gone = new Promise<void>((resolve) => server.socket.once('close', resolve));
  await rheaClose(c);
  ctx.conns = ctx.conns.filter((x) => x !== c);
  await gone;
  // What a late pass does (a frame for a link of the client that left; rhea's heartbeat): before
  // the fix this armed a 32 s heartbeat_in timer nothing cleared, which kept a test process alive.
  server._write_frame();
  assert.is(server.heartbeat_in, undefined, 'no idle timer');
  assert.is(server.heartbeat_out, undefined, 'no heartbeat timer');
});

t.run();
