import { createRequire } from 'node:module';
import net from 'node:net';
import rhea, { type EventContext, type Receiver, type Sender } from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { applyOverrides } from '../../src/config/index.js';
import { defaultConfig, getTransport, RPCClient, Target, type Transport } from '../../src/index.js';
import { until } from '../support/assert.js';

// The AMQP 1.0 driver against a server that breaks the frame sizes the driver advertises: a
// frame header declaring 2 GiB, then bytes for as long as they are taken. rhea alone buffers
// whatever a header declares; the driver's socket guard (src/rhea/socket-guard.ts, the router's
// own) closes the connection at the header. The peer is a raw socket so it can misbehave.

const require = createRequire(import.meta.url);
const frames = require('rhea/lib/frames.js') as Record<string, (fields: Record<string, unknown>) => object> & {
  amqp_frame(channel: number, performative: object, payload?: Buffer): object;
  sasl_frame(performative: object): object;
  write_frame(f: object): Buffer;
};
const SASL_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 3, 1, 0, 0]);
const AMQP_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 1, 0, 0]);
const frameHeader = (size: number, type: number) =>
  Buffer.from([size >>> 24, (size >>> 16) & 255, (size >>> 8) & 255, size & 255, 2, type, 0, 0]);
const LOT = 256 * 1024 * 1024;
const sasl = (p: object) => frames.write_frame(frames.sasl_frame(p));
const amqp = (p: object, payload?: Buffer) => frames.write_frame(frames.amqp_frame(0, p, payload));

/** A server that writes `opening` and then floods: what it got rid of before the client hung up. */
class FloodingServer {
  readonly server: net.Server;
  readonly sent: number[] = [];
  private readonly sockets = new Set<net.Socket>();

  /**
   * `opening` all at once then a flood; or, with `afterOpen`, a real SASL exchange (rhea reads
   * bytes past the SASL outcome only when more arrive) and then `afterOpen`.
   */
  constructor(opening: Buffer, afterOpen?: Buffer) {
    this.server = net.createServer((s) => {
      this.sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => this.sent.push(s.bytesWritten));
      if (!afterOpen) {
        s.on('data', () => {});
        void this.flood(s, opening);
        return;
      }
      let got = Buffer.alloc(0);
      let step = 0;
      s.write(Buffer.concat([SASL_HEADER, sasl(frames.sasl_mechanisms({ sasl_server_mechanisms: ['ANONYMOUS'] }))]));
      s.on('data', (chunk) => {
        got = Buffer.concat([got, chunk]);
        // The client's SASL header, then its sasl-init, then its AMQP header.
        if (step === 0 && got.length > SASL_HEADER.length) {
          step = 1;
          s.write(sasl(frames.sasl_outcome({ code: 0 })));
        }
        if (step === 1 && got.indexOf(AMQP_HEADER) >= 0) {
          step = 2;
          s.write(Buffer.concat([AMQP_HEADER, amqp(frames.open({ container_id: 'hostile-server', max_frame_size: 65536 })), afterOpen]));
        }
      });
    });
  }

  private async flood(s: net.Socket, opening: Buffer): Promise<void> {
    s.write(opening);
    const chunk = Buffer.alloc(64 * 1024, 7);
    let sent = opening.length;
    while (!s.destroyed && !s.writableEnded && sent < LOT) {
      sent += chunk.length;
      if (!s.write(chunk)) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          new Promise((r) => s.once('drain', r)),
          new Promise((r) => s.once('close', r)),
          new Promise((r) => {
            timer = setTimeout(r, 3000);
          }),
        ]);
        clearTimeout(timer);
      }
    }
    s.destroy();
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    return (this.server.address() as net.AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

const test = suite('amqp1 driver against a hostile server (frame sizes, unknown handles)');

async function against(opening: Buffer, afterOpen?: Buffer): Promise<{ sent: number; reason: string; grownMiB: number }> {
  const server = new FloodingServer(opening, afterOpen);
  const port = await server.listen();
  // One attempt in the test's time: the next would meet the same flood.
  const tr: Transport = await getTransport(`amqp://127.0.0.1:${port}/`, {
    config: applyOverrides(defaultConfig(), { 'amqp1.retryInterval': 30_000, 'amqp1.intervalMax': 30_000 }),
  });
  const reasons: string[] = [];
  tr.driver.on('state', (s: { state: string; reason?: string; error?: Error }) => {
    if (s.state === 'reconnecting' && s.reason) reasons.push(s.reason);
    if (s.state === 'disconnected' && s.error) reasons.push(s.error.message);
  });
  const before = process.memoryUsage().rss;
  const call = new RPCClient(tr, new Target({ topic: 'x' }), { timeout: 20_000 }).call({}, 'echo').catch((e: Error) => e);
  try {
    await until(() => server.sent.length > 0, 'the server to see the connection end', 15_000);
    await until(() => reasons.length > 0, 'the attempt to be reported');
    const grownMiB = (process.memoryUsage().rss - before) / 2 ** 20;
    return { sent: server.sent[0]!, reason: reasons[0]!, grownMiB };
  } finally {
    await tr.close();
    await call;
    await server.close();
  }
}

test('a SASL frame declaring 2 GiB: the connection is closed at its header, and the attempt says why', async () => {
  const r = await against(Buffer.concat([SASL_HEADER, frameHeader(0x7fffffff, 1)]));
  assert.ok(r.sent < 32 * 2 ** 20, `the client took ${r.sent} bytes before it hung up`);
  assert.match(r.reason, /the peer broke AMQP 1\.0 framing: SASL frame of 2147483647 bytes exceeds the limit of 65536/);
  assert.ok(r.grownMiB < 64, `RSS grew ${r.grownMiB.toFixed(0)} MiB`);
});

const handshake = () =>
  Buffer.concat([
    SASL_HEADER,
    sasl(frames.sasl_mechanisms({ sasl_server_mechanisms: ['ANONYMOUS'] })),
    sasl(frames.sasl_outcome({ code: 0 })),
    AMQP_HEADER,
    amqp(frames.open({ container_id: 'hostile-server', max_frame_size: 65536 })),
  ]);

test('a transfer on a handle never attached: the connection is reported lost for that reason, not for the write after it', async () => {
  const afterOpen = Buffer.concat([
    amqp(frames.begin({ next_outgoing_id: 0, incoming_window: 2048, outgoing_window: 2048 })),
    amqp(
      frames.transfer({ handle: 7, delivery_id: 0, delivery_tag: Buffer.from([0]), message_format: 0 }),
      Buffer.from([0, 0x53, 0x77, 0x40]),
    ),
  ]);
  const r = await against(Buffer.alloc(0), afterOpen);
  assert.match(r.reason, /^AMQP error: Invalid handle 7/, r.reason);
});

test('an AMQP header before the SASL outcome (which rhea would read as a 1 GB SASL frame): closed there', async () => {
  const mechanisms = frames.write_frame(frames.sasl_frame(frames.sasl_mechanisms({ sasl_server_mechanisms: ['ANONYMOUS'] })));
  const r = await against(Buffer.concat([SASL_HEADER, mechanisms, AMQP_HEADER, frameHeader(60_000, 0)]));
  assert.ok(r.sent < 32 * 2 ** 20, `the client took ${r.sent} bytes before it hung up`);
  assert.match(r.reason, /the peer broke AMQP 1\.0 framing: AMQP protocol header before the SASL exchange ended/);
});

test('after open, a frame past the advertised max-frame-size: closed at its header', async () => {
  const opening = Buffer.concat([handshake(), frameHeader(0x7fffffff, 0)]);
  const r = await against(opening);
  assert.ok(r.sent < 32 * 2 ** 20, `the client took ${r.sent} bytes before it hung up`);
  assert.match(r.reason, /the peer broke AMQP 1\.0 framing: frame of 2147483647 bytes exceeds the limit of 1048576/);
  assert.ok(r.grownMiB < 64, `RSS grew ${r.grownMiB.toFixed(0)} MiB`);
});

test('a disposition for delivery ids 0 to 2^32-1: the client stays responsive (rhea walked the range, ~48 s)', async () => {
  const container = rhea.create_container({ id: 'fake-broker' });
  const links: Array<Sender | Receiver> = [];
  container.on('sender_open', (ctx: EventContext) => void links.push(ctx.sender!));
  container.on('receiver_open', (ctx: EventContext) => void links.push(ctx.receiver!));
  container.on('error', () => {});
  const server = container.listen({ port: 0, host: '127.0.0.1' });
  await new Promise((r) => server.once('listening', r));
  const port = (server.address() as net.AddressInfo).port;
  const tr = await getTransport(`amqp://127.0.0.1:${port}/`, { config: defaultConfig() });
  const call = new RPCClient(tr, new Target({ topic: 'x' }), { timeout: 2000 }).call({}, 'echo').catch((e: Error) => e);
  try {
    await until(() => links.some((l) => l.is_receiver()), "the client's sending link");
    const receiver = links.find((l) => l.is_receiver())!;
    const socket = (receiver.connection as unknown as { socket: net.Socket }).socket;
    const channel = (receiver.session as unknown as { local: { channel: number } }).local.channel;
    const t0 = Date.now();
    socket.write(
      frames.write_frame(frames.amqp_frame(channel, frames.disposition({ role: true, first: 0, last: 0xffffffff, settled: true }))),
    );
    // One process: a client stuck in the range walk would hold this timer too.
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(Date.now() - t0 < 2000, `the event loop was held ${Date.now() - t0} ms`);
  } finally {
    await tr.close();
    await call;
    await new Promise((r) => server.close(r));
  }
});

test.run();
