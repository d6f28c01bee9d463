import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type Context, defaultConfig, getTransport, RPCClient, RPCServer, Target, type Transport } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { sleep, until } from '../support/assert.js';

// rhea keeps a session's deliveries in a 2048-slot buffer that it freed only from its front: one
// delivery left unsettled there (a request waiting in the router for a busy server, or a request
// a server holds behind its concurrency) stopped the whole connection 2 000 messages later, every
// topic and the replies it owed included. src/rhea/session-buffer.ts frees settled deliveries
// wherever they are.

/** Waits until its call's signal aborts (the server's stop): holds its request as long as the test needs. */
const hold = async (ctx: Context) => {
  const signal = (ctx as { signal: AbortSignal }).signal;
  await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
  return 'released';
};

const t = suite('amqp1: one unsettled delivery does not stop a connection');

t('a transport with a request pinned on each side still makes and serves 2 500 calls', async () => {
  const router = new Router({ port: 0, log: () => {} });
  const url = `amqp://127.0.0.1:${await router.start()}/`;
  const transports: Transport[] = [];
  const servers: RPCServer[] = [];
  const mk = async () => {
    const tr = await getTransport(url, { config: defaultConfig() });
    transports.push(tr);
    return tr;
  };
  const serve = async (tr: Transport, topic: string, endpoint: object, concurrency: number) => {
    const s = new RPCServer(tr, new Target({ topic, server: 's1' }), [endpoint], { concurrency });
    await s.start();
    servers.push(s);
    return s;
  };
  try {
    // `mine` both calls and serves, as an OpenStack service does.
    const [mine, other, caller] = [await mk(), await mk(), await mk()];
    const busy = await serve(other, 'busy', { hold }, 1);
    const held = await serve(mine, 'held', { hold, ping: async () => 'pong' }, 1);
    await serve(other, 'fast', { ping: async () => 'pong' }, 64);
    // Outgoing: the second call to the busy server waits in the router, unsettled, in `mine`'s session.
    const toBusy = new RPCClient(mine, new Target({ topic: 'busy' }), { timeout: 60_000 });
    const pinnedOut = [toBusy.call({}, 'hold'), toBusy.call({}, 'hold')].map((p) => p.catch(() => undefined));
    await until(() => busy.stats().inFlight === 1, 'the busy server runs one');
    // Incoming: `mine` holds a second request behind its concurrency of 1, unsettled.
    const toHeld = new RPCClient(caller, new Target({ topic: 'held', server: 's1' }), { timeout: 60_000 });
    const pinnedIn = [
      new RPCClient(caller, new Target({ topic: 'held' }), { timeout: 60_000 }).call({}, 'hold'),
      toHeld.call({}, 'hold'),
    ].map((p) => p.catch(() => undefined));
    await until(() => held.stats().inFlight === 1 && held.stats().queued === 1, 'one held request running, one queued');
    await sleep(100);
    const fast = new RPCClient(mine, new Target({ topic: 'fast' }), { timeout: 5000 });
    let answered = 0;
    for (let i = 0; i < 2500; i++) {
      assert.is(await fast.call({}, 'ping'), 'pong', `call ${i}`);
      answered++;
    }
    assert.is(answered, 2500);
    // The pinned deliveries are still there, and still served in the end.
    assert.is(busy.stats().inFlight, 1);
    assert.is(held.stats().queued, 1);
    void pinnedOut;
    void pinnedIn;
  } finally {
    for (const s of servers) {
      await s.stop();
      await s.wait(0);
    }
    // Closing fails the calls still pinned (ClosedError), which were made to wait for it.
    for (const tr of transports) await tr.close();
    await router.stop();
  }
});

t.run();
