import amqplib from 'amqplib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultConfig, getTransport, RPCClient, Target, type Transport } from '../../src/index.js';
import { rejects } from '../support/assert.js';
import { type Broker, type InteropFlavor, interopSuite } from '../support/interop.js';
import { OsloPeer } from '../support/oslo.js';
import { rabbitBroker } from '../support/oslo-rabbit.js';

// hermod in the README's fast lane (rabbit.directReplyTo, rabbit.requestRouting = queue,
// rabbit.requestExpiration = false) against Debian's python3-oslo.messaging 14.0.3 servers (and
// the other way round) on one RabbitMQ node: requests reach oslo's <topic> and <topic>.<server>
// queues through the default exchange, replies come back by direct reply-to. oslo servers must
// run with `direct_mandatory_flag = false`: RabbitMQ 3.10 returns a mandatory reply sent to a
// direct reply-to address as unroutable even though it delivered it, and an oslo server with the
// default (true) then retries that reply for up to 60 s, holding one of its executor threads
// (README "Performance", direct reply-to).
const FLAVOR = {
  oslo: { version: '14', rabbit: { direct_mandatory_flag: false } },
  hermod: { 'rabbit.directReplyTo': true, 'rabbit.requestRouting': 'queue', 'rabbit.requestExpiration': false },
} satisfies InteropFlavor;

interopSuite(
  'interop rabbit: the fast lane (directReplyTo, requestRouting=queue, requestExpiration=false) against oslo.messaging 14.0.3 (direct_mandatory_flag = false)',
  () => rabbitBroker('o14drt'),
  FLAVOR,
).run();

// The interop cases above pass whichever way requests are routed, since oslo's queues are bound
// on the topic exchange too. Here the oslo server's queues lose those bindings: only the default
// exchange still reaches them, so a call that arrives went the fast lane's way. The server is
// oslo.messaging 18.1.0 (the cases above run 14.0.3), so the lane's direct reply-to is also
// checked against today's oslo.
interface LaneCtx {
  broker: Broker;
  server: OsloPeer;
  transports: Transport[];
}
const lane = suite<LaneCtx>(
  'interop rabbit: fast-lane requests reach an oslo.messaging 18.1.0 server (direct_mandatory_flag = false) by the default exchange',
  {} as LaneCtx,
);
lane.before(async (ctx) => {
  ctx.transports = [];
  ctx.broker = await rabbitBroker('o18lane');
  ctx.server = await OsloPeer.start(
    'server',
    { url: ctx.broker.url, topic: 'lanepy', server: 'p1' },
    { version: '18', rabbit: { direct_mandatory_flag: false } },
  );
});
lane.after(async (ctx) => {
  for (const tr of ctx.transports) await tr.close();
  await ctx.server?.kill();
  await ctx.broker?.stop();
});

lane(
  'with its queues unbound from the topic exchange, the oslo server still answers fast-lane calls; oslo routing cannot reach it',
  async (ctx) => {
    const { node, vhost } = ctx.broker.rabbit!;
    const m = await amqplib.connect(`amqp://guest:guest@127.0.0.1:${node.port}/${encodeURIComponent(vhost)}`);
    try {
      const ch = await m.createChannel();
      for (const q of ['lanepy', 'lanepy.p1']) await ch.unbindQueue(q, 'openstack', q);
    } finally {
      await m.close();
    }
    const transport = async (overrides: Record<string, unknown>) => {
      const tr = await getTransport(ctx.broker.url, { config: defaultConfig(), overrides });
      ctx.transports.push(tr);
      return tr;
    };
    const fast = new RPCClient(await transport(FLAVOR.hermod), new Target({ topic: 'lanepy' }), { timeout: 10_000 });
    assert.is(await fast.call({}, 'whoami'), 'p1');
    assert.is(await fast.prepare({ server: 'p1' }).call({}, 'add', { a: 2, b: 3 }), 5);
    const byExchange = new RPCClient(await transport({}), new Target({ topic: 'lanepy', server: 'p1' }), { timeout: 10_000 });
    await rejects(byExchange.call({}, 'whoami'), 'HERMOD_ERR_UNDELIVERABLE');
  },
);

lane.run();
