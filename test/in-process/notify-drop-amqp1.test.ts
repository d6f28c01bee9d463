import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type BatchedNotification, defaultConfig, getTransport, NotificationListener, Notifier, Target } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { sleep, until } from '../support/assert.js';
import { slowProxy } from '../support/slow-proxy.js';

// The AMQP 1.0 case of a connection dropped under a notification listener (RabbitMQ:
// test/integration/notify.test.ts): the router gives the deliveries the listener had not settled
// back to their sender, hermod's notifier sends them again, and only those copies may run.

const t = suite('amqp1: a connection dropped under a notification listener');

async function batchAcrossDrop(downMs: number): Promise<void> {
  const router = new Router({ port: 0 });
  await router.start();
  const proxy = await slowProxy(`amqp://127.0.0.1:${router.port}/`, 0);
  const listening = await getTransport(proxy.url, { config: defaultConfig() });
  const sending = await getTransport(`amqp://127.0.0.1:${router.port}/`, { config: defaultConfig() });
  try {
    const seen: string[] = [];
    const batchTimeout = 2000;
    const l = new NotificationListener(
      listening,
      [new Target({ topic: 'bd' })],
      [{ info: (b: BatchedNotification[]) => void seen.push(...b.map((m) => m.event_type)) }],
      { batchSize: 10, batchTimeout },
    );
    await l.start();
    const nt = new Notifier(sending, { publisherId: 'p', topics: ['bd'] });
    // Through a router a send resolves once a listener accepted it: after the batch ran.
    const sent = [nt.info({}, 'e0', {}), nt.info({}, 'e1', {})];
    await until(() => l.stats().queued === 2, `both waiting in the batch (${JSON.stringify(l.stats())})`);
    proxy.cut(downMs);
    await until(() => l.stats().handled === 2, `the copies sent again handled (${JSON.stringify(l.stats())})`, 5 * batchTimeout);
    await Promise.all(sent);
    // Long enough for the stale batch's timer, had it been the later one.
    await sleep(batchTimeout + 500);
    assert.equal([...seen].sort(), ['e0', 'e1'], `each ran once: ${JSON.stringify(seen)}`);
    assert.is(l.stats().handled, 2);
    assert.is(l.stats().requeued, 2, 'the stale copies counted as given back');
    await l.stop();
    await l.wait(1000);
  } finally {
    await sending.close();
    await listening.close();
    await proxy.close();
    await router.stop();
  }
}

t('a partial batch pending when the connection drops runs once: from the copies sent again', () => batchAcrossDrop(0));
// Its timer fires while the connection is down: rhea has not reconnected, the deliveries look
// current to it, yet the router has already taken them back.
t('…also when its timer fires before the connection is back', () => batchAcrossDrop(3000));

t.run();
