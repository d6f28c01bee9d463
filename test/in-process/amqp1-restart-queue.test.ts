import type { Socket } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultConfig, getTransport, RPCClient, RPCServer, Target, type Transport } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { until } from '../support/assert.js';

// Sends beyond rhea's session buffer wait in the driver's SendFlow for room. When the router went
// away, the calls among them failed at once (their replies could not come) but kept their places
// in that queue; after the reconnect one pump woke them, each gave its slot back unused, and
// nothing woke the casts behind them: those waited, with the connection up and credit granted,
// until their deadlines and failed as undeliverable.

/** The driver's queue of sends waiting for room, read from outside for the precondition. */
const queued = (tr: Transport): number => (tr as unknown as { driver: { flow: { waiters: unknown[] } } }).driver.flow.waiters.length;

const t = suite('amqp1: sends queued for room when the router restarts');

t('casts queued behind failed calls go out after the reconnect, well before their deadline', async () => {
  let router = new Router({ port: 0, log: () => {} });
  const port = await router.start();
  const url = `amqp://127.0.0.1:${port}/`;
  const config = defaultConfig();
  config.amqp1.retryInterval = 100;
  const transports: Transport[] = [];
  let server: RPCServer | undefined;
  try {
    const st = await getTransport(url, { config });
    const ct = await getTransport(url, { config });
    transports.push(st, ct);
    let ran = 0;
    const endpoint = {
      echo: async (_c: unknown, a: { i: number }) => {
        await new Promise((r) => setTimeout(r, 5));
        return a.i;
      },
      c: async () => {
        ran++;
      },
    };
    server = new RPCServer(st, new Target({ topic: 'rq', server: 's1' }), [endpoint], { concurrency: 16 });
    await server.start();
    // The deadline the casts would otherwise run into; the test ends long before it when fixed.
    const client = new RPCClient(ct, new Target({ topic: 'rq' }), { timeout: 30_000, maxInFlight: 10_000 });
    const calls = Array.from({ length: 4000 }, (_, i) =>
      client.call({}, 'echo', { i }).then<{ ok: boolean; error?: string }, { ok: boolean; error?: string }>(
        (v) => ({ ok: v === i }),
        (e: Error) => ({ ok: false, error: `${e.constructor.name}: ${e.message}` }),
      ),
    );
    const casts = Array.from({ length: 2000 }, (_, i) =>
      client.cast({}, 'c', { i }).then(
        () => 'sent',
        (e: Error) => `${e.constructor.name}: ${e.message}`,
      ),
    );
    await until(() => queued(ct) > 1000, 'more sends than the session buffer holds queued for room', 30_000);
    // Dropped as a killed router drops them: no close frame, no outcome for what it held.
    for (const socket of (router as unknown as { sockets: Set<Socket> }).sockets) socket.destroy();
    await router.stop();
    router = new Router({ port, log: () => {} });
    await router.start();
    const castResults = await Promise.all(casts);
    const failed = castResults.filter((r) => r !== 'sent');
    assert.equal(failed.slice(0, 3), [], `${failed.length} of 2000 casts failed`);
    await until(() => ran >= 2000, `every cast runs (ran ${ran})`, 10_000);
    // Calls in flight fail at once with the connection (their reply cannot come); none waits
    // for its deadline, and none returns a wrong answer.
    const callResults = await Promise.all(calls);
    const timedOut = callResults.filter((r) => r.error?.startsWith('MessagingTimeout'));
    assert.equal(timedOut.slice(0, 3), [], `${timedOut.length} calls timed out`);
    assert.ok(
      callResults.every((r) => r.ok || r.error?.startsWith('TransportError')),
      JSON.stringify(callResults.find((r) => !r.ok && !r.error?.startsWith('TransportError'))),
    );
    assert.is(queued(ct), 0, 'nothing left waiting for room');
    assert.is(await client.call({}, 'echo', { i: 7 }, { timeout: 5000 }), 7);
  } finally {
    await server?.stop();
    await server?.wait(1000);
    for (const tr of transports) await tr.close();
    await router.stop();
  }
});

t.run();
