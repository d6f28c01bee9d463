import type { AddressInfo, Server } from 'node:net';
import rhea from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type Context, defaultConfig, getTransport, RPCClient, RPCServer, Target, type Transport } from '../../src/index.js';
import { clearRheaTimers, socketOf } from '../../src/rhea/index.js';
import { Router } from '../../src/router/router.js';
import { lapse, sleep, until } from '../support/assert.js';

// A server's link credit across a reconnect whose re-attach the peer answers late. The peer is a
// plain rhea container (no router of ours), so that it can delay its answer to one attach.

const t = suite('amqp1: peers that answer late or never settle');

/** The driver's queue of sends waiting for room in the session buffer, read from outside for the precondition. */
const queued = (tr: Transport): number => (tr as unknown as { driver: { flow: { waiters: unknown[] } } }).driver.flow.waiters.length;

t('close() ends the sends waiting for room in the session buffer at once (ClosedError), not at their deadlines', async () => {
  // A peer that settles nothing: the session buffer fills with casts waiting for their outcome.
  const container = rhea.create_container({ id: 'holds-all' });
  container.on('error', () => {});
  container.on('disconnected', () => {});
  const peers: rhea.Connection[] = [];
  container.on('connection_open', (ctx: rhea.EventContext) => peers.push(ctx.connection));
  container.on('receiver_open', (ctx: rhea.EventContext) => ctx.receiver!.add_credit(5000));
  let received = 0;
  container.on('message', () => {
    received++;
  });
  const listener = container.listen({ port: 0, host: '127.0.0.1', autoaccept: false } as never) as unknown as Server;
  await new Promise((r) => listener.once('listening', r));
  const transport = await getTransport(`amqp://127.0.0.1:${(listener.address() as AddressInfo).port}/`, { config: defaultConfig() });
  try {
    const client = new RPCClient(transport, new Target({ topic: 'held' }), { timeout: 60_000 });
    // 2048 slots, 128 kept for replies: the 1921st cast waits for room.
    const held = Array.from({ length: 1920 }, () => client.cast({}, 'x').catch((e: Error & { code?: string }) => e.code));
    // Until the session buffer is full: at load 15, 300 ms was not enough, and the cast below went
    // out into the buffer instead of waiting for room.
    await until(() => received >= 1920, 'the held casts at the peer', 30_000);
    const waiting = client.cast({}, 'x').then(
      () => 'resolved',
      (e: Error & { code?: string }) => e.code,
    );
    await until(() => queued(transport) === 1, 'the next cast to wait for room', 30_000);
    const t0 = Date.now();
    await transport.close();
    const closedAfter = Date.now() - t0;
    // Before: it rejected only at its 60 s deadline, with MessagingTimeout, its timer holding the process.
    const outcome = await Promise.race([waiting, lapse(2000).then(() => 'still waiting 2 s after close()')]);
    assert.is(outcome, 'HERMOD_ERR_CLOSED', `close() took ${closedAfter} ms`);
    assert.ok((await Promise.all(held)).every((c) => c !== undefined));
  } finally {
    await transport.close();
    for (const c of peers) {
      (c as unknown as { socket?: { destroy(): void } }).socket?.destroy();
      clearRheaTimers(c);
    }
    await new Promise((r) => listener.close(r));
  }
});

t('a peer that never answers an attach: start() fails within rpc.responseTimeout, not never', async () => {
  const container = rhea.create_container({ id: 'mute-attach' });
  container.on('error', () => {});
  container.on('disconnected', () => {});
  const peers: rhea.Connection[] = [];
  container.on('connection_open', (ctx: rhea.EventContext) => {
    peers.push(ctx.connection);
    const conn = ctx.connection as unknown as { on_attach(frame: { performative: { name: string } }): void };
    const original = conn.on_attach;
    // The attach of the server's own address is swallowed: no answer, no error.
    conn.on_attach = function (frame) {
      if (!frame.performative.name.includes('.t.s1]')) original.call(this, frame);
    };
  });
  const listener = container.listen({ port: 0, host: '127.0.0.1' } as never) as unknown as Server;
  await new Promise((r) => listener.once('listening', r));
  const transport = await getTransport(`amqp://127.0.0.1:${(listener.address() as AddressInfo).port}/`, {
    config: defaultConfig(),
    overrides: { 'rpc.responseTimeout': '1s' },
  });
  const server = new RPCServer(transport, new Target({ topic: 't', server: 's1' }), [{ ping: async () => 'pong' }]);
  try {
    const outcome = await Promise.race([
      server.start().then(
        () => 'started',
        (e: Error & { code?: string }) => `${e.code}: ${e.message}`,
      ),
      lapse(10_000).then(() => 'still pending after 10 s'),
    ]);
    assert.match(outcome, /^HERMOD_ERR_TRANSPORT: subscribe: the peer did not answer the attach of .*within 1 s \(rpc\.responseTimeout\)/);
  } finally {
    await server.stop();
    await transport.close();
    for (const c of peers) {
      (c as unknown as { socket?: { destroy(): void } }).socket?.destroy();
      clearRheaTimers(c);
    }
    await new Promise((r) => listener.close(r));
  }
});

t('a presettled cast waiting for the slot when the connection drops still runs: nothing delivers it again', async () => {
  const router = new Router({ port: 0, log: () => {} });
  const url = `amqp://127.0.0.1:${await router.start()}/`;
  const serverT = await getTransport(url, { config: defaultConfig() });
  const clientT = await getTransport(url, { config: defaultConfig(), overrides: { 'amqp1.presettledCasts': true } });
  const runs = new Map<number, number>();
  const server = new RPCServer(
    serverT,
    new Target({ topic: 'pc', server: 's1' }),
    [
      {
        async work(_c: Context, args: { seq: number }) {
          runs.set(args.seq, (runs.get(args.seq) ?? 0) + 1);
          await sleep(800);
        },
      },
    ],
    { concurrency: 1 },
  );
  try {
    await server.start();
    await new RPCClient(clientT, new Target({ topic: 'pc' })).cast({}, 'work', { seq: 1 });
    // Its own address has credit of its own: the second cast is taken while the first runs.
    await new RPCClient(clientT, new Target({ topic: 'pc', server: 's1' })).cast({}, 'work', { seq: 2 });
    await until(() => runs.get(1) === 1 && server.stats().queued === 1, 'one running, one waiting for the slot');
    const conn = (serverT.driver as unknown as { connection: { rhea?: rhea.Connection } }).connection.rhea!;
    let dropped = false;
    serverT.on('state', (st: { state: string }) => {
      if (st.state !== 'connected') dropped = true;
    });
    const socket = socketOf(conn);
    assert.ok(socket, "the server connection's socket");
    // With an error, as a network failure ends it.
    socket.destroy(new Error('dropped'));
    await until(() => dropped, 'the server connection to drop');
    // Before: dropped as an unsettled one would be, and the router had kept no copy.
    await until(() => runs.get(2) === 1, 'the second cast to run', 10_000);
    assert.equal(Object.fromEntries(runs), { 1: 1, 2: 1 });
  } finally {
    await server.stop();
    await server.wait(2000);
    await clientT.close();
    await serverT.close();
    await router.stop();
  }
});

t.run();
