import type rhea from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type Context, defaultConfig, getTransport, NotificationListener, Target } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { sleep, until } from '../support/assert.js';
import { rheaClose, rheaConnect } from '../support/rhea-peer.js';

// The AMQP 1.0 case of the notification `__proto__` attack (memory: test/in-process/hostile-peers,
// RabbitMQ: test/integration/hostile-rabbit): a raw rhea peer sends, over the embedded router,
// oslo amqp1 notification bodies whose payload or context carries prototype-setting keys, in the
// 2.0 envelope and bare (1.0). None may reach an endpoint (an endpoint that got one would see
// an object whose prototype the peer chose); each is counted as invalid; the clean one arrives
// as own, plain data; Object.prototype stays untouched.

const t = suite('amqp1: notifications carrying __proto__');

t('a notification whose payload or context sets a prototype reaches no endpoint; the clean one arrives as plain data', async () => {
  const router = new Router({ port: 0 });
  await router.start();
  const transport = await getTransport(`amqp://127.0.0.1:${router.port}/`, { config: defaultConfig() });
  const seen: Array<Record<string, unknown>> = [];
  const listener = new NotificationListener(
    transport,
    [new Target({ topic: 'n' })],
    [
      {
        info: (ctx: Context, publisherId: string, eventType: string, payload: unknown) => {
          seen.push({
            eventType,
            publisherId,
            payload,
            payloadKeys: Object.keys(payload as object),
            plainPayload: Object.getPrototypeOf(payload) === Object.prototype,
            ctxKeys: Object.keys(ctx),
            plainCtx: Object.getPrototypeOf(ctx) === Object.prototype,
            admin: (ctx as { is_admin?: unknown }).is_admin ?? (payload as { admin?: unknown }).admin,
          });
        },
      },
    ],
  );
  await listener.start();
  const peer = await rheaConnect(router.port);
  try {
    const sender: rhea.Sender = peer.open_sender('openstack.org/om/notify/anycast/openstack/n.info');
    await until(() => sender.sendable(), 'credit for the raw sender');
    const note = (eventType: string, payload: string, ctx = '{}', enveloped = true) => {
      const message = `{"message_id":"m-${eventType}","publisher_id":"p","event_type":"${eventType}","priority":"INFO","payload":${payload},"timestamp":"t"}`;
      const request = enveloped ? JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': message }) : message;
      sender.send({ body: `{"request":${request},"context":${ctx}}` } as never);
    };
    note('bad.payload', '{"__proto__":{"admin":true}}');
    note('bad.ctx', '{}', '{"__proto__":{"is_admin":true}}');
    note('bad.deep', '{"x":[{"constructor":{"prototype":{"admin":true}}}]}');
    note('bad.bare', '{"__proto__":{"admin":true}}', '{}', false);
    note('good', '{"x":1}', '{"user":"u"}');
    await until(() => seen.some((s) => s.eventType === 'good'), 'the clean notification', 3000);
    await sleep(100);
    assert.equal(seen, [
      {
        eventType: 'good',
        publisherId: 'p',
        payload: { x: 1 },
        payloadKeys: ['x'],
        plainPayload: true,
        ctxKeys: ['user'],
        plainCtx: true,
        admin: undefined,
      },
    ]);
    await until(() => listener.stats().invalid === 4, `all four refused notifications counted (${listener.stats().invalid})`, 2000);
    assert.is(listener.stats().failed, 0, 'no endpoint failed');
    assert.is(({} as Record<string, unknown>).admin, undefined, 'Object.prototype stays clean');
    assert.is(({} as Record<string, unknown>).is_admin, undefined, 'Object.prototype stays clean');
  } finally {
    await rheaClose(peer);
    await listener.stop();
    await listener.wait(1000);
    await transport.close();
    await router.stop();
  }
});

t.run();
