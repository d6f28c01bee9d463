import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import FakeTimers from '@sinonjs/fake-timers';
import type { ChannelModel } from 'amqplib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultConfig } from '../../src/config/index.js';
import { parseTransportUrl } from '../../src/config/transport-url.js';
import { CLOSE_GRACE_MS } from '../../src/driver/driver-base.js';
import { type Dial, RabbitConnection } from '../../src/driver/rabbit/connection.js';
import { rejects } from '../support/assert.js';

// The reconnect-while-stopping fix of RabbitConnection (issue: rpc-server hung in "connecting…"
// after CONNECTION_FORCED arrived during its stop), pinned with fake timers and a fake amqplib.

/** A fake amqplib ChannelModel: emits `close` on demand; its close() answers or hangs. */
class FakeModel extends EventEmitter {
  closeCalls = 0;
  readonly stream = { destroyed: false, destroy: () => (this.stream.destroyed = true) };
  readonly connection = { stream: this.stream };
  constructor(private readonly answersClose = true) {
    super();
  }
  async close(): Promise<void> {
    this.closeCalls++;
    if (!this.answersClose) return new Promise(() => {});
    this.emit('close');
  }
}

interface Ctx {
  clock: ReturnType<typeof FakeTimers.install>;
  dials: number;
  models: FakeModel[];
  /** What the next dials do: 'open' a model, 'fail', or 'hang' (a peer that never answers). */
  next: Array<'open' | 'open-hanging-close' | 'fail' | 'hang'>;
  sockets: Array<{ destroyed: boolean }>;
  conn: RabbitConnection;
}
const t = suite<Ctx>('rabbit connection: stopping (fake timers, fake amqplib)', {} as Ctx);
t.before.each((ctx) => {
  ctx.clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
  ctx.dials = 0;
  ctx.models = [];
  ctx.next = [];
  ctx.sockets = [];
  const dial: Dial = async (_h, onSocket) => {
    ctx.dials++;
    const what = ctx.next.shift() ?? 'fail';
    const sock = { destroyed: false, destroy: () => (sock.destroyed = true) };
    ctx.sockets.push(sock);
    onSocket(sock as unknown as Socket);
    if (what === 'fail') throw new Error('ECONNREFUSED');
    if (what === 'hang') {
      return new Promise<ChannelModel>((_, reject) => {
        // What destroying the socket does to amqplib's connect: it fails.
        const timer = setInterval(() => {
          if (sock.destroyed) {
            clearInterval(timer);
            reject(new Error('socket destroyed'));
          }
        }, 1);
      });
    }
    const m = new FakeModel(what === 'open');
    ctx.models.push(m);
    return m as unknown as ChannelModel;
  };
  const config = defaultConfig();
  config.rabbit.retryInterval = 1000;
  ctx.conn = new RabbitConnection(parseTransportUrl('rabbit://guest:guest@127.0.0.1:5672/'), config, 'test', dial);
});
t.after.each((ctx) => ctx.clock.uninstall());

async function connected(ctx: Ctx): Promise<FakeModel> {
  ctx.next.push('open');
  const ready = ctx.conn.ready(Date.now() + 5000, -1, 'test');
  await ctx.clock.tickAsync(0);
  await ready;
  return ctx.models.at(-1)!;
}

t('control: without a stop, a lost connection is re-opened at once', async (ctx) => {
  const m = await connected(ctx);
  ctx.next.push('open');
  m.emit('close', new Error('CONNECTION_FORCED - broker forced connection closure with reason shutdown'));
  await ctx.clock.tickAsync(0);
  assert.is(ctx.dials, 2, 'the loop dialled again');
  await ctx.conn.close();
});

t('a loss after holdOpen() is not re-opened; the loop ends and leaves no timer', async (ctx) => {
  const m = await connected(ctx);
  await ctx.conn.holdOpen();
  assert.is(m.closeCalls, 0, 'holdOpen keeps an open connection for settling in-flight work');
  assert.ok(ctx.conn.isOpen);
  ctx.next.push('open', 'open', 'open');
  m.emit('close', new Error('CONNECTION_FORCED - broker forced connection closure with reason shutdown'));
  await ctx.clock.tickAsync(60_000);
  assert.is(ctx.dials, 1, 'no reconnect while stopping');
  assert.is(ctx.clock.countTimers(), 0, 'no backoff timer left');
  await rejects(ctx.conn.ready(Date.now() + 1000, -1, 'test'), 'HERMOD_ERR_CLOSED');
  await ctx.conn.close();
});

t('holdOpen() while backing off after failures closes at once: no timer, no further dial', async (ctx) => {
  ctx.conn.start();
  await ctx.clock.tickAsync(0);
  assert.is(ctx.dials, 1);
  assert.ok(ctx.clock.countTimers() >= 1, 'sleeping before the next attempt');
  await ctx.conn.holdOpen();
  await ctx.clock.tickAsync(60_000);
  assert.is(ctx.dials, 1);
  assert.is(ctx.clock.countTimers(), 0);
});

t('close() during a connect to a peer that never answers drops its socket at once', async (ctx) => {
  ctx.next.push('hang');
  ctx.conn.start();
  await ctx.clock.tickAsync(0);
  let closed = false;
  const closing = ctx.conn.close().then(() => {
    closed = true;
  });
  await ctx.clock.tickAsync(5);
  assert.ok(closed, 'close() did not wait for the handshake');
  assert.ok(ctx.sockets[0]!.destroyed, 'the dialing socket was destroyed');
  await closing;
  await ctx.clock.tickAsync(60_000);
  assert.is(ctx.dials, 1, 'and nothing dialled again');
  assert.is(ctx.clock.countTimers(), 0);
});

t('close() with a broker that never answers the close: the socket is dropped after CLOSE_GRACE_MS', async (ctx) => {
  ctx.next.push('open-hanging-close');
  const ready = ctx.conn.ready(Date.now() + 5000, -1, 'test');
  await ctx.clock.tickAsync(0);
  await ready;
  const m = ctx.models[0]!;
  let closed = false;
  const closing = ctx.conn.close().then(() => {
    closed = true;
  });
  await ctx.clock.tickAsync(CLOSE_GRACE_MS - 10);
  assert.not.ok(closed, 'waits for the close handshake within the grace');
  await ctx.clock.tickAsync(20);
  assert.ok(closed);
  assert.ok(m.stream.destroyed, 'the socket was dropped');
  await closing;
  assert.is(ctx.clock.countTimers(), 0);
});

t.run();
