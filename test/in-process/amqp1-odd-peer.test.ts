import { createRequire } from 'node:module';
import type { AddressInfo, Server } from 'node:net';
import rhea from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultConfig, getTransport, NotificationListener, Notifier, Target, type Transport } from '../../src/index.js';
import { clearRheaTimers } from '../../src/rhea/index.js';
import { until } from '../support/assert.js';
import { Collector } from '../support/notify-cases.js';

// hermod's AMQP 1.0 driver against a peer that is no router of ours: a plain rhea container that
// forwards each message to the links whose source is its address, and misbehaves on request.

const require = createRequire(import.meta.url);
const Frames = require('rhea/lib/frames.js') as { transfer(fields: Record<string, unknown>): unknown };

interface Peer {
  port: number;
  /** The peer's sending links (hermod's receivers), open ones last. */
  senders: rhea.Sender[];
  connections: rhea.Connection[];
  close(): Promise<void>;
}

/** A link whose connection's socket the test destroyed (rhea on this side still calls it open). */
const dropped = (s: rhea.Sender) => (s.connection as unknown as { socket?: { destroyed: boolean } }).socket?.destroyed !== false;

async function forwardingPeer(): Promise<Peer> {
  const container = rhea.create_container({ id: 'forwarding-peer' });
  container.on('error', () => {});
  container.on('disconnected', () => {});
  const peer = { senders: [] as rhea.Sender[], connections: [] as rhea.Connection[] } as Peer;
  container.on('connection_open', (ctx: rhea.EventContext) => peer.connections.push(ctx.connection));
  container.on('sender_open', (ctx: rhea.EventContext) => peer.senders.push(ctx.sender!));
  container.on('message', (ctx: rhea.EventContext) => {
    const to = (ctx.message!.to as string | undefined) ?? ctx.receiver!.target.address;
    const sender = peer.senders.findLast((s) => s.source.address === to && s.is_open() && !dropped(s) && s.sendable());
    ctx.delivery!.accept();
    sender?.send(ctx.message!);
  });
  const listener = container.listen({ port: 0, host: '127.0.0.1' } as never) as unknown as Server;
  await new Promise((r) => listener.once('listening', r));
  peer.port = (listener.address() as AddressInfo).port;
  peer.close = async () => {
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
    const transports: Transport[] = [];
    const open = async () => {
      const tr = await getTransport(`amqp://127.0.0.1:${peer.port}/`, {
        config: defaultConfig(),
        overrides: { 'amqp1.retryInterval': 50, 'amqp1.intervalMax': 200 },
      });
      transports.push(tr);
      return tr;
    };
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
      for (const tr of transports) await tr.close();
      await peer.close();
    }
  },
);

t.run();
