import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { backoffDelay } from '../../src/core/backoff.js';

const t = suite('reconnect backoff');
const o = { initial: 100, factor: 2, max: 5000 };
const mid = () => 0.5; // jitter factor exactly 1

t('grows by the factor per failed attempt from the initial delay', () => {
  assert.equal(
    [1, 2, 3, 4, 5, 6].map((f) => backoffDelay(f, o, mid)),
    [100, 200, 400, 800, 1600, 3200],
  );
  assert.is(backoffDelay(0, o, mid), 100, 'no failure yet counts as the first');
  assert.is(backoffDelay(-3, o, mid), 100);
  assert.equal(
    [1, 2, 3].map((f) => backoffDelay(f, { initial: 50, factor: 1.5, max: 1000 }, mid)),
    [50, 75, 113],
  );
});

t('capped at max, also after jitter and for huge attempt counts', () => {
  assert.is(backoffDelay(7, o, mid), 5000);
  assert.is(backoffDelay(50, o, mid), 5000);
  assert.is(backoffDelay(10_000, o, mid), 5000, 'Infinity growth still ends at the cap');
  assert.is(
    backoffDelay(50, o, () => 0.999999),
    5000,
    'upward jitter never passes the cap',
  );
  assert.is(
    backoffDelay(50, o, () => 0),
    3750,
    'downward jitter applies below the cap',
  );
  assert.is(
    backoffDelay(6, o, () => 0.999999),
    4000,
    '3200 * 1.25, under the cap',
  );
});

t('jitter stays within ±25% of the base delay', () => {
  assert.is(
    backoffDelay(3, o, () => 0),
    300,
  );
  assert.is(
    backoffDelay(3, o, () => 0.25),
    350,
  );
  assert.is(
    backoffDelay(3, o, () => 0.75),
    450,
  );
  assert.is(
    backoffDelay(3, o, () => 0.9999999),
    500,
  );
  for (let i = 0; i < 1000; i++) {
    const d = backoffDelay(3, o);
    assert.ok(d >= 300 && d <= 500, `${d} within 400 ± 25%`);
    assert.ok(Number.isInteger(d));
  }
});

t.run();
