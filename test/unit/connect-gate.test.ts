import FakeTimers from '@sinonjs/fake-timers';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ConnectGate, type GateStatus } from '../../src/driver/connect-gate.js';
import { rejects } from '../support/assert.js';

interface Ctx {
  clock: ReturnType<typeof FakeTimers.install>;
  status: GateStatus;
  gate: ConnectGate;
}
const t = suite<Ctx>('connect gate (fake timers)', {} as Ctx);
t.before.each((ctx) => {
  ctx.clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  ctx.status = {
    closed: false,
    connected: false,
    failedAttempts: 0,
    failuresEver: 0,
    refused: false,
    problem: 'cannot connect to rabbit://h1:5672: ECONNREFUSED',
  };
  const status = ctx.status;
  ctx.gate = new ConnectGate(() => status);
});
t.after.each((ctx) => ctx.clock.uninstall());

/** Captures how `p` settles, so the test can tick the clock before looking. */
function track(p: Promise<void>) {
  const s: { done: boolean; err?: Error & { code?: string } } = { done: false };
  p.then(
    () => {
      s.done = true;
    },
    (e: Error) => {
      s.done = true;
      s.err = e;
    },
  );
  return s;
}

t('ready at once: resolves without looking at the connection', async ({ gate, status }) => {
  status.closed = true;
  await gate.until(() => true, Date.now() - 1, 0, 'call x');
});

t('closed: ClosedError, whatever else holds', async ({ gate, status }) => {
  status.closed = true;
  status.refused = true;
  await rejects(
    gate.until(() => false, Date.now() + 1000, -1, 'call x'),
    'HERMOD_ERR_CLOSED',
  );
  status.connected = true;
  await rejects(
    gate.until(() => false, Date.now() + 1000, -1, 'call x'),
    'HERMOD_ERR_CLOSED',
  );
});

t(
  'a refused transport fails each waiter after a turn of the event loop: a caller retrying at once does not starve it',
  async ({ gate, status }) => {
    status.refused = true;
    // Before: every send was refused within the same turn, and a loop of them never let I/O or
    // timers run (325,000 refusals in 6 s held a 100 ms interval back by 4.5 s).
    let turns = 0;
    let stop = false;
    const tick = () => {
      turns++;
      if (!stop) setImmediate(tick);
    };
    setImmediate(tick);
    for (let i = 0; i < 50; i++) {
      await gate.until(() => false, Date.now() + 60_000, -1, 'call x').catch(() => undefined);
    }
    stop = true;
    assert.ok(turns >= 40, `${turns} turns of the event loop in 50 refusals`);
  },
);

t('refused login or vhost: TransportError at once, not retried; not while connected', async ({ gate, status, clock }) => {
  status.refused = true;
  await rejects(
    gate.until(() => false, Date.now() + 60_000, -1, 'call x'),
    'HERMOD_ERR_TRANSPORT',
    /ECONNREFUSED.*not retrying for call x/,
  );
  // A connection that is up is not refused: the waiter waits for its condition.
  status.connected = true;
  let ready = false;
  const s = track(gate.until(() => ready, Date.now() + 60_000, -1, 'credit'));
  await clock.tickAsync(100);
  assert.not.ok(s.done);
  ready = true;
  gate.wake();
  await clock.tickAsync(0);
  assert.ok(s.done);
  assert.is(s.err, undefined);
});

/** One more failed connect attempt, as a driver counts it, and the waiters woken to re-check. */
async function fail(ctx: Ctx, n = 1) {
  ctx.status.failedAttempts += n;
  ctx.status.failuresEver += n;
  ctx.gate.wake();
  await ctx.clock.tickAsync(0);
  // A waiter that gives up does so after the event loop's next turn (setImmediate is not faked).
  await new Promise((r) => setImmediate(r));
}

t("retry budget: TransportError once the waiter's own failed attempts exceed it; -1 has no budget", async (ctx) => {
  const { gate, clock } = ctx;
  const within = track(gate.until(() => false, Date.now() + 10_000, 1, 'call x'));
  const unlimited = track(gate.until(() => false, Date.now() + 10_000, -1, 'call y'));
  await fail(ctx);
  assert.not.ok(within.done);
  await fail(ctx);
  assert.is(within.err?.code, 'HERMOD_ERR_TRANSPORT');
  assert.match(within.err!.message, /gave up after 2 attempts, retry=1/);
  await fail(ctx, 50);
  assert.not.ok(unlimited.done, 'retry -1 never gives up before the deadline');
  await clock.tickAsync(10_000);
  assert.is(unlimited.err?.code, 'HERMOD_ERR_TRANSPORT');
});

t('retry budget: a send that joins an outage gets its own tries; the failure it found counts as its first', async (ctx) => {
  const { gate, status } = ctx;
  // An outage 52 attempts long: a send with retry=3 used to fail at once, with no try of its own.
  await fail(ctx, 52);
  const three = track(gate.until(() => false, Date.now() + 60_000, 3, 'cast x'));
  await fail(ctx, 2);
  assert.not.ok(three.done, 'the found failure and two more are 3 attempts: within retry=3');
  await fail(ctx);
  assert.match(three.err!.message, /gave up after 4 attempts, retry=3/);
  // retry=0: the failure it found is its one try, so it fails at once, as it always did.
  await rejects(
    gate.until(() => false, Date.now() + 60_000, 0, 'call z'),
    'HERMOD_ERR_TRANSPORT',
    /gave up after 1 attempt, retry=0/,
  );
  // After a lost connection, before any attempt failed, retry=0 waits for the attempt under way.
  status.failedAttempts = 0;
  const zero = track(gate.until(() => false, Date.now() + 60_000, 0, 'call w'));
  await ctx.clock.tickAsync(1000);
  assert.not.ok(zero.done);
  await fail(ctx);
  assert.match(zero.err!.message, /gave up after 1 attempt, retry=0/);
});

t('deadline: TransportError while still not connected, MessagingTimeout when connected; not before', async ({ gate, status, clock }) => {
  const down = track(gate.until(() => false, Date.now() + 1000, -1, 'call x'));
  await clock.tickAsync(999);
  assert.not.ok(down.done);
  await clock.tickAsync(1);
  assert.is(down.err?.code, 'HERMOD_ERR_TRANSPORT');
  assert.match(
    down.err!.message,
    /not connected to rabbit:\/\/h1:5672: ECONNREFUSED yet: the attempt under way had not failed when call x timed out/,
  );
  assert.ok((down.err as { stillConnecting?: boolean }).stillConnecting);
  // After a failed attempt it is the connection's failure that is reported.
  status.failedAttempts = 1;
  const failing = track(gate.until(() => false, Date.now() + 1000, -1, 'call z'));
  await clock.tickAsync(1000);
  assert.match(
    failing.err!.message,
    /^cannot connect to rabbit:\/\/h1:5672: ECONNREFUSED \(still trying when call z timed out after 1 s\)/,
  );
  assert.not.ok((failing.err as { stillConnecting?: boolean }).stillConnecting);
  status.failedAttempts = 0;
  status.connected = true;
  const up = track(gate.until(() => false, Date.now() + 1000, -1, 'call x'));
  await clock.tickAsync(999);
  assert.not.ok(up.done);
  await clock.tickAsync(1);
  assert.is(up.err?.code, 'HERMOD_ERR_TIMEOUT');
  // A deadline already past fails at once.
  await rejects(
    gate.until(() => false, Date.now(), -1, 'cast y'),
    'HERMOD_ERR_TIMEOUT',
  );
});

t('wake: every waiter re-checks at once; without a wake they sleep until the deadline or pollMs', async ({ gate, status, clock }) => {
  let connected = false;
  const a = track(gate.until(() => connected, Date.now() + 10_000, -1, 'a'));
  const b = track(gate.until(() => connected, Date.now() + 10_000, -1, 'b'));
  await clock.tickAsync(1000);
  connected = true;
  status.connected = true;
  await clock.tickAsync(1000);
  assert.not.ok(a.done || b.done, 'nobody re-checks before a wake');
  gate.wake();
  await clock.tickAsync(0);
  assert.ok(a.done && b.done);
  assert.is(a.err ?? b.err, undefined);
  // pollMs bounds each sleep for conditions nobody wakes the gate for.
  let credit = false;
  const c = track(gate.until(() => credit, Date.now() + 10_000, -1, 'c', 100));
  credit = true;
  await clock.tickAsync(99);
  assert.not.ok(c.done);
  await clock.tickAsync(1);
  assert.ok(c.done);
  assert.is(c.err, undefined);
  gate.wake(); // no waiters left: nothing to do
  assert.is(clock.countTimers(), 0, 'no timers left behind');
});

t.run();
