import type { AddressInfo, Server } from 'node:net';
import type { Connection, Container, EventContext } from 'rhea';
import rhea from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { applyOverrides } from '../../src/config/index.js';
import { AccessRefused, defaultConfig, getTransport, type Transport } from '../../src/index.js';
import { clearRheaTimers } from '../../src/rhea/index.js';
import { rejects, sleep, until } from '../support/assert.js';

// The AMQP 1.0 driver against a peer that closes the connection with a condition of its
// choosing. rhea reconnects only after `amqp:connection:forced` unless told otherwise, and not
// at all after a close without an error: a router that closed on a frame it could not read
// (`amqp:decode-error`) left a server dead and its sends "still trying" until their timeout.
// The peer is rhea's own server container, a peer hermod did not write.

/** How the peer treats the n-th connection (1-based) once it is open. */
type Behaviour = (n: number, conn: Connection) => void;

class ClosingPeer {
  readonly opens: number[] = [];
  private readonly container: Container = rhea.create_container({ id: 'closing-peer' });
  private server: Server | undefined;
  private readonly conns = new Set<Connection>();

  constructor(behaviour: Behaviour) {
    this.container.on('error', () => {});
    this.container.on('connection_open', (ctx: EventContext) => {
      this.conns.add(ctx.connection);
      this.opens.push(Date.now());
      behaviour(this.opens.length, ctx.connection);
    });
    this.container.on('disconnected', () => {});
  }

  async listen(): Promise<number> {
    this.server = this.container.listen({ port: 0, host: '127.0.0.1' }) as unknown as Server;
    await new Promise<void>((r) => this.server!.once('listening', () => r()));
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const c of this.conns) {
      (c as unknown as { socket?: { destroy(): void } }).socket?.destroy();
      clearRheaTimers(c);
    }
    await new Promise<void>((r) => this.server!.close(() => r()));
  }
}

/** Closes each connection `afterMs` after it opened (long enough for the client to see it open). */
const closeWith =
  (condition?: string, afterMs = 50): Behaviour =>
  (_n, conn) => {
    setTimeout(
      () => conn.close(condition ? ({ condition, description: `the peer closes with ${condition}` } as never) : undefined),
      afterMs,
    );
  };

async function transportTo(port: number, retryInterval = 400): Promise<{ tr: Transport; states: Array<{ state: string; error?: Error }> }> {
  const tr = await getTransport(`amqp://127.0.0.1:${port}/`, {
    config: applyOverrides(defaultConfig(), { 'amqp1.retryInterval': retryInterval, 'amqp1.intervalMax': 30_000 }),
  });
  const states: Array<{ state: string; error?: Error }> = [];
  tr.driver.on('state', (s: { state: string; error?: Error }) => states.push(s));
  return { tr, states };
}

const test = suite('amqp1 driver: a peer closes the connection with a condition');

for (const condition of ['amqp:decode-error', 'amqp:not-allowed', 'amqp:internal-error', undefined]) {
  test(`closed with ${condition ?? 'no error'} once: the driver connects again at once`, async () => {
    const peer = new ClosingPeer((n, conn) => {
      if (n === 1) closeWith(condition)(n, conn);
    });
    // A backoff (2 s, ±25 %) far from "at once": at load 15 the immediate reconnect took 300 ms.
    const { tr, states } = await transportTo(await peer.listen(), 2_000);
    try {
      await tr.connect(5_000);
      await until(() => peer.opens.length >= 2, 'the second connection', 5_000);
      await until(() => states.filter((s) => s.state === 'connected').length === 2, 'connected again');
      const lost = states.find((s) => s.state === 'disconnected');
      if (condition) assert.match(lost?.error?.message ?? '', condition);
      // The first loss in a while is retried at once.
      assert.ok(peer.opens[1]! - peer.opens[0]! < 1_200, `reconnected after ${peer.opens[1]! - peer.opens[0]!} ms`);
      await tr.connect(1_000);
    } finally {
      await tr.close();
      await peer.close();
    }
  });
}

test('a peer that closes every connection as it opens: retried after a growing delay, not in a loop', async () => {
  const peer = new ClosingPeer(closeWith('amqp:resource-limit-exceeded'));
  const { tr } = await transportTo(await peer.listen());
  try {
    await tr.connect(5_000);
    // At once, then 400 ms, 800, 1600 (±25 % jitter): 4 or 5 opens in 3 s.
    await sleep(3_000);
    const n = peer.opens.length;
    assert.ok(n >= 3 && n <= 6, `${n} connections in 3 s`);
    const gaps = peer.opens.slice(1).map((t, i) => t - peer.opens[i]!);
    assert.ok(gaps[2]! > gaps[1]!, `the delay grows: ${gaps.join(', ')} ms`);
  } finally {
    await tr.close();
    await peer.close();
  }
});

test('closed with amqp:unauthorized-access after open: waits fail at once with AccessRefused, no retry', async () => {
  const peer = new ClosingPeer(closeWith('amqp:unauthorized-access'));
  const { tr, states } = await transportTo(await peer.listen());
  try {
    // The close follows the open by 50 ms: a client descheduled that long (a loaded machine)
    // reads both at once, and its first wait already meets the refusal.
    await tr.connect(5_000).catch((e: unknown) => assert.instance(e, AccessRefused));
    await until(() => states.some((s) => s.state === 'disconnected'), 'the close');
    const started = Date.now();
    const err = await rejects(() => tr.connect(10_000), 'HERMOD_ERR_ACCESS_REFUSED', /refused the connection; not retrying/);
    assert.instance(err, AccessRefused);
    assert.ok(Date.now() - started < 2_000, 'not at the deadline');
    await sleep(1_000);
    assert.is(peer.opens.length, 1, 'not retried');
  } finally {
    await tr.close();
    await peer.close();
  }
});

test.run();
