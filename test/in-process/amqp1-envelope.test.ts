import type rhea from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultConfig, getTransport, RPCServer, Target, type Transport } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { until } from '../support/assert.js';
import { Recorder } from '../support/endpoints.js';
import { rheaClose, rheaConnect } from '../support/rhea-peer.js';

interface Ctx {
  router: Router;
  transport: Transport;
  server: RPCServer;
  rec: Recorder;
}
const t = suite<Ctx>('amqp1 - oslo envelope version', {} as Ctx);

t.before.each(async (ctx) => {
  ctx.router = new Router({ port: 0 });
  const port = await ctx.router.start();
  ctx.transport = await getTransport(`amqp://127.0.0.1:${port}/`, { config: defaultConfig() });
  ctx.rec = new Recorder('s');
  ctx.server = new RPCServer(ctx.transport, new Target({ topic: 'env', server: 's' }), [ctx.rec]);
  await ctx.server.start();
});
t.after.each(async (ctx) => {
  await ctx.server.stop();
  await ctx.server.wait(1000);
  await ctx.transport.close();
  await ctx.router.stop();
});

const enveloped = (version: string, msg: Record<string, unknown>) => ({ 'oslo.version': version, 'oslo.message': JSON.stringify(msg) });

t(
  'a request in an unsupported envelope version is rejected, a call is answered with UnsupportedEnvelopeVersion; 2.0 is served',
  async (ctx) => {
    const peer = await rheaConnect(ctx.router.port);
    try {
      const replies = new Map<unknown, Record<string, unknown>>();
      const rr = peer.open_receiver({ source: { dynamic: true } } as never);
      rr.on('message', (e: rhea.EventContext) => replies.set(e.message!.correlation_id, JSON.parse(e.message!.body as string)));
      await new Promise((res) => rr.once('receiver_open', res));
      const replyTo = (rr.source as { address: string }).address;
      const s = peer.open_sender('openstack.org/om/rpc/anycast/openstack/env');
      const outcomes = new Map<string, string>();
      for (const kind of ['accepted', 'rejected', 'released', 'modified']) {
        s.on(kind, (e: rhea.EventContext) => outcomes.set(String(e.delivery!.tag), kind));
      }
      await until(() => s.sendable(), 'credit');
      const send = (tag: string, request: unknown, call: boolean) =>
        s.send(
          {
            body: JSON.stringify({ request, context: {} }),
            ...(call ? { message_id: tag, reply_to: replyTo } : {}),
          } as never,
          tag,
        );
      send('call-3.0', enveloped('3.0', { method: 'add', args: { a: 1, b: 2 } }), true);
      send('cast-2.1', enveloped('2.1', { method: 'bump', args: { seq: 1 } }), false);
      send('call-2.0', enveloped('2.0', { method: 'add', args: { a: 2, b: 3 } }), true);
      send('cast-2.0', enveloped('2.0', { method: 'bump', args: { seq: 2 } }), false);
      await until(() => outcomes.size === 4 && replies.size === 2, 'four outcomes and two replies');
      assert.is(outcomes.get('call-3.0'), 'rejected');
      assert.is(outcomes.get('cast-2.1'), 'rejected');
      assert.is(outcomes.get('call-2.0'), 'accepted');
      assert.is(outcomes.get('cast-2.0'), 'accepted');
      const failure = JSON.parse(replies.get('call-3.0')!.failure as string) as { class: string; message: string };
      assert.is(failure.class, 'UnsupportedEnvelopeVersion');
      assert.match(failure.message, /version 3\.0 is not supported/);
      assert.is(replies.get('call-2.0')!.response, 5);
      await until(() => ctx.rec.calls.some((c) => c.method === 'bump'), 'the 2.0 cast ran');
      assert.equal(
        ctx.rec.calls.filter((c) => c.method === 'bump').map((c) => c.args.seq),
        [2],
        'the 2.1 cast never ran',
      );
    } finally {
      await rheaClose(peer);
    }
  },
);

t.run();
