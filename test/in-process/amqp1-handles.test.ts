import { createRequire } from 'node:module';
import net from 'node:net';
import type { Connection, EventContext, Receiver } from 'rhea';
import rhea from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { clearRheaTimers, installRheaFixes } from '../../src/rhea/index.js';
import { Router } from '../../src/router/router.js';
import { until } from '../support/assert.js';
import { rheaClose, rheaConnect } from '../support/rhea-peer.js';

// A link handle freed by a detach may be reused by the peer at once (AMQP 1.0 §2.6.2: once both
// detaches have crossed). hermod now records each link's remote handle (rhea 3.0.5 never did, so
// dead links stayed in the session's table: test/in-process/router-bounds), and the removal of a
// closed link two ticks after the peer's detach must not take a newer link that took its handle:
// a peer answering our detach and attaching our next link under the same handle in one write
// would otherwise fail the connection at the next transfer ("Invalid handle 0"). The peer here is
// hand-written so the frames arrive exactly so.

const require = createRequire(import.meta.url);
interface Performative {
  dispatch(target: Record<string, () => void>): void;
  [field: string]: unknown;
}
const frames = require('rhea/lib/frames.js') as Record<string, (fields: Record<string, unknown>) => object> & {
  amqp_frame(channel: number, performative: object, payload?: Buffer): object;
  read_frame(b: Buffer): { performative?: Performative };
  write_frame(f: object): Buffer;
};
const encodeMessage = (rhea as unknown as { message: { encode(m: object): Buffer } }).message.encode;
const HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 1, 0, 0]);

installRheaFixes();

/**
 * A minimal AMQP 1.0 peer for one session: it attaches every link the client attaches with the
 * lowest free handle, and answers a detach with `onDetach`'s frames (its detach first).
 */
class HandlePeer {
  readonly server = net.createServer((s) => this.serve(s));
  socket?: net.Socket;
  /** Our handle of each link the client attached, by the client's handle. */
  readonly ours = new Map<number, number>();
  /** Names of the client's links, by the client's handle. */
  readonly names = new Map<number, string>();
  deliveries = 0;
  /** Holds our detach answers back until the next write, so they share a chunk with what follows. */
  hold = false;
  private held: Buffer[] = [];

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    return (this.server.address() as net.AddressInfo).port;
  }

  frame(p: object, payload?: Buffer): Buffer {
    return frames.write_frame(frames.amqp_frame(0, p, payload));
  }

  freeHandle(): number {
    const used = new Set(this.ours.values());
    let h = 0;
    while (used.has(h)) h++;
    return h;
  }

  /** Our attach answering the client's attach of a receiver named `name` (so we send). */
  attachFor(theirs: number, name: string, address: string): Buffer {
    const h = this.freeHandle();
    this.ours.set(theirs, h);
    this.names.set(theirs, name);
    return this.frame(frames.attach({ name, handle: h, role: false, source: { address }, target: {}, initial_delivery_count: 0 }));
  }

  /** One presettled message on the link the client knows as `theirs`. */
  transfer(theirs: number, body: string): Buffer {
    const handle = this.ours.get(theirs);
    const id = this.deliveries++;
    return this.frame(
      frames.transfer({ handle, delivery_id: id, delivery_tag: Buffer.from([id]), message_format: 0, settled: true }),
      encodeMessage({ body }),
    );
  }

  private serve(s: net.Socket): void {
    this.socket = s;
    let buf = Buffer.alloc(0);
    let header = false;
    s.on('error', () => {});
    s.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (!header) {
        if (buf.length < 8) return;
        buf = buf.subarray(8);
        header = true;
        s.write(Buffer.concat([HEADER, this.frame(frames.open({ container_id: 'handle-peer', max_frame_size: 65536, channel_max: 0 }))]));
      }
      const out: Buffer[] = [];
      while (buf.length >= 8) {
        const size = buf.readUInt32BE(0);
        if (buf.length < size) break;
        const f = frames.read_frame(buf.subarray(0, size));
        buf = buf.subarray(size);
        const p = f.performative;
        if (!p) continue;
        p.dispatch({
          on_open: () => {},
          on_begin: () => {
            out.push(this.frame(frames.begin({ remote_channel: 0, next_outgoing_id: 0, incoming_window: 2048, outgoing_window: 2048 })));
          },
          on_attach: () => {
            const source = p.source as { address?: string } | undefined;
            out.push(this.attachFor(p.handle as number, p.name as string, source?.address ?? ''));
          },
          on_flow: () => {},
          on_detach: () => {
            const theirs = p.handle as number;
            const ourHandle = this.ours.get(theirs) as number;
            this.ours.delete(theirs);
            const detach = this.frame(frames.detach({ handle: ourHandle, closed: true }));
            if (this.hold) this.held.push(detach);
            else out.push(detach);
          },
          on_end: () => out.push(this.frame(frames.end({}))),
          on_close: () => out.push(this.frame(frames.close({}))),
          on_transfer: () => {},
          on_disposition: () => {},
        });
      }
      // Everything this chunk asked for goes back in one write, so the client reads it in one chunk.
      if (out.length > 0) {
        s.write(Buffer.concat([...this.held, ...out]));
        this.held = [];
      }
    });
  }

  async close(): Promise<void> {
    this.socket?.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

async function connect(port: number): Promise<{ conn: Connection; errors: string[] }> {
  const errors: string[] = [];
  const c = rhea.create_container();
  c.on('error', (e: Error) => errors.push(e.message));
  const conn = c.connect({ port, host: '127.0.0.1', reconnect: false } as never);
  conn.on('disconnected', (ctx: EventContext) => {
    const e = (ctx as unknown as { error?: Error }).error;
    if (e) errors.push(e.message);
  });
  conn.on('connection_error', () => errors.push('connection error'));
  await new Promise<void>((r) => conn.once('connection_open', () => r()));
  return { conn, errors };
}

async function opened(r: Receiver): Promise<void> {
  if (r.is_open()) return;
  await new Promise<void>((done) => r.once('receiver_open', () => done()));
}

const test = suite('amqp1 link handles');

test('a link the peer attaches under the handle it has just freed keeps receiving', async () => {
  const peer = new HandlePeer();
  const port = await peer.listen();
  const { conn, errors } = await connect(port);
  try {
    const first = conn.open_receiver({ source: 'first', autoaccept: false });
    await opened(first);
    assert.is(peer.ours.get(0), 0);

    // The peer frees handle 0 on our detach of `first`, reuses it for `second`, and answers both
    // in one write: its detach of 0, then its attach of 0.
    const got: string[] = [];
    peer.hold = true;
    first.close();
    // The detach goes out in this turn's write pass, the attach in a later one.
    await new Promise((r) => setTimeout(r, 20));
    const second = conn.open_receiver({ source: 'second', autoaccept: false });
    second.on('message', (ctx: EventContext) => got.push(String(ctx.message?.body)));
    await opened(second);
    assert.is(peer.ours.get(1), 0, 'the peer reused handle 0 for the second link');
    // Two ticks on, rhea removed `first`; the second link must still be the one on handle 0.
    await new Promise((r) => setTimeout(r, 20));
    peer.socket?.write(Buffer.concat([peer.transfer(1, 'one'), peer.transfer(1, 'two')]));
    await until(() => got.length === 2 || errors.length > 0, 'two messages on the second link');
    assert.equal(errors, []);
    assert.equal(got, ['one', 'two']);
    assert.ok(second.is_open());
  } finally {
    conn.close();
    clearRheaTimers(conn);
    await peer.close();
  }
});

test("the router writes a link's attach before the first message for it, even one read in the same turn", async () => {
  // A receiver's attach and credit, and another connection's message for its address, read in
  // one turn of the event loop: the router's write pass (deferred to setImmediate) queued the
  // transfer before the attach, as rhea's session writes transfers before links, and the
  // receiver's connection failed with "Invalid handle 0". `hermod status` (beacons are fanout
  // casts) hit it in about one run in ten.
  const router = new Router({ port: 0 });
  const port = await router.start();
  const sending = await rheaConnect(port);
  const errors: string[] = [];
  const receiving: Connection[] = [];
  let delivered = 0;
  try {
    // A receiver that stays: the router gives a sender credit once its address has consumers.
    const staying = await rheaConnect(port);
    receiving.push(staying);
    await opened(staying.open_receiver({ source: 'multicast.handles' }));
    const sender = sending.open_sender({ target: { address: 'multicast.handles' } });
    await until(() => sender.sendable(), 'credit for the sender');
    for (let round = 0; round < 30; round++) {
      const conn = await rheaConnect(port);
      receiving.push(conn);
      conn.on('disconnected', (ctx: EventContext) => {
        const e = (ctx as unknown as { error?: Error }).error;
        if (e) errors.push(e.message);
      });
      conn.on('connection_error', () => errors.push('connection error'));
      // Credit in the attach's write, as hermod's driver gives it (rhea's credit window would
      // wait for the router's attach, and the router would hold the copy until then).
      const r = conn.open_receiver({ source: 'multicast.handles', credit_window: 0 } as never);
      r.add_credit(64);
      let got = false;
      r.on('message', () => {
        got = true;
      });
      // The same tick: both connections write in one pass, and the router reads both in one
      // turn. When it reads the attach first, the message is for the new link.
      sender.send({ body: `m${round}` });
      await new Promise((done) => setTimeout(done, 60));
      assert.equal(errors, [], `round ${round}`);
      if (got) delivered++;
    }
  } finally {
    for (const c of receiving) await rheaClose(c);
    await rheaClose(sending);
    await router.stop();
  }
  // Rounds where the router read the attach before the message: the case this test is about.
  assert.ok(delivered > 0, 'no round had the message follow the attach in one turn');
});

test.run();
