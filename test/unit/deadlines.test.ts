import FakeTimers from '@sinonjs/fake-timers';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Deadlines } from '../../src/core/deadlines.js';

// The one timer behind the deadlines of publishes waiting for their confirm (fake clock).

interface Ctx {
  clock: ReturnType<typeof FakeTimers.install>;
}
const t = suite<Ctx>('shared deadlines', {} as Ctx);
t.before.each((ctx) => {
  ctx.clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
});
t.after.each((ctx) => ctx.clock.uninstall());

t('each entry expires at its own deadline, whatever order they were added in', (ctx) => {
  const d = new Deadlines();
  const fired: string[] = [];
  const now = Date.now();
  d.add({ deadline: now + 3000, expire: () => fired.push(`c@${Date.now() - now}`) });
  d.add({ deadline: now + 1000, expire: () => fired.push(`a@${Date.now() - now}`) });
  d.add({ deadline: now + 2000, expire: () => fired.push(`b@${Date.now() - now}`) });
  ctx.clock.tick(999);
  assert.equal(fired, []);
  ctx.clock.tick(3000);
  assert.equal(fired, ['a@1000', 'b@2000', 'c@3000']);
  assert.is(d.size, 0);
  assert.is(ctx.clock.countTimers(), 0, 'no timer left once nothing waits');
});

t('a removed entry never expires and is not kept; one timer serves many entries', (ctx) => {
  const d = new Deadlines();
  const fired: number[] = [];
  const now = Date.now();
  const entries = Array.from({ length: 1000 }, (_, i) => {
    const e = { deadline: now + 5000 + i, expire: () => fired.push(i) };
    return { e, slot: d.add(e) };
  });
  assert.is(ctx.clock.countTimers(), 1);
  for (const { e, slot } of entries.slice(0, 999)) d.remove(slot, e);
  assert.is(d.size, 1);
  ctx.clock.tick(10_000);
  assert.equal(fired, [999]);
  assert.is(d.size, 0);
});

t('a slot freed by an entry that expired is taken again: removing the expired entry later leaves the new one alone', (ctx) => {
  const d = new Deadlines();
  const fired: string[] = [];
  const now = Date.now();
  const old = { deadline: now + 100, expire: () => fired.push('old') };
  const slot = d.add(old);
  ctx.clock.tick(100);
  const next = { deadline: now + 1000, expire: () => fired.push('next') };
  assert.is(d.add(next), slot, 'the slot is reused');
  // The publish that expired settles late (its confirm came after all): it must not free the slot.
  d.remove(slot, old);
  assert.is(d.size, 1);
  ctx.clock.tick(1000);
  assert.equal(fired, ['old', 'next']);
});

t('an entry earlier than the armed one re-arms the timer for it', (ctx) => {
  const d = new Deadlines();
  const fired: string[] = [];
  const now = Date.now();
  d.add({ deadline: now + 60_000, expire: () => fired.push('late') });
  d.add({ deadline: now + 100, expire: () => fired.push('early') });
  ctx.clock.tick(100);
  assert.equal(fired, ['early']);
  assert.is(ctx.clock.countTimers(), 1, 'armed again for the one left');
});

t.run();
