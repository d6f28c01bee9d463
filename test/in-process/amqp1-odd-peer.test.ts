import { createRequire } from 'node:module';
import type { AddressInfo, Server } from 'node:net';
import rhea from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultConfig, getTransport, NotificationListener, Notifier, RPCClient, Target, type Transport } from '../../src/index.js';
import { clearRheaTimers } from '../../src/rhea/index.js';
import { rejects, until } from '../support/assert.js';
import { Collector } from '../support/notify-cases.js';

// hermod's AMQP 1.0 driver against a peer that is no router of ours: a plain rhea container that
// forwards each message to the links whose source is its address, and misbehaves on request.

const require = createRequire(import.meta.url);
const Frames = require('rhea/lib/frames.js') as { transfer(fields: Record<string, unknown>): unknown };

interface Peer {
  port: number;
  /** The peer's sending links (hermod's receivers), open ones last. */
  senders: rhea.Sender[];
  /** While true, attaches on connections opened from now on get no answer. */
  swallowAttaches: boolean;
  swallowed: number;
  connections: rhea.Connection[];
  /** A transport to the peer (fast reconnects, with `overrides`), closed by {@link close}. */
  open(overrides?: Record<string, unknown>): Promise<Transport>;
  /** Closes the transports it opened, then its side of every connection. */
  close(): Promise<void>;
}

/** A link whose connection's socket the test destroyed (rhea on this side still calls it open). */
const dropped = (s: rhea.Sender) => (s.connection as unknown as { socket?: { destroyed: boolean } }).socket?.destroyed !== false;

async function forwardingPeer(opts: { noCredit?: boolean } = {}): Promise<Peer> {
  const container = rhea.create_container({ id: 'forwarding-peer' });
  container.on('error', () => {});
  container.on('disconnected', () => {});
  const peer = { senders: [] as rhea.Sender[], connections: [] as rhea.Connection[], swallowAttaches: false, swallowed: 0 } as Peer;
  container.on('connection_open', (ctx: rhea.EventContext) => {
    peer.connections.push(ctx.connection);
    if (!peer.swallowAttaches) return;
    const conn = ctx.connection as unknown as { on_attach(frame: unknown): void };
    const original = conn.on_attach;
    conn.on_attach = function (frame) {
      if (peer.swallowAttaches) peer.swallowed++;
      else original.call(this, frame);
    };
  });
  let dynamic = 0;
  container.on('sender_open', (ctx: rhea.EventContext) => {
    const s = ctx.sender!;
    // A reply link asks for an address of the peer's choosing, as a router assigns one.
    if ((s.source as { dynamic?: boolean }).dynamic) s.set_source({ address: `dynamic/${++dynamic}` });
    peer.senders.push(s);
  });
  container.on('message', (ctx: rhea.EventContext) => {
    const to = (ctx.message!.to as string | undefined) ?? ctx.receiver!.target.address;
    const sender = peer.senders.findLast((s) => s.source.address === to && s.is_open() && !dropped(s) && s.sendable());
    ctx.delivery!.accept();
    sender?.send(ctx.message!);
  });
  const listener = container.listen({
    port: 0,
    host: '127.0.0.1',
    ...(opts.noCredit ? { credit_window: 0 } : {}),
  } as never) as unknown as Server;
  await new Promise((r) => listener.once('listening', r));
  peer.port = (listener.address() as AddressInfo).port;
  const transports: Transport[] = [];
  peer.open = async (overrides = {}) => {
    const tr = await getTransport(`amqp://127.0.0.1:${peer.port}/`, {
      config: defaultConfig(),
      overrides: { 'amqp1.retryInterval': 50, 'amqp1.intervalMax': 200, ...overrides },
    });
    transports.push(tr);
    return tr;
  };
  peer.close = async () => {
    for (const tr of transports) await tr.close();
    for (const c of peer.connections) {
      (c as unknown as { socket?: { destroy(): void } }).socket?.destroy();
      clearRheaTimers(c);
    }
    await new Promise((r) => listener.close(r));
  };
  return peer;
}

/**
 * Writes the first frames of a delivery on `s` and never the last (`more=true` throughout), as a
 * router does that dies in the middle of a large message.
 */
function sendUnfinished(s: rhea.Sender): void {
  const link = s as unknown as {
    session: {
      outgoing: { next_delivery_id: number; next_pending_delivery: number; next_transfer_id: number };
      output(frame: unknown, payload: Buffer): void;
    };
    local: { handle: number };
    credit: number;
    delivery_count: number;
  };
  // Past rhea's own bookkeeping of the session's outgoing deliveries: it sends none of these.
  const id = link.session.outgoing.next_delivery_id++;
  link.session.outgoing.next_pending_delivery++;
  link.credit--;
  link.delivery_count++;
  for (let i = 0; i < 3; i++) {
    const frame = Frames.transfer({
      handle: link.local.handle,
      delivery_id: id,
      delivery_tag: Buffer.from(`unfinished-${id}`),
      message_format: 0,
      settled: false,
      more: true,
    });
    link.session.outgoing.next_transfer_id++;
    link.session.output(frame, i === 0 ? Buffer.from([0x00, 0x53, 0x77, 0xa1, 0x05]) : Buffer.alloc(200, 0x41));
  }
}

const t = suite('amqp1: a peer that is no router of ours');

t(
  'a delivery cut off in the middle by a lost connection does not poison the reconnected link (rhea kept it: "frame sequence error")',
  async () => {
    const peer = await forwardingPeer();
    const open = peer.open;
    const c = new Collector();
    const listener = new NotificationListener(await open(), [new Target({ topic: 'cut' })], [c]);
    try {
      await listener.start();
      const notifier = new Notifier(await open(), { publisherId: 'p', topics: ['cut'] });
      await notifier.info({}, 'first', { n: 1 });
      await until(() => c.got.length === 1, 'the first notification', 10_000);
      // The listener's link for info notifications, and the connection under it.
      const link = peer.senders.findLast((s) => s.is_open() && s.source.address?.endsWith('.cut.info'))!;
      const attachesBefore = peer.senders.length;
      sendUnfinished(link);
      await new Promise((r) => setTimeout(r, 100));
      (link.connection as unknown as { socket: { destroy(): void } }).socket.destroy();
      await until(
        () => peer.senders.slice(attachesBefore).some((s) => s.source.address === link.source.address && s.sendable()),
        'the listener to re-attach after its reconnect, and give credit',
        10_000,
      );
      await notifier.info({}, 'second', { n: 2 });
      // Before: the first transfer on the new connection closed it ("delivery 1 not complete, got
      // 0"), and every connection after it, and the listener heard nothing again.
      await until(() => c.got.length === 2, 'the notification sent after the reconnect', 10_000);
      assert.equal(
        c.got.map((n) => n.eventType),
        ['first', 'second'],
      );
    } finally {
      await listener.stop();
      await listener.wait(1000);
      await peer.close();
    }
  },
);

t(
  "attaches of the driver's own links that the peer never answers after a reconnect: it connects again after amqp1.connectTimeout, not never",
  async () => {
    const peer = await forwardingPeer();
    const states: string[] = [];
    const open = peer.open;
    const c = new Collector();
    const listener = new NotificationListener(await open(), [new Target({ topic: 'mute' })], [c]);
    try {
      await listener.start();
      const tr = await open({ 'amqp1.connectTimeout': 1000, 'rpc.responseTimeout': 15_000 });
      tr.on('state', (s: { state: string; error?: Error }) => states.push(`${s.state}${s.error ? `: ${s.error.message}` : ''}`));
      const notifier = new Notifier(tr, { publisherId: 'p', topics: ['mute'] });
      await notifier.info({}, 'first', { n: 1 });
      await until(() => c.got.length === 1, 'the first notification', 10_000);
      // The notifier's connection drops; its reconnect finds a peer that answers no attach for a while.
      peer.swallowAttaches = true;
      const own = peer.connections.at(-1)!;
      (own as unknown as { socket: { destroy(): void } }).socket.destroy();
      await until(() => peer.swallowed >= 3, "the reconnect's attaches, swallowed", 10_000);
      peer.swallowAttaches = false;
      const t0 = Date.now();
      // Before: the connection stayed up with its senders never attached, and every send waited
      // out its timeout, as long as the peer's heartbeats came.
      await notifier.info({}, 'second', { n: 2 });
      await until(() => c.got.length === 2, 'the notification sent after the peer answers again', 10_000);
      assert.ok(Date.now() - t0 < 10_000, `${Date.now() - t0} ms`);
      assert.ok(
        states.some((s) => /did not answer the attach of link hermod\/sender\/\w+\/[0-9a-f]+ within 1000 ms/.test(s)),
        states.join('\n'),
      );
    } finally {
      await listener.stop();
      await listener.wait(1000);
      await peer.close();
    }
  },
);

t(
  'a peer gone silent (no frames, no heartbeats) is reported as that, with the timeout that decided it, not as "the peer closed the connection"',
  async () => {
    const peer = await forwardingPeer();
    const tr = await getTransport(`amqp://127.0.0.1:${peer.port}/`, {
      config: defaultConfig(),
      overrides: { 'amqp1.idleTimeout': 300, 'amqp1.retryInterval': 50 },
    });
    const lost: string[] = [];
    tr.on('state', (s: { state: string; error?: Error }) => {
      if (s.state === 'disconnected') lost.push(s.error?.message ?? '(no error)');
    });
    try {
      const notifier = new Notifier(tr, { publisherId: 'p', topics: ['quiet'] });
      await notifier.info({}, 'first', { n: 1 });
      // The peer writes nothing from now on, heartbeats included; it still reads.
      const socket = (peer.connections.at(-1) as unknown as { socket: { write: (b: unknown) => boolean } }).socket;
      socket.write = () => true;
      await until(() => lost.length > 0, 'the silent peer taken for dead', 10_000);
      assert.match(lost[0]!, /the peer sent nothing, not even a heartbeat, for 600 ms \(twice amqp1\.idleTimeout\): taken for dead/);
    } finally {
      await tr.close();
      await peer.close();
    }
  },
);

t('a call the peer never gave credit for says it timed out waiting to send, not waiting for a reply', async () => {
  const peer = await forwardingPeer({ noCredit: true });
  const tr = await getTransport(`amqp://127.0.0.1:${peer.port}/`, { config: defaultConfig() });
  try {
    const client = new RPCClient(tr, new Target({ topic: 'nocredit' }), { timeout: 800 });
    // Before: "Timed out waiting for a reply to message ID …", for a request that never left. The
    // send's own wait and the reply's share the deadline; either may say it first, both alike.
    await rejects(client.call({}, 'echo'), 'HERMOD_ERR_TIMEOUT', /^timed out waiting to send call echo \(after \d+ ms\)/);
    // A cast says the same in its own words.
    await rejects(client.cast({}, 'echo'), 'HERMOD_ERR_TIMEOUT', /timed out waiting to send/);
  } finally {
    await tr.close();
    await peer.close();
  }
});

t(
  'sends whose deadline passed unsettled give their session-buffer slots back: 2100 casts a peer never settles do not stop the next ones',
  async () => {
    // A peer that settles nothing sent to 'held', and accepts the rest.
    const container = rhea.create_container({ id: 'settles-some' });
    container.on('error', () => {});
    container.on('disconnected', () => {});
    const connections: rhea.Connection[] = [];
    container.on('connection_open', (ctx: rhea.EventContext) => connections.push(ctx.connection));
    container.on('receiver_open', (ctx: rhea.EventContext) => ctx.receiver!.add_credit(10_000));
    container.on('sender_open', (ctx: rhea.EventContext) => {
      if ((ctx.sender!.source as { dynamic?: boolean }).dynamic) ctx.sender!.set_source({ address: 'dynamic/1' });
    });
    let held = 0;
    container.on('message', (ctx: rhea.EventContext) => {
      if (String(ctx.message!.to).includes('.held')) held++;
      else ctx.delivery!.accept();
    });
    const server = container.listen({ port: 0, host: '127.0.0.1', autoaccept: false } as never) as unknown as Server;
    await new Promise((r) => server.once('listening', r));
    const url = `amqp://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const tr = await getTransport(url, { config: defaultConfig() });
    try {
      const stuck = new RPCClient(tr, new Target({ topic: 'held' }), { timeout: 2000 });
      const outcomes = await Promise.all(
        Array.from({ length: 2100 }, () =>
          stuck.cast({}, 'x').then(
            () => 'sent',
            (e: Error & { code?: string }) => e.code,
          ),
        ),
      );
      assert.ok(
        outcomes.every((o) => o === 'HERMOD_ERR_TIMEOUT'),
        [...new Set(outcomes)].join(', '),
      );
      assert.ok(held >= 1900, `${held} held at the peer`);
      // Before: "timed out waiting for room to send", for this and every later send on the
      // connection, whatever its address, until the peer settled the held ones.
      const fine = new RPCClient(tr, new Target({ topic: 'fine' }), { timeout: 5000 });
      await fine.cast({}, 'x');
      // Calls whose requests stay unsettled past their failed replies held their slots alike (on a
      // connection of their own: past 2048 unsettled, rhea as the peer closes its session window).
      const tr2 = await getTransport(url, { config: defaultConfig() });
      try {
        const calls = await Promise.all(
          Array.from({ length: 1950 }, () =>
            new RPCClient(tr2, new Target({ topic: 'held' }), { timeout: 2000 }).call({}, 'x').then(
              () => 'answered',
              (e: Error & { code?: string }) => e.code,
            ),
          ),
        );
        assert.ok(
          calls.every((o) => o === 'HERMOD_ERR_TIMEOUT'),
          [...new Set(calls)].join(', '),
        );
        await new RPCClient(tr2, new Target({ topic: 'fine' }), { timeout: 5000 }).cast({}, 'z');
      } finally {
        await tr2.close();
      }
      await fine.cast({}, 'y');
    } finally {
      await tr.close();
      for (const c of connections) {
        (c as unknown as { socket?: { destroy(): void } }).socket?.destroy();
        clearRheaTimers(c);
      }
      await new Promise((r) => server.close(r));
    }
  },
);

t.run();
