import amqplib from 'amqplib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RabbitNode } from '../../scripts/rabbit-node.js';
import { defaultConfig, getTransport, NotificationListener, Notifier, Target } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { until } from '../support/assert.js';
import { Collector, notifySuite } from '../support/notify-cases.js';
import { sharedVhost } from '../support/rabbit-vhost.js';

// The same notification cases on all three drivers.
let memoryBrokers = 0;
notifySuite('notifications on the memory driver', async () => ({
  url: `memory://notify-${++memoryBrokers}`,
  pools: true,
  stop: async () => {},
})).run();

notifySuite(
  'notifications over RabbitMQ',
  sharedVhost('notify', {
    pools: true,
  }),
).run();

notifySuite('notifications over the embedded AMQP 1.0 router', async () => {
  const router = new Router({ port: 0 });
  const port = await router.start();
  return { url: `amqp://127.0.0.1:${port}/`, pools: false, stop: () => router.stop() };
}).run();

// Malformed notifications straight onto the queue a hermod listener consumes.

const bad = suite('notifications: malformed input on RabbitMQ');
bad('garbage, unknown priorities and missing fields are settled and counted; the listener goes on', async () => {
  const node = await RabbitNode.shared();
  const vhost = await node.addVhost(`notify-bad-${process.pid}`);
  const tr = await getTransport(node.url(vhost), { config: defaultConfig() });
  const raw = await amqplib.connect(`amqp://guest:guest@127.0.0.1:${node.port}/${vhost}`);
  try {
    const c = new Collector();
    const l = new NotificationListener(tr, [new Target({ topic: 'nb' })], [c]);
    await l.start();
    const ch = await raw.createChannel();
    const props = { contentType: 'application/json', deliveryMode: 2 };
    const env = (m: object) => Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(m) }));
    ch.publish('openstack', 'nb.info', Buffer.from('not json at all'), props);
    ch.publish('openstack', 'nb.info', Buffer.from('{"oslo.version": "9.0", "oslo.message": "{}"}'), props);
    ch.publish('openstack', 'nb.info', env({ publisher_id: 'p', payload: {} }), props); // no priority, event type
    ch.publish('openstack', 'nb.info', env({ publisher_id: 'p', event_type: 'e', priority: 'LOUD', payload: {} }), props); // unknown priority
    ch.publish('openstack', 'nb.info', env({ publisher_id: 'p', event_type: 'e', priority: 'INFO', payload: 'x'.repeat(1000) }), props);
    await until(
      () => l.stats().invalid === 3 && l.stats().dropped === 1 && c.got.length === 1,
      `bad ones counted (${JSON.stringify(l.stats())})`,
    );
    await new Notifier(tr, { publisherId: 'p', topics: ['nb'] }).info({}, 'after', { ok: true });
    await until(() => c.got.some((g) => g.eventType === 'after'), 'still listening');
    const q = await node.queues(vhost);
    assert.is(q.get('nb.info')!.messages, 0, 'nothing left to stall the queue');
    await l.stop();
  } finally {
    await raw.close();
    await tr.close();
    await node.deleteVhost(vhost);
    await node.release();
  }
});
bad.run();
