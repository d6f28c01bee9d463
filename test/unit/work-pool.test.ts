import FakeTimers from '@sinonjs/fake-timers';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type Work, WorkPool } from '../../src/core/work-pool.js';

/** Work that runs until the test finishes it (or for `ms` of fake time), recording what happened to it. */
class Job implements Work {
  events: string[] = [];
  private finishRun: (() => void) | undefined;
  constructor(
    readonly name: string,
    private readonly log: string[],
    private readonly ms?: number,
  ) {}
  run(): Promise<void> {
    this.log.push(`start ${this.name}`);
    return new Promise<void>((resolve) => {
      this.finishRun = () => {
        this.log.push(`end ${this.name}`);
        resolve();
      };
      if (this.ms !== undefined) setTimeout(this.finishRun, this.ms);
    });
  }
  finish(): void {
    this.finishRun!();
  }
  async abort(): Promise<void> {
    this.log.push(`abort ${this.name}`);
  }
  requeue(): void {
    this.log.push(`requeue ${this.name}`);
  }
}

const t = suite<{ clock: ReturnType<typeof FakeTimers.install> }>('work pool (fake timers)', { clock: undefined as never });
t.before.each((ctx) => {
  ctx.clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
});
t.after.each((ctx) => ctx.clock.uninstall());

t('runs at most its concurrency; the rest wait in FIFO order', async ({ clock }) => {
  const log: string[] = [];
  const pool = new WorkPool(2);
  const jobs = ['a', 'b', 'c', 'd'].map((n) => new Job(n, log, 100));
  for (const j of jobs) assert.ok(pool.submit(j));
  assert.equal(log, ['start a', 'start b']);
  assert.equal(pool.stats(), { inFlight: 2, queued: 2, completed: 0, aborted: 0, requeued: 0 });
  await clock.tickAsync(100);
  assert.equal(log, ['start a', 'start b', 'end a', 'start c', 'end b', 'start d'], 'each freed slot goes to the oldest waiting');
  await clock.tickAsync(100);
  assert.equal(pool.stats(), { inFlight: 0, queued: 0, completed: 4, aborted: 0, requeued: 0 });
});

t('drain: resolves when the running work is done and counts it', async ({ clock }) => {
  const log: string[] = [];
  const pool = new WorkPool(4);
  pool.submit(new Job('a', log, 100));
  pool.submit(new Job('b', log, 300));
  let result: unknown;
  const drained = pool.drain(1000).then((r) => (result = r));
  await clock.tickAsync(299);
  assert.is(result, undefined, 'b still runs');
  await clock.tickAsync(1);
  await drained;
  assert.equal(result, { completed: 2, aborted: 0 });
  assert.equal(await pool.drain(1000), { completed: 0, aborted: 0 }, 'nothing running: at once');
});

t('drain: at the deadline the rest is aborted through each abort(); late ends are not counted', async ({ clock }) => {
  const log: string[] = [];
  const pool = new WorkPool(4);
  const fast = new Job('fast', log, 50);
  const slow1 = new Job('slow1', log);
  const slow2 = new Job('slow2', log);
  for (const j of [fast, slow1, slow2]) pool.submit(j);
  let result: unknown;
  const drained = pool.drain(200).then((r) => (result = r));
  await clock.tickAsync(199);
  assert.is(result, undefined);
  assert.not.ok(log.includes('abort slow1'), 'nothing aborted before the deadline');
  await clock.tickAsync(1);
  await drained;
  assert.equal(result, { completed: 1, aborted: 2 });
  assert.ok(log.includes('abort slow1') && log.includes('abort slow2'));
  assert.is(pool.inFlight, 0, 'aborted work no longer counts as running');
  slow1.finish();
  await clock.tickAsync(0);
  assert.equal(pool.stats(), { inFlight: 0, queued: 0, completed: 1, aborted: 2, requeued: 0 });
});

t('drain(0) aborts what runs now (the abort strategy)', async ({ clock }) => {
  const log: string[] = [];
  const pool = new WorkPool(1);
  pool.submit(new Job('a', log));
  const drained = pool.drain(0);
  await clock.tickAsync(0);
  assert.equal(await drained, { completed: 0, aborted: 1 });
  assert.equal(log, ['start a', 'abort a']);
});

t('a second drain that aborts sooner is counted by the first too', async ({ clock }) => {
  const log: string[] = [];
  const pool = new WorkPool(2);
  pool.submit(new Job('a', log));
  const patient = pool.drain(10_000);
  const hasty = pool.drain(10);
  await clock.tickAsync(10);
  assert.equal(await hasty, { completed: 0, aborted: 1 });
  assert.equal(await patient, { completed: 0, aborted: 1 });
  assert.equal(
    log.filter((l) => l.startsWith('abort')),
    ['abort a'],
    'aborted once',
  );
});

t('close: queued work waits, nothing new starts, late submits are requeued; requeueBacklog gives the queue back', async ({ clock }) => {
  const log: string[] = [];
  const pool = new WorkPool(1);
  const a = new Job('a', log);
  pool.submit(a);
  pool.submit(new Job('b', log));
  pool.submit(new Job('c', log));
  pool.close();
  a.finish();
  await clock.tickAsync(0);
  assert.equal(log, ['start a', 'end a'], 'the backlog does not advance once closed');
  assert.is(pool.queued, 2);
  assert.not.ok(pool.submit(new Job('d', log)));
  assert.equal(log.slice(2), ['requeue d']);
  assert.is(pool.requeueBacklog(), 2);
  assert.equal(log.slice(3), ['requeue b', 'requeue c']);
  assert.equal(pool.stats(), { inFlight: 0, queued: 0, completed: 1, aborted: 0, requeued: 3 });
});

t('work that rejects is over all the same; aborting frees a slot for the backlog while open', async ({ clock }) => {
  const log: string[] = [];
  const pool = new WorkPool(1);
  pool.submit({
    run: async () => {
      throw new Error('boom');
    },
    abort: async () => {},
    requeue: () => {},
  });
  pool.submit(new Job('next', log));
  await clock.tickAsync(0);
  assert.equal(log, ['start next']);
  assert.is(pool.stats().completed, 1);
  pool.submit(new Job('queued', log));
  const drained = pool.drain(5);
  await clock.tickAsync(5);
  assert.equal(await drained, { completed: 0, aborted: 1 });
  assert.equal(log, ['start next', 'abort next', 'start queued'], 'an open pool moves on after an abort');
});

t('concurrency must be a positive integer (or Infinity)', () => {
  for (const bad of [0, -1, 1.5, NaN]) {
    assert.throws(
      () => new WorkPool(bad),
      (e: { code: string }) => e.code === 'HERMOD_ERR_INVALID_ARGUMENT',
    );
  }
  const unbounded = new WorkPool(Infinity);
  const log: string[] = [];
  for (let i = 0; i < 100; i++) unbounded.submit(new Job(String(i), log));
  assert.is(unbounded.inFlight, 100);
});

t.run();
