import { createRequire } from 'node:module';
import net from 'node:net';
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
  amqp_frame(channel: number, performative: object): object;
  sasl_frame(performative: object): object;
  write_frame(f: object): Buffer;
};
const SASL_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 3, 1, 0, 0]);
const AMQP_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 1, 0, 0]);
const frameHeader = (size: number, type: number) =>
  Buffer.from([size >>> 24, (size >>> 16) & 255, (size >>> 8) & 255, size & 255, 2, type, 0, 0]);
const LOT = 256 * 1024 * 1024;

/** A server that writes `opening` and then floods: what it got rid of before the client hung up. */
class FloodingServer {
  readonly server: net.Server;
  readonly sent: number[] = [];
  private readonly sockets = new Set<net.Socket>();

  constructor(opening: Buffer) {
    this.server = net.createServer((s) => {
      this.sockets.add(s);
      s.on('error', () => {});
      s.on('data', () => {});
      void this.flood(s, opening);
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
    this.sent.push(s.bytesWritten);
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

const test = suite('amqp1 driver against a server breaking its frame size');

async function against(opening: Buffer): Promise<{ sent: number; reason: string; grownMiB: number }> {
  const server = new FloodingServer(opening);
  const port = await server.listen();
  // One attempt in the test's time: the next would meet the same flood.
  const tr: Transport = await getTransport(`amqp://127.0.0.1:${port}/`, {
    config: applyOverrides(defaultConfig(), { 'amqp1.retryInterval': 30_000, 'amqp1.intervalMax': 30_000 }),
  });
  const reasons: string[] = [];
  tr.driver.on('state', (s: { state: string; reason?: string }) => {
    if (s.state === 'reconnecting' && s.reason) reasons.push(s.reason);
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

test('after open, a frame past the advertised max-frame-size: closed at its header', async () => {
  const sasl = (p: object) => frames.write_frame(frames.sasl_frame(p));
  const amqp = (p: object) => frames.write_frame(frames.amqp_frame(0, p));
  const opening = Buffer.concat([
    SASL_HEADER,
    sasl(frames.sasl_mechanisms({ sasl_server_mechanisms: ['ANONYMOUS'] })),
    sasl(frames.sasl_outcome({ code: 0 })),
    AMQP_HEADER,
    amqp(frames.open({ container_id: 'flooding-server', max_frame_size: 65536 })),
    frameHeader(0x7fffffff, 0),
  ]);
  const r = await against(opening);
  assert.ok(r.sent < 32 * 2 ** 20, `the client took ${r.sent} bytes before it hung up`);
  assert.match(r.reason, /the peer broke AMQP 1\.0 framing: frame of 2147483647 bytes exceeds the limit of 1048576/);
  assert.ok(r.grownMiB < 64, `RSS grew ${r.grownMiB.toFixed(0)} MiB`);
});

test.run();
