import amqplib, { type ChannelModel } from 'amqplib';
import { suite, type Test } from 'uvu';
import { RabbitNode } from '../../scripts/rabbit-node.js';
import { defaultConfig, getTransport, RPCServer, Target, type Transport } from '../../src/index.js';
import { sharedVhost } from './rabbit-vhost.js';

/**
 * The set-up of a RabbitMQ suite (the rabbit.* modes, the driver's own cases): a vhost of its
 * own on the run's shared node, servers stopped and transports and raw connections closed after
 * each test.
 */
export interface ModeCtx {
  node: RabbitNode;
  vhost: string;
  url: string;
  transports: Transport[];
  servers: RPCServer[];
  /** Plain amqplib connections of the test ({@link modeRaw}), closed after it. */
  raws: ChannelModel[];
}

/** A suite with the hooks of {@link ModeCtx}; its vhost is named `<prefix>-<pid>`. */
export function modeSuite(title: string, prefix: string): Test<ModeCtx> {
  const t = suite<ModeCtx>(title, {} as ModeCtx);
  t.before(async (ctx) => {
    ctx.node = await RabbitNode.shared();
    ctx.vhost = await ctx.node.addVhost(`${prefix}-${process.pid}`);
    ctx.url = ctx.node.url(ctx.vhost);
  });
  t.after(async (ctx) => {
    await ctx.node.deleteVhost(ctx.vhost);
    await ctx.node.release();
  });
  t.before.each((ctx) => {
    ctx.transports = [];
    ctx.servers = [];
    ctx.raws = [];
  });
  t.after.each(async (ctx) => {
    releaseHeld();
    for (const s of ctx.servers) {
      await s.stop();
      await s.wait(1000);
    }
    for (const tr of ctx.transports) await tr.close();
    for (const r of ctx.raws) await r.close().catch(() => {});
  });
  return t;
}

/** A plain amqplib connection to the suite's vhost, to look at what hermod put on the wire; closed after the test. */
export async function modeRaw(ctx: ModeCtx): Promise<ChannelModel> {
  const m = await amqplib.connect(`amqp://guest:guest@127.0.0.1:${ctx.node.port}/${encodeURIComponent(ctx.vhost)}`);
  m.on('error', () => {});
  ctx.raws.push(m);
  return m;
}

/** A transport on the suite's vhost with `overrides`, closed after the test. */
export async function modeTransport(ctx: ModeCtx, overrides: Record<string, unknown> = {}): Promise<Transport> {
  const tr = await getTransport(ctx.url, { config: defaultConfig(), overrides });
  ctx.transports.push(tr);
  return tr;
}

/** The `hold` calls the suite's servers are holding; {@link releaseHeld} answers them. */
const held = new Set<() => void>();

/** How many `hold` calls are waiting for {@link releaseHeld}. */
export function heldCount(): number {
  return held.size;
}

/** Lets every waiting `hold` call answer. */
export function releaseHeld(): void {
  for (const r of held) r();
  held.clear();
}

/** What the mode suites' servers serve: an echo, a call that answers after `ms`, and one held until the test releases it. */
export class Slow {
  async echo(_ctx: unknown, args: { v: unknown }) {
    return args.v;
  }
  async sleep(_ctx: unknown, args: { ms: number }) {
    // Unref'd: the call a test leaves sleeping on purpose must not hold the test process open
    // for the rest of the sleep after its last test.
    await new Promise((r) => setTimeout(r, args.ms).unref());
    return args.ms;
  }
  async hold() {
    await new Promise<void>((r) => held.add(r));
    return 'released';
  }
}

/** Starts a {@link Slow} server `s1` on `topic` with the default options, stopped after the test. */
export async function serveSlow(ctx: ModeCtx, topic: string): Promise<RPCServer> {
  const s = new RPCServer(await modeTransport(ctx), new Target({ topic, server: 's1' }), [new Slow()]);
  await s.start();
  ctx.servers.push(s);
  return s;
}

/**
 * The shared RPC cases' set-up for a mode given as a URL query (`?directReplyTo=true`): calls
 * nobody serves are dropped as oslo drops them, and time out with oslo's message.
 */
export function modeCases(prefix: string, query: string) {
  return sharedVhost(
    prefix,
    {
      unrouted: { 'rabbit.mandatoryRequests': false },
      unservedTimeout: () => /Timed out waiting for a reply to message ID [0-9a-f]{32} \(x on topic nobody-\d+\) after \d+ ms/,
    },
    query,
  );
}
