import FakeTimers from '@sinonjs/fake-timers';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Semaphore } from '../../src/core/semaphore.js';
import { ReplyWaiter } from '../../src/driver/reply-waiter.js';
import { rejects } from '../support/assert.js';

const t = suite<{ clock: ReturnType<typeof FakeTimers.install> }>('reply waiter (fake timers)', { clock: undefined as never });
t.before.each((ctx) => {
  ctx.clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'performance'] });
});
t.after.each((ctx) => ctx.clock.uninstall());

t('the overall timeout fires at its deadline and not before', async ({ clock }) => {
  const w = new ReplyWaiter();
  let settled: unknown;
  const p = w.wait('m1', { timeout: 60_000, describe: 'x on topic t' }).catch((e) => (settled = e));
  await clock.tickAsync(59_999);
  assert.is(settled, undefined);
  await clock.tickAsync(1);
  await p;
  assert.is((settled as { code: string }).code, 'HERMOD_ERR_TIMEOUT');
  assert.match((settled as Error).message, /m1 \(x on topic t\) after 60000 ms/);
  assert.is(w.size, 0);
});

t('heartbeats restart the monitor; silence past it fails the call', async ({ clock }) => {
  const w = new ReplyWaiter();
  let settled: unknown;
  const p = w.wait('m2', { timeout: 600_000, callMonitorTimeout: 10_000, describe: 'd' }).catch((e) => (settled = e));
  for (let i = 0; i < 10; i++) {
    await clock.tickAsync(6_000);
    assert.ok(w.heartbeat('m2'));
  }
  assert.is(settled, undefined, 'a minute of heartbeats keeps it alive');
  await clock.tickAsync(10_000);
  await p;
  assert.match((settled as Error).message, /no heartbeat from the server for 10000 ms/);
  assert.not.ok(w.heartbeat('m2'));
});

t('replies resolve once; unknown and late ids are reported, not thrown', async ({ clock }) => {
  const w = new ReplyWaiter();
  const p = w.wait('m3', { timeout: 1000, describe: 'd' });
  assert.ok(w.resolve('m3', { result: 7 }));
  assert.equal(await p, { result: 7 });
  assert.not.ok(w.resolve('m3', { result: 8 }));
  assert.not.ok(w.resolve('nobody', { result: 1 }));
  await clock.tickAsync(2000);
});

t('one timer serves every deadline: shorter, longer and equal timeouts each fail at their own', async ({ clock }) => {
  const w = new ReplyWaiter();
  const failedAt = new Map<string, number>();
  const start = clock.now;
  const track = (id: string, timeout: number) =>
    w.wait(id, { timeout, describe: id }).catch((e: Error) => {
      failedAt.set(id, clock.now - start);
      assert.match(e.message, new RegExp(`${id}\\) after ${timeout} ms`));
    });
  const all = [track('long', 3000), track('short', 1000), track('mid', 2000), track('mid2', 2000), track('done', 1500)];
  assert.ok(w.resolve('done', { result: 1 }));
  for (let i = 0; i < 35; i++) await clock.tickAsync(100);
  await Promise.all(all);
  // Deadlines are taken from the real clock when each call starts (the fake one drives the
  // timer), so a later call's may lie a fraction of a millisecond further.
  for (const [id, at] of Object.entries({ short: 1000, mid: 2000, mid2: 2000, long: 3000 })) {
    const t = failedAt.get(id);
    assert.ok(t !== undefined && t >= at && t <= at + 5, `${id} failed at ${t}, due at ${at}`);
  }
  assert.not.ok(failedAt.has('done'));
  assert.is(w.size, 0);
  // Armed again for a new call after everything ended.
  let late: unknown;
  const p = w.wait('again', { timeout: 500, describe: 'again' }).catch((e) => (late = e));
  await clock.tickAsync(499);
  assert.is(late, undefined);
  await clock.tickAsync(1);
  await p;
  assert.is((late as { code: string }).code, 'HERMOD_ERR_TIMEOUT');
});

t('failAll rejects everything pending', async () => {
  const w = new ReplyWaiter();
  const a = w.wait('a', { timeout: 1000, describe: 'd' });
  const b = w.wait('b', { timeout: 1000, describe: 'd' });
  w.failAll();
  await rejects(a, 'HERMOD_ERR_CLOSED');
  await rejects(b, 'HERMOD_ERR_CLOSED');
});

t('semaphore: waiters get slots in order, and time out', async ({ clock }) => {
  const s = new Semaphore(1);
  assert.is(s.acquire(), undefined);
  const order: number[] = [];
  const w1 = (s.acquire(1000) as Promise<void>).then(() => order.push(1));
  const w2 = (s.acquire(5000) as Promise<void>).then(() => order.push(2));
  const w3 = (s.acquire(100) as Promise<void>).catch((e: { code: string }) => order.push(e.code === 'HERMOD_ERR_TIMEOUT' ? 3 : -1));
  assert.is(s.waiting, 3);
  await clock.tickAsync(150);
  await w3;
  s.release();
  await w1;
  s.release();
  await w2;
  assert.equal(order, [3, 1, 2]);
  s.release();
  assert.is(s.inUse, 0);
});

t.run();
