import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEDUP_WINDOW, DedupRing } from '../../src/driver/rabbit/dedup.js';

const t = suite('rabbit duplicate check (_unique_id ring)');

t('an id is a duplicate only once recorded; checking does not record (ids are added on ack)', () => {
  const ring = new DedupRing();
  assert.not.ok(ring.seen('u1'));
  // A message that is requeued before its ack comes back: still not a duplicate.
  assert.not.ok(ring.seen('u1'));
  ring.add('u1');
  assert.ok(ring.seen('u1'));
  assert.not.ok(ring.seen('u2'));
});

t('ids that are not strings are never recorded nor seen', () => {
  const ring = new DedupRing(4);
  for (const id of [undefined, null, 5, { id: 'u' }, ['u']]) {
    ring.add(id);
    assert.not.ok(ring.seen(id));
  }
  ring.add('5');
  assert.not.ok(ring.seen(5), 'no coercion: 5 is not "5"');
  assert.ok(ring.seen('5'));
});

t('the window keeps the last N ids, oldest out first; re-adding does not refresh', () => {
  const ring = new DedupRing(3);
  for (const id of ['a', 'b', 'c']) ring.add(id);
  assert.ok(['a', 'b', 'c'].every((id) => ring.seen(id)));
  ring.add('a'); // already there: a no-op, not a move to the back
  ring.add('d');
  assert.not.ok(ring.seen('a'), 'a evicted by d');
  assert.ok(['b', 'c', 'd'].every((id) => ring.seen(id)));
  ring.add('e');
  assert.not.ok(ring.seen('b'));
  assert.ok(['c', 'd', 'e'].every((id) => ring.seen(id)));
  // An evicted id can be recorded again.
  ring.add('a');
  assert.ok(ring.seen('a'));
  assert.not.ok(ring.seen('c'));
});

t(`the default window is ${DEDUP_WINDOW} ids`, () => {
  assert.is(DEDUP_WINDOW, 4096);
  const ring = new DedupRing();
  for (let i = 0; i <= DEDUP_WINDOW; i++) ring.add(`id-${i}`);
  assert.not.ok(ring.seen('id-0'));
  assert.ok(ring.seen('id-1'));
  assert.ok(ring.seen(`id-${DEDUP_WINDOW}`));
});

t.run();
