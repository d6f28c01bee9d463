// A caller process for the call workloads (bench/rounds.ts drives it over IPC): one system's
// client — hermod's RPCClient, the raw amqplib baseline, or a Node peer from bench/peers — runs
// sequential and concurrent calls and reports rates, latencies and its own CPU time. One process
// per system keeps each caller's CPU its own.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import amqplib from 'amqplib';

/** What a caller can do: one call with a payload, and close. */
export interface CallerClient {
  call(v: string): Promise<unknown>;
  close(): Promise<unknown>;
}

type Msg =
  | { op: 'init'; system: string; url: string; topic: string; server: string; queue: string }
  | { op: 'run'; n: number; inFlight: number; payload: string }
  | { op: 'warm'; n: number; inFlight: number; payload: string }
  | { op: 'stop' };

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');

/** The raw baseline: requests to a plain queue, replies by direct reply-to, noDelay. */
async function rawClient(url: string, queue: string): Promise<CallerClient> {
  const conn = await amqplib.connect(url, { noDelay: true });
  const ch = await conn.createChannel();
  const pending = new Map<string, (v: unknown) => void>();
  let seq = 0;
  await ch.consume(
    'amq.rabbitmq.reply-to',
    (msg) => {
      if (!msg) return;
      const done = pending.get(msg.properties.correlationId);
      pending.delete(msg.properties.correlationId);
      done?.(JSON.parse(msg.content.toString()).result);
    },
    { noAck: true },
  );
  return {
    call: (v) =>
      new Promise((resolve) => {
        const id = String(++seq);
        pending.set(id, resolve);
        ch.sendToQueue(queue, Buffer.from(JSON.stringify({ v })), {
          replyTo: 'amq.rabbitmq.reply-to',
          correlationId: id,
          contentType: 'application/json',
        });
      }),
    close: () => conn.close(),
  };
}

/** The options of the `lane` system's caller: the README's fast lane for calls between hermod services. */
const FAST_LANE = { 'rabbit.directReplyTo': true, 'rabbit.requestRouting': 'queue', 'rabbit.requestExpiration': false };

async function hermodClient(url: string, topic: string, server: string, options: Record<string, unknown> = {}): Promise<CallerClient> {
  const { getTransport, loadConfig, RPCClient, Target } = await import('../src/index.js');
  // The environment's HERMOD_* options apply, as they do to the rpc-server CLI it calls
  // (e.g. HERMOD_RABBIT_DIRECT_REPLY_TO=true to measure that mode).
  const tr = await getTransport(url, { config: loadConfig(), overrides: { 'rpc.maxInFlight': 4096, ...options } });
  const client = new RPCClient(tr, new Target({ topic, server }), { timeout: 30_000 });
  return { call: (v) => client.call({}, 'echo', { v }), close: () => tr.close() };
}

/** A peer from bench/peers, resolved against that folder's own node_modules. */
async function peerClient(system: string, url: string): Promise<CallerClient> {
  const req = createRequire(path.join(root, 'bench', 'peers', 'package.json'));
  const mod = req(`./${system}.cjs`) as { connect(url: string): Promise<CallerClient> };
  return mod.connect(url);
}

let client: CallerClient | undefined;

/** `n` untimed calls, `inFlight` at a time: both processes' JIT reaches its steady state first. */
async function warm(n: number, inFlight: number, payload: string) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(inFlight, n) }, async () => {
      while (next < n) {
        next++;
        await client!.call(payload);
      }
    }),
  );
}

async function run(n: number, inFlight: number, payload: string) {
  const call = () => client!.call(payload);
  await Promise.all(Array.from({ length: Math.min(inFlight, 200) }, call)); // warm-up
  for (let i = 0; i < 100; i++) await call();
  const lat: number[] = [];
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < n) {
        next++;
        const t = performance.now();
        await call();
        lat.push(performance.now() - t);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { lat, secs, cpuUs: cpu.user + cpu.system };
}

process.on('message', (m: Msg) => {
  void (async () => {
    try {
      if (m.op === 'init') {
        const amqp = m.url.replace(/^rabbit(s?):/, 'amqp$1:');
        if (m.system === 'raw') client = await rawClient(amqp, m.queue);
        else if (m.system === 'hermod') client = await hermodClient(m.url, m.topic, m.server);
        else if (m.system === 'lane') client = await hermodClient(m.url, m.topic, m.server, FAST_LANE);
        else client = await peerClient(m.system, amqp);
        process.send!({ ok: true });
      } else if (m.op === 'warm') {
        await warm(m.n, m.inFlight, m.payload);
        process.send!({ ok: true });
      } else if (m.op === 'run') {
        process.send!(await run(m.n, m.inFlight, m.payload));
      } else {
        await client?.close();
        process.send!({ ok: true });
        process.disconnect();
      }
    } catch (err) {
      process.send!({ error: (err as Error).stack ?? String(err) });
    }
  })();
});
