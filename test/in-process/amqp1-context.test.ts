import diagnostics_channel from 'node:diagnostics_channel';
import type rhea from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type Context,
  defaultConfig,
  getTransport,
  type InvalidMessageEvent,
  NotificationListener,
  RPCServer,
  Target,
} from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { sleep, until } from '../support/assert.js';
import { rheaClose, rheaConnect } from '../support/rhea-peer.js';

// oslo's amqp1 body carries the context as a field of its own; on RabbitMQ it is made of
// `_context_*` keys, so it is always an object. A raw peer on the router sends contexts that
// are no object: each is malformed, reported and counted, and reaches no endpoint.

const t = suite('amqp1: a context that is no JSON object');

t('notifications and RPC requests whose context is a list, a string, a number or true are malformed; null or none is {}', async () => {
  const router = new Router({ port: 0 });
  await router.start();
  const transport = await getTransport(`amqp://127.0.0.1:${router.port}/`, { config: defaultConfig() });
  const notes: Array<{ eventType: string; ctx: Context }> = [];
  const listener = new NotificationListener(
    transport,
    [new Target({ topic: 'n' })],
    [{ info: (ctx: Context, _p: string, eventType: string) => void notes.push({ eventType, ctx }) }],
  );
  const calls: Array<{ seq: number; ctx: Context }> = [];
  const server = new RPCServer(transport, new Target({ topic: 'rc', server: 's' }), [
    { bump: (ctx: Context, args: { seq: number }) => void calls.push({ seq: args.seq, ctx }) },
  ]);
  const invalid: InvalidMessageEvent[] = [];
  const onInvalid = (e: unknown) => void invalid.push(e as InvalidMessageEvent);
  diagnostics_channel.subscribe('hermod:message:invalid', onInvalid);
  await listener.start();
  await server.start();
  const peer = await rheaConnect(router.port);
  try {
    const toListener: rhea.Sender = peer.open_sender('openstack.org/om/notify/anycast/openstack/n.info');
    const toServer: rhea.Sender = peer.open_sender('openstack.org/om/rpc/anycast/openstack/rc');
    await until(() => toListener.sendable() && toServer.sendable(), 'credit for the raw senders');
    const contexts = ['[{"user":"u"}]', '"admin"', '7', 'true', 'null', undefined];
    contexts.forEach((ctx, i) => {
      const c = ctx === undefined ? '' : `,"context":${ctx}`;
      const note = `{"message_id":"m${i}","publisher_id":"p","event_type":"e${i}","priority":"INFO","payload":{}}`;
      toListener.send({ body: `{"request":${note}${c}}` } as never);
      toServer.send({ body: `{"request":{"method":"bump","args":{"seq":${i}}}${c}}` } as never);
    });
    await until(() => notes.length === 2 && calls.length === 2, `the two with no context or null (${notes.length}, ${calls.length})`, 3000);
    await until(() => invalid.length === 8, `eight reported invalid (${invalid.length})`, 3000);
    await sleep(100);
    // Before, the list reached the endpoints as the context, and the other three became {} unseen.
    assert.equal(notes, [
      { eventType: 'e4', ctx: {} },
      { eventType: 'e5', ctx: {} },
    ]);
    assert.equal(calls.map((c) => [c.seq, c.ctx]).sort(), [
      [4, {}],
      [5, {}],
    ]);
    assert.is(listener.stats().invalid, 4);
    for (const e of invalid) assert.match(e.error.message, /context is not a JSON object/);
    assert.equal(invalid.map((e) => e.where).sort(), [...Array(4).fill('notification listener'), ...Array(4).fill('server s')]);
  } finally {
    diagnostics_channel.unsubscribe('hermod:message:invalid', onInvalid);
    await rheaClose(peer);
    await listener.stop();
    await listener.wait(1000);
    await server.stop();
    await server.wait(1000);
    await transport.close();
    await router.stop();
  }
});

t.run();
