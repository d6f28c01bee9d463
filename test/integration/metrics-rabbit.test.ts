import * as assert from 'uvu/assert';
import { NotificationListener, RPCServer, Target } from '../../src/index.js';
import { Metrics, serveMetrics } from '../../src/ops/metrics.js';
import { sleep, until } from '../support/assert.js';
import { Recorder } from '../support/endpoints.js';
import { Collector } from '../support/notify-cases.js';
import { samples, sampleValue, scrape } from '../support/prometheus.js';
import { modeRaw, modeSuite, modeTransport } from '../support/rabbit-mode.js';

// Metrics that only RabbitMQ can produce (the other drivers do not drop copies by _unique_id),
// from a real node, scraped over real HTTP.
const t = modeSuite('metrics over RabbitMQ', 'metrics');

const envelope = (msg: Record<string, unknown>) =>
  Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(msg) }));
const props = { contentType: 'application/json', contentEncoding: 'utf-8' };

t('duplicates dropped by _unique_id are counted in hermod_messages_duplicate_total, by receiver', async (ctx) => {
  const metrics = new Metrics();
  metrics.start();
  const http = await serveMetrics(metrics, { port: 0 });
  try {
    const rec = new Recorder('s1');
    const server = new RPCServer(await modeTransport(ctx), new Target({ topic: 'mdup', server: 's1' }), [rec]);
    await server.start();
    ctx.servers.push(server);
    const notes = new Collector();
    const listener = new NotificationListener(await modeTransport(ctx), [new Target({ topic: 'mdupn' })], [notes]);
    await listener.start();
    try {
      const ch = await (await modeRaw(ctx)).createConfirmChannel();
      // A publisher's retry: the same cast twice, and one more with an id of its own.
      for (const [seq, id] of [
        [1, 'dup-rpc'],
        [1, 'dup-rpc'],
        [2, 'other-rpc'],
      ] as const) {
        ch.publish('openstack', 'mdup', envelope({ method: 'bump', args: { seq }, _unique_id: id }), props);
      }
      // A third-party template reusing its _unique_id: three notifications, two of them dropped.
      for (let i = 0; i < 3; i++) {
        const note = { message_id: `m-${i}`, publisher_id: 'tpl', event_type: 'dup.x', priority: 'INFO', payload: { i } };
        ch.publish('openstack', 'mdupn.info', envelope({ ...note, _unique_id: 'dup-note' }), props);
      }
      await ch.waitForConfirms();
      await until(() => rec.calls.length === 2 && listener.stats().handled + listener.stats().duplicates === 3, 'all settled', 10_000);
      // A copy still on its way would show as a second bump: give it time to arrive.
      await sleep(1000);
      assert.equal(rec.calls.map((c) => c.args.seq).sort(), [1, 2]);
      // Copies that came while the first still ran may have run too (README: at-least-once), but
      // only one of the three is acknowledged as handled.
      assert.equal({ handled: listener.stats().handled, duplicates: listener.stats().duplicates }, { handled: 1, duplicates: 2 });

      const text = await scrape(http.url);
      assert.is(sampleValue(text, 'hermod_messages_duplicate_total', { where: 'rpc server' }), 1, text);
      assert.is(sampleValue(text, 'hermod_messages_duplicate_total', { where: 'notification listener' }), 2, text);
      // The ids are the senders' (one per message): never a label, so copies cannot grow the series.
      assert.is(samples(text).filter((s) => s.name === 'hermod_messages_duplicate_total').length, 2, text);
      assert.not.match(text, /dup-rpc|dup-note/);
    } finally {
      await listener.stop();
      await listener.wait(1000);
    }
  } finally {
    await http.close();
    metrics.close();
  }
});

t.run();
