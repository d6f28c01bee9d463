import type { Connection, Delivery, EventContext, Receiver, Sender } from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type RemoteOutcome, remoteOutcome } from '../../src/rhea/index.js';
import { Router } from '../../src/router/router.js';
import { lapse, sleep, until } from '../support/assert.js';
import { rheaClose, rheaConnect, rheaDrop } from '../support/rhea-peer.js';

// Router semantics checked against what Qpid Dispatch Router 1.19 does (DESIGN.md), with rhea's
// own client as the peer: settlement mode kept end to end, and a receiver that vanishes while
// it holds messages.

interface Ctx {
  router: Router;
  port: number;
  conns: Connection[];
}
const t = suite<Ctx>('router semantics (as Qpid Dispatch)', { router: undefined as never, port: 0, conns: [] });

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

const opened = (l: Sender | Receiver) =>
  new Promise<void>((resolve) => {
    if (l.is_open()) resolve();
    else l.once(l.is_receiver() ? 'receiver_open' : 'sender_open', () => resolve());
  });

/** Every message a receiver got, with whether it arrived presettled. */
function collect(r: Receiver): Array<{ body: unknown; presettled: boolean }> {
  const got: Array<{ body: unknown; presettled: boolean }> = [];
  r.on('message', (e: EventContext) => got.push({ body: e.message!.body, presettled: e.delivery!.remote_settled }));
  return got;
}

/** The outcome of each delivery a sender sent, by the message's index. */
function outcomes(s: Sender): { sent: Map<Delivery, number>; got: Map<number, RemoteOutcome> } {
  const sent = new Map<Delivery, number>();
  const got = new Map<number, RemoteOutcome>();
  s.on('settled', (e: EventContext) => {
    const i = sent.get(e.delivery!);
    const o = remoteOutcome(e.delivery!);
    if (i !== undefined && o) got.set(i, o);
  });
  return { sent, got };
}

t('multicast: a presettled message reaches every receiver presettled; an unsettled one unsettled', async (ctx) => {
  const addr = 'openstack.org/om/rpc/multicast/openstack/pre';
  const rs = await Promise.all([conn(ctx), conn(ctx), conn(ctx)]).then((cs) => cs.map((c) => c.open_receiver(addr)));
  const gots = rs.map(collect);
  await Promise.all(rs.map(opened));
  const c = await conn(ctx);
  const pre = c.open_sender({ target: { address: addr }, snd_settle_mode: 1 } as never);
  const unsettled = c.open_sender({ target: { address: addr } } as never);
  let accepted = 0;
  unsettled.on('accepted', () => accepted++);
  await until(() => pre.sendable() && unsettled.sendable(), 'credit');
  for (let i = 0; i < 5; i++) pre.send({ body: `p${i}` });
  await until(() => gots.every((g) => g.length === 5), 'five presettled copies each');
  for (const g of gots) {
    assert.equal(
      g.map((m) => m.presettled),
      [true, true, true, true, true],
    );
  }
  unsettled.send({ body: 'u' });
  await until(() => gots.every((g) => g.length === 6), 'the unsettled copy each');
  for (const g of gots) assert.is(g[5]!.presettled, false);
  await until(() => accepted === 1, 'one outcome for the unsettled message');
});

t(
  "the kind is the address's first anycast/unicast/multicast segment: a vhost, exchange or topic named multicast stays anycast",
  async (ctx) => {
    // Found by a review: any `/multicast/` in the address fanned it out, so with vhost `multicast`
    // every RPC call ran on every server.
    for (const addr of [
      'openstack.org/om/rpc/anycast/multicast/openstack/t',
      'openstack.org/om/rpc/anycast/multicast/t',
      'openstack.org/om/rpc/anycast/openstack/a/multicast/b',
      'openstack.org/om/rpc/unicast/multicast/openstack/t/s1',
    ]) {
      const rs = await Promise.all([conn(ctx), conn(ctx)]).then((cs) => cs.map((c) => c.open_receiver(addr)));
      const gots = rs.map(collect);
      await Promise.all(rs.map(opened));
      const s = (await conn(ctx)).open_sender({ target: { address: addr }, snd_settle_mode: 1 } as never);
      await until(() => s.sendable(), 'credit');
      for (let i = 0; i < 4; i++) s.send({ body: i });
      await until(() => gots[0]!.length + gots[1]!.length >= 4, `four deliveries on ${addr}`);
      await sleep(100);
      assert.is(gots[0]!.length + gots[1]!.length, 4, `each message once on ${addr}: ${gots.map((g) => g.length)}`);
    }
    // The kind after a custom prefix decides too; legacy broadcast. stays multicast.
    for (const addr of ['myorg/rpc/multicast/openstack/t', 'broadcast.openstack.t.all']) {
      const rs = await Promise.all([conn(ctx), conn(ctx)]).then((cs) => cs.map((c) => c.open_receiver(addr)));
      const gots = rs.map(collect);
      await Promise.all(rs.map(opened));
      const s = (await conn(ctx)).open_sender({ target: { address: addr }, snd_settle_mode: 1 } as never);
      await until(() => s.sendable(), 'credit');
      s.send({ body: 'all' });
      await until(() => gots.every((g) => g.length === 1), `a copy each on ${addr}`);
    }
  },
);

t('anycast: settlement mode kept (presettled in, presettled out; unsettled in, unsettled out)', async (ctx) => {
  const addr = 'openstack.org/om/rpc/anycast/openstack/mode';
  const r = (await conn(ctx)).open_receiver(addr);
  const got = collect(r);
  await opened(r);
  const c = await conn(ctx);
  const pre = c.open_sender({ target: { address: addr }, snd_settle_mode: 1 } as never);
  const uns = c.open_sender({ target: { address: addr } } as never);
  await until(() => pre.sendable() && uns.sendable(), 'credit');
  pre.send({ body: 'p' });
  await until(() => got.length === 1, 'the presettled one');
  uns.send({ body: 'u' });
  await until(() => got.length === 2, 'the unsettled one');
  assert.equal(got, [
    { body: 'p', presettled: true },
    { body: 'u', presettled: false },
  ]);
});

/**
 * A holder with 10 delivered-unsettled messages and 10 more routed to it, a newcomer attaching
 * meanwhile, then the holder going away by `vanish`.
 */
async function holderGoesAway(ctx: Ctx, vanish: (holderConn: Connection, holder: Receiver) => void | Promise<void>): Promise<void> {
  const addr = 'openstack.org/om/rpc/anycast/openstack/held';
  const hc = await rheaConnect(ctx.port);
  const holder = hc.open_receiver({ source: { address: addr }, autoaccept: false, credit_window: 0 } as never);
  const held = collect(holder);
  await opened(holder);
  holder.add_credit(10);
  const s = (await conn(ctx)).open_sender({ target: { address: addr }, treat_modified_as_released: false } as never);
  const o = outcomes(s);
  await until(() => s.sendable(), 'credit for the sender');
  for (let i = 0; i < 20; i++) o.sent.set(s.send({ body: i }), i);
  await until(() => held.length === 10, '10 delivered to the holder');
  await until(() => ctx.router.stats().held === 10, '10 more queued for the holder');

  // A newcomer attaches while the holder sits on its messages: answered at once.
  const nc = await conn(ctx);
  const t0 = Date.now();
  const newcomer = nc.open_receiver(addr);
  const fresh = collect(newcomer);
  await opened(newcomer);
  const attachMs = Date.now() - t0;
  assert.ok(attachMs < 500, `newcomer's attach answered in ${attachMs} ms`);
  await sleep(50);
  assert.is(fresh.length, 0, 'messages routed to the holder stay with the holder');

  await vanish(hc, holder);
  await until(() => o.got.size === 20, 'an outcome for each of the 20 messages');
  for (let i = 0; i < 10; i++) {
    const out = o.got.get(i)!;
    assert.is(out.kind, 'modified', `delivered message ${i}: ${out.kind}`);
    assert.is(out.deliveryFailed, true);
    assert.is(out.undeliverableHere ?? false, false);
  }
  for (let i = 10; i < 20; i++) assert.is(o.got.get(i)!.kind, 'released', `queued message ${i}`);
  await sleep(50);
  assert.is(fresh.length, 0, 'nothing of the holder redelivered to the newcomer');

  // New traffic goes to the newcomer.
  for (let i = 100; i < 105; i++) o.sent.set(s.send({ body: i }), i);
  await until(() => fresh.length === 5, 'new traffic reaches the newcomer');
  await until(() => [100, 101, 102, 103, 104].every((i) => o.got.get(i)?.kind === 'accepted'), 'accepted by the newcomer');
  assert.equal(
    fresh.map((m) => m.body),
    [100, 101, 102, 103, 104],
  );
  assert.is(ctx.router.stats().held, 0);
  await rheaClose(hc);
}

t('a holder closes its link: newcomer attached at once; 10 modified(delivery-failed), 10 released, none redelivered', async (ctx) => {
  await holderGoesAway(ctx, (_c, holder) => {
    holder.close();
  });
});

t('a holder closes its connection: same outcomes', async (ctx) => {
  await holderGoesAway(ctx, (c) => {
    c.close();
  });
});

t('a holder drops its TCP connection: same outcomes', async (ctx) => {
  await holderGoesAway(ctx, (c) => {
    void rheaDrop(c);
  });
});

t('anycast is balanced by outstanding messages: a stalled receiver gets fewer', async (ctx) => {
  const addr = 'openstack.org/om/rpc/anycast/openstack/balance';
  const stalled = (await conn(ctx)).open_receiver({ source: { address: addr }, autoaccept: false, credit_window: 0 } as never);
  const sg = collect(stalled);
  stalled.add_credit(5);
  const quick = (await conn(ctx)).open_receiver(addr);
  const qg = collect(quick);
  await Promise.all([opened(stalled), opened(quick)]);
  const s = (await conn(ctx)).open_sender(addr);
  let accepted = 0;
  s.on('accepted', () => accepted++);
  await until(() => s.sendable(), 'credit');
  // One at a time: each message goes to whoever has fewer outstanding, so after the first one
  // the stalled receiver (which settles nothing) gets no more.
  for (let i = 0; i < 20; i++) {
    s.send({ body: i });
    await until(() => accepted + sg.length + ctx.router.stats().held === i + 1, `message ${i} placed`);
  }
  assert.is(sg.length + ctx.router.stats().held, 1, 'the stalled receiver got one');
  assert.is(qg.length, 19);
});

t('accepting one delivery and releasing the next in one pass: the sender hears each outcome (rhea range bug fixed)', async (ctx) => {
  const addr = 'openstack.org/om/rpc/anycast/openstack/mixed';
  const r = (await conn(ctx)).open_receiver({ source: { address: addr }, autoaccept: false } as never);
  const got: EventContext[] = [];
  r.on('message', (e: EventContext) => got.push(e));
  await opened(r);
  const s = (await conn(ctx)).open_sender({ target: { address: addr } } as never);
  const o = outcomes(s);
  await until(() => s.sendable(), 'credit');
  for (let i = 0; i < 4; i++) o.sent.set(s.send({ body: i }), i);
  await until(() => got.length === 4, 'four deliveries');
  got[0]!.delivery!.accept();
  got[1]!.delivery!.release();
  got[2]!.delivery!.release();
  got[3]!.delivery!.accept();
  await until(() => o.got.size === 4, 'four outcomes');
  assert.equal(
    [0, 1, 2, 3].map((i) => o.got.get(i)!.kind),
    ['accepted', 'released', 'released', 'accepted'],
  );
});

// AMQP 1.0 §3.2.1: a ttl counts from arrival at an intermediary; one that runs out is discarded,
// and one passed on carries what is left. Qpid Dispatch ignores ttls; a router that forwarded
// them ran calls whose callers had given up (see rpc-amqp1 "a call that timed out…").
t(
  'a message whose ttl runs out while it waits for credit is dropped at once: rejected (hermod:ttl-expired), counted; one without a ttl waits on',
  async (ctx) => {
    const addr = 'openstack.org/om/rpc/anycast/openstack/ttl';
    const r = (await conn(ctx)).open_receiver({ source: { address: addr }, credit_window: 0 } as never);
    const got = collect(r);
    await opened(r);
    const s = (await conn(ctx)).open_sender({ target: { address: addr } } as never);
    const o = outcomes(s);
    await until(() => s.sendable(), 'credit');
    for (let i = 0; i < 5; i++) o.sent.set(s.send({ body: i, ttl: 200 }), i);
    o.sent.set(s.send({ body: 'no ttl' }), 5);
    await until(() => ctx.router.stats().held === 6, 'all six held for the receiver without credit');
    // The receiver grants nothing: they must not sit there holding their sender's credit and the
    // held-bytes budget (a peer sending 1 ms ttls to a busy receiver filled both with dead messages).
    await until(() => o.got.size === 5, `an outcome for each expired one, with no credit granted (${o.got.size})`, 5000);
    for (let i = 0; i < 5; i++) {
      const out = o.got.get(i)!;
      assert.is(out.kind, 'rejected', `message ${i}`);
      assert.is(out.error?.condition, 'hermod:ttl-expired');
    }
    assert.is(ctx.router.stats().expired, 5);
    assert.is(ctx.router.stats().held, 1);
    r.add_credit(10);
    await until(() => got.length === 1, 'the one without a ttl delivered');
    await until(() => o.got.get(5)?.kind === 'accepted', 'and accepted');
    await sleep(100);
    assert.equal(
      got.map((m) => m.body),
      ['no ttl'],
    );
  },
);

t('a held message goes out with its ttl less the time it waited; one forwarded at once keeps its ttl', async (ctx) => {
  const addr = 'openstack.org/om/rpc/anycast/openstack/ttl-left';
  const r = (await conn(ctx)).open_receiver({ source: { address: addr }, credit_window: 0 } as never);
  const got: Array<{ body: unknown; ttl: number | undefined }> = [];
  r.on('message', (e: EventContext) => got.push({ body: e.message!.body, ttl: e.message!.ttl }));
  await opened(r);
  const s = (await conn(ctx)).open_sender({ target: { address: addr } } as never);
  await until(() => s.sendable(), 'credit');
  s.send({ body: 'held', ttl: 10_000 });
  await until(() => ctx.router.stats().held === 1, 'held');
  await sleep(1500);
  r.add_credit(2);
  await until(() => got.length === 1, 'the held one delivered');
  const left = got[0]!.ttl!;
  assert.ok(left > 0 && left <= 8600, `ttl passed on after 1.5 s held: ${left}`);
  s.send({ body: 'at once', ttl: 10_000 });
  await until(() => got.length === 2, 'the next one delivered');
  assert.equal(got[1], { body: 'at once', ttl: 10_000 });
  assert.is(ctx.router.stats().expired, 0);
});

t("a peer's end is answered with the router's end (AMQP 1.0 2.7.8), session after session on one connection", async (ctx) => {
  const c = await conn(ctx);
  for (let i = 0; i < 3; i++) {
    const session = c.create_session();
    const begun = new Promise<void>((resolve) => session.once('session_open', () => resolve()));
    session.begin();
    await begun;
    // rhea's client emits session_close only once the router's own end has come back.
    const ended = new Promise<string>((resolve) => session.once('session_close', () => resolve('end')));
    session.close();
    const outcome = await Promise.race([ended, lapse(5000).then(() => 'no end from the router within 5 s')]);
    assert.is(outcome, 'end', `session ${i}`);
    assert.ok(session.is_closed(), `session ${i} closed on both sides`);
  }
});

t.run();
