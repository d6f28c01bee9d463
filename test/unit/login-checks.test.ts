import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LoginChecks } from '../../src/router/login-checks.js';

/** A check that ends when its `end` is called, with `ok`. */
function gated(ok = false) {
  let end!: () => void;
  const done = new Promise<void>((r) => {
    end = r;
  });
  let started = false;
  return {
    check: async () => {
      started = true;
      await done;
      return ok;
    },
    end: () => end(),
    get started() {
      return started;
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));

test('LoginChecks: two run at once, the rest wait their turn; a waiter whose peer left is never checked', async () => {
  const lc = new LoginChecks(2, 10, 8);
  const a = gated();
  const b = gated(true);
  const c = gated();
  const d = gated(true);
  let cGone = false;
  const ra = lc.run('10.0.0.1', () => false, a.check);
  const rb = lc.run('10.0.0.2', () => false, b.check);
  const rc = lc.run('10.0.0.3', () => cGone, c.check);
  const rd = lc.run('10.0.0.4', () => false, d.check);
  await tick();
  assert.ok(a.started && b.started);
  assert.not.ok(c.started || d.started, 'two at once');
  assert.is(lc.held, 4);
  cGone = true;
  a.end();
  assert.is(await ra, false);
  assert.is(await rc, 'gone');
  await tick();
  assert.not.ok(c.started, 'the check of a peer that left is not made');
  assert.ok(d.started, 'the slot went on to the next one still there');
  b.end();
  d.end();
  assert.is(await rb, true);
  assert.is(await rd, true);
  assert.is(lc.held, 0);
  assert.is(await lc.run('10.0.0.5', () => true, gated().check), 'gone', 'gone before it starts');
});

test('LoginChecks: busy past the waiting room and past one address share; waiters that left make room', async () => {
  const lc = new LoginChecks(1, 2, 2);
  const first = gated();
  const running = lc.run('10.0.0.1', () => false, first.check);
  let gone = false;
  const w1 = lc.run('10.0.0.2', () => gone, gated().check);
  const w2 = lc.run('10.0.0.3', () => gone, gated().check);
  assert.is(await lc.run('10.0.0.4', () => false, gated().check), 'busy', 'the waiting room is full');
  // One address may hold two: running and one more waiting (or refused as busy).
  assert.is(await lc.run('10.0.0.1', () => false, gated().check), 'busy', 'the room is full for this one too');
  gone = true;
  const late = gated(true);
  const r = lc.run('10.0.0.4', () => false, late.check);
  assert.is(await w1, 'gone');
  assert.is(await w2, 'gone');
  first.end();
  assert.is(await running, false);
  await tick();
  assert.ok(late.started);
  late.end();
  assert.is(await r, true);
  // Per address: two held from one address, the third refused while the room has space.
  const lc2 = new LoginChecks(1, 10, 2);
  const x = gated();
  const rx = lc2.run('10.0.0.9', () => false, x.check);
  const y = gated();
  const ry = lc2.run('10.0.0.9', () => false, y.check);
  assert.is(await lc2.run('10.0.0.9', () => false, gated().check), 'busy', "the address's share");
  assert.is(lc2.held, 2);
  x.end();
  await rx;
  await tick();
  y.end();
  await ry;
  assert.is(lc2.held, 0);
});

test('LoginChecks: waiters of the same address that left, dropped for a newcomer, are not counted again', async () => {
  const lc = new LoginChecks(1, 1, 4);
  const a = gated();
  const ra = lc.run('10.0.0.1', () => false, a.check);
  let gone = false;
  const w = lc.run('10.0.0.1', () => gone, gated().check);
  assert.is(lc.heldFrom('10.0.0.1'), 2);
  gone = true;
  // The room is full: dropping the waiter that left makes room for this one, of the same address.
  const n = gated(true);
  const rn = lc.run('10.0.0.1', () => false, n.check);
  assert.is(await w, 'gone');
  assert.is(lc.heldFrom('10.0.0.1'), 2, 'the running check and the newcomer');
  a.end();
  await ra;
  await tick();
  n.end();
  assert.is(await rn, true);
  // Was 1 for good: each such round left one more, until the address got one login at a time.
  assert.is(lc.heldFrom('10.0.0.1'), 0);
  assert.is(lc.held, 0);
});

test.run();
