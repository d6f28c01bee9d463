// A server-side process for the benchmarks, driven over IPC by bench/run.ts: a hermod RPC
// server, the raw amqplib responder the baseline uses, or the embedded AMQP 1.0 router. Separate processes keep the client's
// and the server's CPU apart and let the bench read a server's RSS.
import amqplib, { type ChannelModel, type ConsumeMessage } from 'amqplib';
import { QUIET_ACK_DELAY_MS } from '../src/driver/rabbit/tick-acks.js';
import { type Context, defaultConfig, getTransport, RPCServer, Target, type Transport } from '../src/index.js';
import { Router } from '../src/router/router.js';

type Msg =
  | { op: 'start-hermod'; url: string; topic: string; server: string; concurrency: number }
  | { op: 'start-raw'; url: string; queue: string; fanout: string; prefetch: number; shape?: RawShape }
  | { op: 'start-router' }
  | { op: 'count' }
  | { op: 'reset' }
  | { op: 'rss' }
  | { op: 'stop' };

let casts = 0;
let transport: Transport | undefined;
let server: RPCServer | undefined;
let raw: ChannelModel | undefined;
let router: Router | undefined;

/** The endpoint every hermod bench server exposes. */
class BenchEndpoint {
  async echo(_ctx: Context, args: { v: unknown }) {
    return args.v;
  }
  async add(_ctx: Context, args: { a: number; b: number }) {
    return args.a + args.b;
  }
  async count(_ctx: Context) {
    casts++;
  }
}

const reply = (m: unknown) => process.send!(m);

/**
 * How a raw responder is built, for bench/split.ts, which weighs oslo's server structure with raw
 * amqplib: `replies` on the consuming channel (the baseline's way, and Moleculer's) or on a
 * connection of their own, plain or with publisher confirms (oslo's servers' and hermod's way);
 * `acks` right after each reply, or batched as hermod's server does (one `multiple` ack at most
 * `QUIET_ACK_DELAY_MS` later).
 */
export interface RawShape {
  replies: 'same' | 'own' | 'own-confirmed';
  acks: 'each' | 'batched';
}

async function startRaw(url: string, queue: string, fanout: string, prefetch: number, shape?: RawShape): Promise<void> {
  raw = await amqplib.connect(url, { noDelay: true });
  const ch = await raw.createChannel();
  await ch.prefetch(prefetch);
  await ch.assertQueue(queue, { durable: false, autoDelete: false });
  let send = (to: string, content: Buffer, props: { correlationId?: string }) => ch.sendToQueue(to, content, props);
  if (shape && shape.replies !== 'same') {
    const own = await amqplib.connect(url, { noDelay: true });
    raw.on('close', () => own.close().catch(() => {}));
    if (shape.replies === 'own-confirmed') {
      const confirms = await own.createConfirmChannel();
      send = (to, content, props) => confirms.sendToQueue(to, content, props, () => {});
    } else {
      const plain = await own.createChannel();
      send = (to, content, props) => plain.sendToQueue(to, content, props);
    }
  }
  let unacked: ConsumeMessage | undefined;
  let ackTimer: NodeJS.Timeout | undefined;
  const ack = (msg: ConsumeMessage) => {
    if (shape?.acks !== 'batched') return ch.ack(msg);
    unacked = msg;
    if (ackTimer) return;
    // hermod's server's own delay for a quiet consumer's acknowledgements: the shape stays hermod's.
    ackTimer = setTimeout(() => {
      ackTimer = undefined;
      try {
        if (unacked) ch.ack(unacked, true);
      } catch {
        /* stopped meanwhile: the broker requeues what was not acknowledged */
      }
      unacked = undefined;
    }, QUIET_ACK_DELAY_MS);
  };
  // Request/reply responder: answer to the caller's direct reply-to, then ack.
  await ch.consume(queue, (msg) => {
    if (!msg) return;
    const body = JSON.parse(msg.content.toString());
    if (msg.properties.replyTo) {
      send(msg.properties.replyTo, Buffer.from(JSON.stringify({ result: body.v ?? body.a + body.b })), {
        correlationId: msg.properties.correlationId,
      });
    } else {
      casts++;
    }
    ack(msg);
  });
  // Fanout: every responder process gets its own exclusive queue.
  await ch.assertExchange(fanout, 'fanout', { durable: false, autoDelete: true });
  const { queue: mine } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(mine, fanout, '');
  await ch.consume(mine, (msg) => {
    if (msg) {
      casts++;
      ch.ack(msg);
    }
  });
}

process.on('message', (m: Msg) => {
  void (async () => {
    try {
      switch (m.op) {
        case 'start-hermod':
          transport = await getTransport(m.url, { config: defaultConfig(), overrides: { 'log.level': 'error' } });
          server = new RPCServer(transport, new Target({ topic: m.topic, server: m.server }), [new BenchEndpoint()], {
            concurrency: m.concurrency,
          });
          await server.start();
          reply({ ok: true });
          break;
        case 'start-router':
          router = new Router({ port: 0 });
          reply({ port: await router.start() });
          break;
        case 'start-raw':
          await startRaw(m.url, m.queue, m.fanout, m.prefetch, m.shape);
          reply({ ok: true });
          break;
        case 'count':
          reply({ casts });
          break;
        case 'reset':
          casts = 0;
          reply({ ok: true });
          break;
        case 'rss':
          reply({ rss: process.memoryUsage().rss });
          break;
        case 'stop':
          await server?.stop();
          await server?.wait(2000);
          await transport?.close();
          await raw?.close().catch(() => {});
          await router?.stop();
          reply({ ok: true });
          process.disconnect();
          break;
      }
    } catch (err) {
      reply({ error: (err as Error).message });
    }
  })();
});
