import { createRequire } from 'node:module';
import type net from 'node:net';
import type { Connection, EventContext } from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Router, type RouterOptions } from '../../src/router/router.js';
import { RawPeer, raw } from '../support/amqp-raw.js';
import { lapse, sleep, until } from '../support/assert.js';
import { rheaClose, rheaConnect } from '../support/rhea-peer.js';

interface Ctx {
  router: Router;
  port: number;
  log: string[];
  peers: RawPeer[];
  conns: Connection[];
}
const t = suite<Ctx>('router - peers that abuse what the router holds for them (raw sockets)', {
  router: undefined as never,
  port: 0,
  log: [],
  peers: [],
  conns: [],
});

async function startRouter(ctx: Ctx, o: RouterOptions = {}): Promise<void> {
  ctx.log = [];
  ctx.router = new Router({ port: 0, log: (l) => ctx.log.push(l), ...o });
  ctx.port = await ctx.router.start();
}

async function open(ctx: Ctx): Promise<RawPeer> {
  const p = await RawPeer.open(ctx.port);
  ctx.peers.push(p);
  return p;
}

t.before.each((ctx) => {
  ctx.peers = [];
  ctx.conns = [];
});
t.after.each(async (ctx) => {
  for (const p of ctx.peers) p.destroy();
  for (const c of ctx.conns) await rheaClose(c);
  await ctx.router.stop();
});

const requireCjs = createRequire(import.meta.url);
const rheaFrames = requireCjs('rhea/lib/frames.js') as Record<string, (fields: Record<string, unknown>) => object> & {
  write_frame(f: object): Buffer;
  amqp_frame(channel: number, p: object, payload?: Buffer): object;
};
const amqp = (p: object, payload?: Buffer) => rheaFrames.write_frame(rheaFrames.amqp_frame(0, p, payload));

/** The router's side of each accepted socket. */
const routerSockets = (ctx: Ctx) => [...(ctx.router as unknown as { sockets: Set<net.Socket> }).sockets];

/**
 * Twenty attach and detach pairs as one buffer. Long link names make each answer large (the
 * router's attach names the link): fewer frames for the router to get through before its answers
 * outgrow what the kernel takes.
 */
function attachDetachPairs(): Buffer {
  const long = 'n'.repeat(30_000);
  const pairs: Buffer[] = [];
  for (let i = 0; i < 20; i++) {
    pairs.push(amqp(rheaFrames.attach({ name: `x${i}${long}`, handle: 1, role: true, source: { address: 'q' }, target: {} })));
    pairs.push(amqp(rheaFrames.detach({ handle: 1, closed: true })));
  }
  return Buffer.concat(pairs);
}

t('a peer that sends attach/detach pairs and never reads: the router stops reading it instead of queueing the answers', async (ctx) => {
  // One such connection took a router from 66 MB to 1.2 GB: every attach and detach is answered,
  // and the answers queued in the socket of a peer that reads nothing.
  await startRouter(ctx, { idleTimeout: 0 });
  const p = await open(ctx);
  p.socket.pause();
  const chunk = attachDetachPairs();
  let peak = 0;
  let sent = 0;
  const watch = setInterval(() => {
    for (const s of routerSockets(ctx)) peak = Math.max(peak, s.writableLength);
  }, 5);
  try {
    // Written with backpressure until the router stops taking it (nothing drains for 500 ms) or 32 MiB went.
    while (sent < 32 * 1024 * 1024 && !p.socket.destroyed) {
      sent += chunk.length;
      if (!p.socket.write(chunk)) {
        const drained = await Promise.race([new Promise((r) => p.socket.once('drain', () => r(true))), lapse(500).then(() => false)]);
        if (!drained) break;
      }
    }
    await sleep(100);
  } finally {
    clearInterval(watch);
  }
  for (const s of routerSockets(ctx)) peak = Math.max(peak, s.writableLength);
  // Its bound (2 MiB), and the answers to the reads that found it crossed (the check runs as
  // input arrives; libuv reads up to 32 chunks of 64 KiB at a time). It was 29 MiB: all 32 MiB
  // answered.
  assert.ok(peak < 6 * 1024 * 1024, `the router queued ${peak} bytes of answers for a peer that reads nothing`);
  // Reading again, the peer gets every answer, and the router reads it again.
  p.socket.resume();
  p.write(amqp(rheaFrames.attach({ name: 'last', handle: 2, role: true, source: { address: 'last' }, target: {} })));
  const attaches = (sent / chunk.length) * 20 + 1;
  const end = Date.now() + 20_000;
  while (p.count('attach#12') < attaches && Date.now() < end) await sleep(20);
  assert.is(p.count('attach#12'), attaches, 'every attach is answered, the last one too');
  assert.ok(!p.socket.destroyed, 'the connection stays up');
});

t('a peer the router stopped reading is closed once silent for twice the idle timeout', async (ctx) => {
  await startRouter(ctx, { idleTimeout: 500 });
  const p = await open(ctx);
  p.socket.pause();
  const chunk = attachDetachPairs();
  // Enough that its answers outgrow the kernel's buffers and the router's bound.
  for (let i = 0; i < 20; i++) p.write(chunk);
  await until(() => routerSockets(ctx).some((s) => s.isPaused()), 'the router to stop reading the peer');
  let closed = false;
  void p.closed.then(() => {
    closed = true;
  });
  await until(() => closed, 'the router to close the connection', 10_000);
  await until(() => ctx.router.stats().connections === 0, 'the router to forget the connection');
});

t('a delivery-tag over 32 octets closes its connection with a framing error; one of 32 is delivered', async (ctx) => {
  // AMQP 1.0 §2.8.7. Unsettled deliveries pinning 60 KB tags took a router to 1.5 GB.
  await startRouter(ctx);
  const rx = await rheaConnect(ctx.port);
  const tx = await rheaConnect(ctx.port);
  ctx.conns.push(rx, tx);
  const got: Buffer[] = [];
  const receiver = rx.open_receiver({ source: 'tags', credit_window: 10 });
  receiver.on('message', (e: EventContext) => got.push(e.delivery!.tag as Buffer));
  await new Promise((r) => receiver.once('receiver_open', r));
  const sender = tx.open_sender({ target: 'tags' });
  await new Promise((r) => sender.once('sendable', r));
  sender.send({ body: 'ok' }, Buffer.alloc(32, 1));
  await until(() => got.length === 1, 'the message with a 32-octet tag');
  let e: { condition?: string; description?: string } | undefined;
  tx.once('connection_error', (ev: EventContext) => {
    e = (ev.connection.error ?? {}) as never;
  });
  sender.send({ body: 'too long' }, Buffer.alloc(33, 2));
  await until(() => e !== undefined, 'the connection to be closed', 5000);
  assert.ok(e);
  assert.is(e.condition, 'amqp:connection:framing-error');
  assert.match(String(e.description), /delivery-tag of 33 octets, over AMQP's limit of 32/);
  await sleep(50);
  assert.is(got.length, 1, 'the message with the long tag was not forwarded');
  assert.ok(rx.is_open(), 'other connections stay up');
});

for (const how of ['detach', 'end'] as const) {
  t(
    `a message half sent when its link is detached (${how}): its bytes stop counting against the connection and the router`,
    async (ctx) => {
      // They stayed charged until the connection closed: a client sending the first 1 MB of a
      // message and detaching, 67 times, was closed for holding 67 MB that nothing was sending.
      await startRouter(ctx, { maxMessageSize: 200_000, maxHeldBytes: 200_000 });
      const assembling = () => (ctx.router as unknown as { assembling: { bytes: number } }).assembling.bytes;
      const p = await open(ctx);
      const part = Buffer.alloc(50_000, 7);
      for (let i = 0; i < 6; i++) {
        if (how === 'end' && i > 0) {
          p.write(amqp(rheaFrames.begin({ next_outgoing_id: 0, incoming_window: 2048, outgoing_window: 2048 })));
        }
        p.write(raw.attach(0, 'sender', 'phantom'));
        p.write(raw.transfer({ handle: 0, delivery_id: how === 'detach' ? i : 0, delivery_tag: Buffer.from('t'), more: true }, part));
        p.write(raw.transfer({ handle: 0, more: true }, part));
        await until(() => assembling() === 100_000, 'the router to count the half-sent message');
        p.write(how === 'detach' ? amqp(rheaFrames.detach({ handle: 0, closed: true })) : amqp(rheaFrames.end({})));
        await until(() => assembling() === 0, `the ${how} to give back what the message counted`, 3000);
      }
      // Six of them are 600 KB: over the bound of 4 x 200 KB on one connection, and the router's 200 KB.
      assert.ok(!p.socket.destroyed && !p.names.includes('close#18'), p.names.join(','));
      assert.is(ctx.router.stats().refused, 0, ctx.log.join('\n'));
    },
  );
}

t(
  'peers hoarding half-sent messages over --max-held-bytes: the one holding the most is closed, not the sender that crossed it',
  async (ctx) => {
    // Four peers each holding 90% of a message used up the shared bound, and the honest sender
    // whose frame crossed it was the one disconnected.
    await startRouter(ctx, { maxMessageSize: 100_000, maxHeldBytes: 400_000 });
    const hoarders: RawPeer[] = [];
    const part = Buffer.alloc(45_000, 7);
    for (let i = 0; i < 4; i++) {
      const p = await open(ctx);
      hoarders.push(p);
      p.write(raw.attach(0, 'sender', 'hoard'));
      p.write(raw.transfer({ handle: 0, delivery_id: 0, delivery_tag: Buffer.from('t'), more: true }, part));
      p.write(raw.transfer({ handle: 0, more: true }, i === 0 ? Buffer.concat([part, Buffer.alloc(100)]) : part));
    }
    const assembling = () => (ctx.router as unknown as { assembling: { bytes: number } }).assembling.bytes;
    await until(() => assembling() === 360_100, 'the router to count the hoarded bytes');
    const rx = await rheaConnect(ctx.port);
    const tx = await rheaConnect(ctx.port);
    ctx.conns.push(rx, tx);
    let got = 0;
    const receiver = rx.open_receiver({ source: 'honest', credit_window: 10 });
    receiver.on('message', () => got++);
    await new Promise((r) => receiver.once('receiver_open', r));
    const sender = tx.open_sender({ target: 'honest' });
    await new Promise((r) => sender.once('sendable', r));
    sender.send({ body: Buffer.alloc(90_000, 1) });
    await until(() => got === 1, 'the honest message to arrive');
    // The first hoarder holds 100 bytes more than the others: it goes.
    let closed = false;
    void hoarders[0]!.closed.then(() => {
      closed = true;
    });
    await until(() => closed, 'the biggest hoarder to be closed');
    assert.ok(tx.is_open(), 'the honest sender stays connected');
    for (const p of hoarders.slice(1)) assert.ok(!p.socket.destroyed, 'the other hoarders are not closed');
    assert.ok(
      ctx.log.some((l) =>
        /its messages still arriving hold 90100 bytes, the most of any connection, when those of all connections reached \d+ \(--max-held-bytes 400000\) \(amqp:resource-limit-exceeded\)/.test(
          l,
        ),
      ),
      ctx.log.join('\n'),
    );
    assert.ok(hoarders[0]!.names.includes('close#18'), hoarders[0]!.names.join(','));
  },
);

const hostileTransfers: [string, (p: RawPeer) => void, RegExp][] = [
  [
    // rhea read the router's sender as a receiver: "Cannot read properties of undefined (reading 'connection')".
    'a transfer on a link where the peer receives',
    (p) => {
      p.write(raw.attach(0, 'receiver', 'q'));
      p.write(raw.transfer({ handle: 0, delivery_id: 0, delivery_tag: Buffer.from('t') }, raw.message('q', 'x')));
    },
    /transfer on handle 0, a link on which the peer receives: it may not send there \(amqp:decode-error\)/,
  ],
  [
    // With no credit the socket dropped with no close; with credit it was forwarded with no id.
    'a first transfer without a delivery-id',
    (p) => {
      p.write(raw.attach(0, 'sender', 'q'));
      p.write(raw.transfer({ handle: 0, delivery_tag: Buffer.from('t') }, raw.message('q', 'x')));
    },
    /first transfer of a delivery without a delivery-id \(AMQP 1\.0 §2\.7\.5\) \(amqp:decode-error\)/,
  ],
];
for (const [what, send, logged] of hostileTransfers) {
  t(`${what} closes the connection with amqp:decode-error, saying so`, async (ctx) => {
    await startRouter(ctx);
    const p = await open(ctx);
    send(p);
    let closed = false;
    void p.closed.then(() => {
      closed = true;
    });
    await until(() => closed, 'the connection to be closed', 5000);
    assert.ok(p.names.includes('close#18'), `a close frame first: ${p.names.join(',')}`);
    assert.ok(
      ctx.log.some((l) => logged.test(l)),
      ctx.log.join('\n'),
    );
    const c = await rheaConnect(ctx.port);
    ctx.conns.push(c);
    assert.ok(c.is_open());
  });
}

t.run();
