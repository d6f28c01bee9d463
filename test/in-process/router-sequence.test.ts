import type { Connection, EventContext } from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Router } from '../../src/router/router.js';
import { RawPeer, raw } from '../support/amqp-raw.js';
import { sleep, until } from '../support/assert.js';
import { rheaClose, rheaConnect } from '../support/rhea-peer.js';

// Sequence numbers and flow fields a hostile peer chooses (AMQP 1.0 delivery ids and delivery
// counts are serial numbers that wrap at 2^32): the router neither crashes, nor stalls, nor
// closes a well-behaved peer whose ids wrap. Each case was found by a fuzzer against rhea 3.0.5.

interface Ctx {
  router: Router;
  port: number;
  conns: Connection[];
  peers: RawPeer[];
}
const t = suite<Ctx>('router - sequence numbers and flow fields from a hostile peer', {
  router: undefined as never,
  port: 0,
  conns: [],
  peers: [],
});

t.before.each(async (ctx) => {
  ctx.conns = [];
  ctx.peers = [];
  ctx.router = new Router({ port: 0, log: () => {} });
  ctx.port = await ctx.router.start();
});
t.after.each(async (ctx) => {
  for (const p of ctx.peers) p.destroy();
  for (const c of ctx.conns) await rheaClose(c);
  await ctx.router.stop();
});

async function peer(ctx: Ctx): Promise<RawPeer> {
  const p = await RawPeer.open(ctx.port);
  ctx.peers.push(p);
  return p;
}

/** A rhea consumer of `address`: the bodies it got. */
async function consumer(ctx: Ctx, address: string): Promise<unknown[]> {
  const got: unknown[] = [];
  const c = await rheaConnect(ctx.port);
  ctx.conns.push(c);
  const r = c.open_receiver(address);
  r.on('message', (e: EventContext) => void got.push(e.message?.body));
  await new Promise((res) => r.once('receiver_open', res));
  return got;
}

/** A fresh client sends one message to a fresh consumer; resolves with how long it took (ms). */
async function roundTrip(ctx: Ctx): Promise<number> {
  const t0 = Date.now();
  const address = `health-${Math.random()}`;
  const got = await consumer(ctx, address);
  const c = await rheaConnect(ctx.port);
  ctx.conns.push(c);
  c.open_sender(address).once('sendable', (e: EventContext) => void e.sender!.send({ body: 'hi' }));
  await until(() => got.length === 1, 'a round trip through the router', 3000);
  return Date.now() - t0;
}

t(
  "a sender's drain flow with delivery-count 2^32-1, then a transfer: no crash (the router's next flow wrote 2^32 and threw)",
  async (ctx) => {
    const got = await consumer(ctx, 'victim');
    const p = await peer(ctx);
    p.write(raw.attach(0, 'sender', 'victim'));
    await until(() => p.count('flow#13') > 0, 'credit from the router');
    p.write(raw.flow({ handle: 0, delivery_count: 0xffffffff, link_credit: 0, drain: true }));
    p.write(raw.transfer({ handle: 0, delivery_id: 0, delivery_tag: Buffer.from('t') }, raw.message('victim', 'boom')));
    await sleep(300);
    assert.ok((await roundTrip(ctx)) < 3000);
    assert.ok(got.length <= 1, `got ${got.length}`);
  },
);

t("a consumer's drain flow with a delivery-count behind the router's: no endless drain loop", async (ctx) => {
  const p = await peer(ctx);
  p.write(raw.attach(0, 'receiver', 'q'));
  p.write(raw.flow({ handle: 0, delivery_count: 0, link_credit: 1 }));
  const c = await rheaConnect(ctx.port);
  ctx.conns.push(c);
  c.open_sender('q').once('sendable', (e: EventContext) => void e.sender!.send({ body: 'one' }));
  await until(() => p.count('transfer#14') === 1, 'the consumer getting its one transfer');
  // Credit 0 + 0 - 1 = -1 for rhea, whose drain loop counts credit down to zero one by one.
  p.write(raw.flow({ handle: 0, delivery_count: 0, link_credit: 0, drain: true }));
  await sleep(100);
  assert.ok((await roundTrip(ctx)) < 3000);
  // The drain is answered: a flow back with the credit used up.
  await until(() => p.count('flow#13') >= 1, "the router's answer to the drain");
});

t("a consumer's drain flow with 2^32-1 credit is answered at once (rhea counted it down one by one, 35 s)", async (ctx) => {
  const p = await peer(ctx);
  p.write(raw.attach(0, 'receiver', 'q2'));
  await sleep(50);
  const flowsBefore = p.count('flow#13');
  const t0 = Date.now();
  p.write(raw.flow({ handle: 0, delivery_count: 5, link_credit: 0xffffffff, drain: true }));
  await until(() => p.count('flow#13') > flowsBefore, 'the drained flow', 3000);
  assert.ok(Date.now() - t0 < 3000);
  assert.ok((await roundTrip(ctx)) < 3000);
});

t('dispositions spanning all 2^32 delivery ids, both roles: the router stays responsive (rhea walked the range, ~48 s)', async (ctx) => {
  const p = await peer(ctx);
  for (const role of [true, false]) p.write(raw.disposition({ role, first: 0, last: 0xffffffff, settled: true }));
  await sleep(50);
  assert.ok((await roundTrip(ctx)) < 3000);
});

t("a sender's delivery ids wrapping past 2^32-1 are accepted and forwarded in order (the connection was closed)", async (ctx) => {
  const got = await consumer(ctx, 'wrap');
  const p = await peer(ctx);
  p.write(raw.attach(0, 'sender', 'wrap'));
  await until(() => p.count('flow#13') > 0, 'credit from the router');
  for (const [id, body] of [
    [0xfffffffe, 'a'],
    [0xffffffff, 'b'],
    [0, 'c'],
    [1, 'd'],
  ] as const) {
    p.write(raw.transfer({ handle: 0, delivery_id: id, delivery_tag: Buffer.from(body) }, raw.message('wrap', body)));
  }
  await until(() => got.length === 4, 'four messages', 3000);
  assert.equal(got, ['a', 'b', 'c', 'd']);
  // Settled: each got its disposition (ids written modulo 2^32), and the connection stayed open.
  await until(() => p.count('disposition#15') >= 1, 'dispositions to the sender');
  assert.not.ok(p.names.includes('close#18'), p.names.join(','));
  assert.not.ok(p.socket.destroyed);
});

t('an aborted delivery is discarded, not forwarded (rhea forwarded the frames so far as a message); the link goes on', async (ctx) => {
  const got = await consumer(ctx, 'ab');
  const p = await peer(ctx);
  p.write(raw.attach(0, 'sender', 'ab'));
  await until(() => p.count('flow#13') > 0, 'credit from the router');
  const tag = (s: string) => Buffer.from(s);
  // A first frame holding a whole message, then the abort.
  p.write(raw.transfer({ handle: 0, delivery_id: 0, delivery_tag: tag('0'), more: true }, raw.message('ab', 'aborted 1')));
  p.write(raw.transfer({ handle: 0, more: false, aborted: true }));
  // An aborted delivery in one frame, payload and all.
  p.write(raw.transfer({ handle: 0, delivery_id: 1, delivery_tag: tag('1'), aborted: true }, raw.message('ab', 'aborted 2')));
  p.write(raw.transfer({ handle: 0, delivery_id: 2, delivery_tag: tag('2') }, raw.message('ab', 'kept')));
  await until(() => got.length >= 1, 'the message after the aborted ones');
  await sleep(100);
  assert.equal(got, ['kept']);
  // Only the kept one is answered: an aborted delivery is settled by its sender.
  await until(() => p.count('disposition#15') === 1, 'one disposition');
  assert.not.ok(p.names.includes('close#18'), p.names.join(','));
});

for (const counter of ['delivery ids', 'transfer ids'] as const) {
  t(
    `the router's own ${counter} past 2^32-1 (a day of traffic on one session at 50k/s): written modulo 2^32, settled, still sending`,
    async (ctx) => {
      const got: unknown[] = [];
      const c = await rheaConnect(ctx.port);
      ctx.conns.push(c);
      const r = c.open_receiver('far');
      r.on('message', (e: EventContext) => void got.push(e.message?.body));
      const snd = c.open_sender('far');
      await new Promise((res) => snd.once('sendable', res));
      type Out = { next_delivery_id: number; next_pending_delivery: number; next_transfer_id: number; remote_next_transfer_id: number };
      type Sess = { outgoing: Out; incoming: { next_delivery_id: number }; links: Record<string, { is_sender(): boolean }> };
      const sessions = (conn: unknown) => Object.values((conn as { local_channel_map: Record<string, Sess> }).local_channel_map);
      // White-box: the counters of the router's session to this client moved near the wrap.
      for (const rc of (ctx.router as unknown as { connections: Iterable<unknown> }).connections) {
        for (const s of sessions(rc)) {
          if (!Object.values(s.links).some((l) => l.is_sender())) continue;
          if (counter === 'delivery ids') {
            s.outgoing.next_delivery_id = 0xfffffffe;
            s.outgoing.next_pending_delivery = 0xfffffffe;
          } else {
            s.outgoing.next_transfer_id = 0xfffffffe;
            s.outgoing.remote_next_transfer_id = 0xfffffffe;
          }
        }
      }
      if (counter === 'delivery ids') for (const s of sessions(c)) s.incoming.next_delivery_id = 0xfffffffe;
      // More than a session window's worth after the wrap: a window computed across it stalls.
      const n = 3000;
      for (let i = 0; i < n; i += 500) {
        for (let j = i; j < i + 500; j++) snd.send({ body: j });
        await until(() => got.length === i + 500, `${i + 500} messages through the wrap`, 10_000);
      }
      assert.equal(got.slice(0, 5), [0, 1, 2, 3, 4]);
      await until(() => ctx.router.stats().held === 0, 'everything settled at the router');
    },
  );
}

t(
  "a peer's open asking for a 1 ms idle timeout does not set the router's heartbeat rate (one heartbeat per 0.5 ms before)",
  async (ctx) => {
    const p = await RawPeer.open(ctx.port, { idle_time_out: 1 });
    ctx.peers.push(p);
    const before = p.count('empty');
    await sleep(1200);
    const beats = p.count('empty') - before;
    assert.ok(beats >= 2 && beats <= 8, `${beats} heartbeats in 1.2 s`);
  },
);

t.run();
