import net, { type AddressInfo, type Socket } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../scripts/rabbit-node.js';
import { type ConnectionState, defaultConfig, getTransport, RPCClient, Target, type Transport } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { until } from '../support/assert.js';

// `retry` (oslo's per-send `retry`, kombu's max_retries) is each send's own: the attempts that fail
// while it waits, counting the failure it found as its first try. It was the connection's count
// since its last success, so once an outage had lasted N attempts, every send with retry <= N
// failed at once without a try of its own, even if the broker came back a moment later.

const t = suite('retry budget per send, on both drivers (nothing listening)');

/** How a send settled, and how long it took. */
async function timed(p: Promise<unknown>): Promise<{ ms: number; error?: Error & { code?: string } }> {
  const t0 = Date.now();
  try {
    await p;
    return { ms: Date.now() - t0 };
  } catch (e) {
    return { ms: Date.now() - t0, error: e as Error & { code?: string } };
  }
}

for (const scheme of ['amqp', 'rabbit'] as const) {
  t(`${scheme}: a send that joins an outage makes its own tries`, async () => {
    const port = await freePort();
    const config = defaultConfig();
    // Quick, steady retries: the outage is many attempts long before the second send comes.
    config.rabbit.retryInterval = config.rabbit.intervalMax = 100;
    config.amqp1.retryInterval = config.amqp1.intervalMax = 100;
    const url = scheme === 'amqp' ? `amqp://127.0.0.1:${port}/` : `rabbit://guest:guest@127.0.0.1:${port}/`;
    const tr = await getTransport(url, { config });
    let failures = 0;
    tr.on('state', (s: ConnectionState) => {
      if (s.state === 'reconnecting') failures++;
    });
    try {
      const client = new RPCClient(tr, new Target({ topic: 'budget' }), { timeout: 1500 });
      const first = await timed(client.prepare({ retry: -1 }).call({}, 'm'));
      assert.is(first.error?.code, 'HERMOD_ERR_TRANSPORT', String(first.error));
      assert.ok(failures >= 4, `the outage lasted ${failures} failed attempts, more than the next send's budget`);
      const seen = failures;
      const cast = await timed(client.prepare({ retry: 3, timeout: 30_000 }).cast({}, 'm'));
      assert.is(cast.error?.code, 'HERMOD_ERR_TRANSPORT', String(cast.error));
      assert.match(cast.error!.message, /gave up after 4 attempts, retry=3/);
      assert.ok(failures - seen >= 3, `the cast waited for three attempts of its own (${failures - seen} failed while it waited)`);
    } finally {
      await tr.close();
    }
  });
}

for (const scheme of ['amqp', 'rabbit'] as const) {
  t(`${scheme}: a send that joins a long outage tries on a backoff of its own, not the connection's grown one`, async () => {
    // oslo's sends each reconnect with kombu's backoff started afresh (1 s, then 3 s, ...): a
    // retry=2 send took 4 s however long the outage. Waiting out the connection's backoff,
    // grown towards intervalMax (30 s), made the same send take 10, then 47 s, and outlive its
    // timeout.
    const port = await freePort();
    const config = defaultConfig();
    config.rabbit.retryInterval = config.amqp1.retryInterval = 400;
    config.rabbit.intervalMax = config.amqp1.intervalMax = 20_000;
    const url = scheme === 'amqp' ? `amqp://127.0.0.1:${port}/` : `rabbit://guest:guest@127.0.0.1:${port}/`;
    const tr = await getTransport(url, { config });
    let longSleep: () => void = () => {};
    const grown = new Promise<void>((resolve) => (longSleep = resolve));
    let failures = 0;
    tr.on('state', (s: ConnectionState) => {
      if (s.state !== 'reconnecting') return;
      failures++;
      if ((s.delayMs ?? 0) >= 2400) longSleep();
    });
    try {
      const client = new RPCClient(tr, new Target({ topic: 'budget' }), { timeout: 30_000 });
      // The first send starts the connection; its budget ends long before the backoff grows.
      await timed(client.prepare({ retry: 0 }).cast({}, 'm'));
      await grown;
      // Its own tries: the failure it found, one after about retryInterval (400 ms ± 25 %).
      const cast = await timed(client.prepare({ retry: 1 }).cast({}, 'm'));
      assert.is(cast.error?.code, 'HERMOD_ERR_TRANSPORT', String(cast.error));
      assert.match(cast.error!.message, /gave up after 2 attempts, retry=1/);
      assert.ok(cast.ms < 1500, `gave up after ${cast.ms} ms; the connection's next attempt was at least 1800 ms away`);
      // A send without a budget waits on the connection's backoff (grown past 2.4 s again by
      // that failure): hurried by every send, steady traffic kept a client trying once a second.
      const seen = failures;
      const patient = await timed(client.prepare({ retry: -1, timeout: 1000 }).cast({}, 'm'));
      assert.is(patient.error?.code, 'HERMOD_ERR_TRANSPORT', String(patient.error));
      assert.is(failures, seen, 'no attempt brought forward by a send without a retry budget');
    } finally {
      await tr.close();
    }
  });
}

t(
  'rabbit: a front end that takes TCP and closes it (a load balancer, its brokers down) is probed once per outage, not at every attempt',
  async () => {
    // Each failed handshake ran the protocol probes (one or two TCP connections more) again: three
    // connections per attempt at the balancer for the whole outage.
    const front = net.createServer((c) => {
      accepted++;
      c.destroy();
    });
    let accepted = 0;
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    const port = (front.address() as AddressInfo).port;
    const config = defaultConfig();
    config.rabbit.retryInterval = config.rabbit.intervalMax = 100;
    const tr = await getTransport(`rabbit://guest:guest@127.0.0.1:${port}/`, { config });
    let failures = 0;
    tr.on('state', (s: ConnectionState) => {
      if (s.state === 'reconnecting') failures++;
    });
    try {
      await timed(tr.connect(1_500));
      await until(() => failures >= 6, 'six failed attempts', 10_000);
      const seen = failures;
      assert.ok(accepted <= seen + 1 + 2, `${accepted} connections for ${seen} attempts (at most one each, the first two probes besides)`);
    } finally {
      await tr.close();
      await new Promise((resolve) => front.close(resolve));
    }
  },
);

t('amqp: the immediate reconnect after a lost connection is counted: a retry: 0 call fails at once', async () => {
  const router = new Router({ port: 0, log: () => {} });
  const port = await router.start();
  const config = defaultConfig();
  // A backoff the call must not wait for: before, the failed immediate retry went uncounted and
  // the call waited for the next attempt, one retryInterval later.
  config.amqp1.retryInterval = config.amqp1.intervalMax = 8000;
  let tr: Transport | undefined;
  try {
    tr = await getTransport(`amqp://127.0.0.1:${port}/`, { config });
    await tr.connect(5000);
    const states: string[] = [];
    tr.on('state', (s: ConnectionState) => states.push(s.state === 'reconnecting' ? `reconnecting ${s.attempt}` : s.state));
    // Gone as a killed router goes: no close frame, and nothing listening on the port any more.
    for (const socket of (router as unknown as { sockets: Set<Socket> }).sockets) socket.destroy();
    await router.stop();
    const client = new RPCClient(tr, new Target({ topic: 'budget' }), { timeout: 20_000, retry: 0 });
    const call = await timed(client.call({}, 'm'));
    assert.is(call.error?.code, 'HERMOD_ERR_TRANSPORT', String(call.error));
    assert.match(call.error!.message, /gave up after 1 attempt, retry=0/);
    assert.ok(call.ms < 4000, `failed after ${call.ms} ms, not after the 8 s backoff`);
    assert.ok(states.includes('reconnecting 1'), `the failed immediate retry is reported: ${states.join(', ')}`);
  } finally {
    await tr?.close();
    await router.stop();
  }
});

t.run();
