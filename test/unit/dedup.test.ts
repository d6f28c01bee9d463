import { randomBytes } from 'node:crypto';
import v8 from 'node:v8';
import vm from 'node:vm';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEDUP_WINDOW, DedupRing, MAX_KEPT_ID } from '../../src/driver/rabbit/dedup.js';

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

const hex = () => randomBytes(16).toString('hex');

t("uuid-hex ids (oslo's and hermod's form) and other ids share one window, oldest out first", () => {
  const ring = new DedupRing(4);
  const [a, b] = [hex(), hex()];
  for (const id of [a, 'x', b, a.toUpperCase()]) ring.add(id);
  assert.ok([a, 'x', b, a.toUpperCase()].every((id) => ring.seen(id)));
  assert.not.ok(ring.seen(b.toUpperCase()), 'upper-case hex is another id, not the lower-case one');
  assert.not.ok(ring.seen(`${a.slice(0, 31)}g`), 'one digit off');
  ring.add('y');
  assert.not.ok(ring.seen(a), 'a evicted by y');
  ring.add(hex());
  assert.not.ok(ring.seen('x'), 'x evicted by a hex id');
  assert.ok(ring.seen(b) && ring.seen('y'));
});

t('agrees with a plain ring and Set over 200,000 random adds and checks, small windows (long probe runs) included', () => {
  for (const window of [1, 3, 8, 64, 4096]) {
    const ring = new DedupRing(window);
    const order: string[] = [];
    const model = new Set<string>();
    // A small pool of ids, so adds of recorded ids, evictions and re-adds all happen often.
    const pool = Array.from({ length: window * 3 + 2 }, (_, i) => (i % 7 === 0 ? `other-${i}` : hex()));
    let state = 12345;
    const rand = (n: number) => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state % n;
    };
    for (let op = 0; op < 40_000; op++) {
      const id = pool[rand(pool.length)]!;
      if (rand(2) === 0) {
        if (!model.has(id)) {
          order.push(id);
          model.add(id);
          if (order.length > window) model.delete(order.shift()!);
        }
        ring.add(id);
      } else if (ring.seen(id) !== model.has(id)) {
        assert.unreachable(`window ${window}, op ${op}: seen(${id}) = ${ring.seen(id)}, expected ${model.has(id)}`);
      }
    }
    for (const id of pool) assert.is(ring.seen(id), model.has(id), `window ${window}: final state of ${id}`);
  }
});

t('long ids of other forms are kept as digests: a window of 2 MiB ids holds kilobytes, and still finds their duplicates', () => {
  // A peer on the broker chose 16 MiB ids and the window of them took a server past its heap.
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const ring = new DedupRing(32);
  const buf = Buffer.alloc(2 * 1024 * 1024, 'a');
  const id = (i: number) => {
    buf.writeUInt32BE(i, 0);
    return buf.toString('latin1');
  };
  gc();
  const before = process.memoryUsage().heapUsed + process.memoryUsage().external;
  for (let i = 0; i < 32; i++) ring.add(id(i));
  // Drops the last id's own string, which the ring may hold for its next check.
  ring.seen('short');
  gc();
  const grown = process.memoryUsage().heapUsed + process.memoryUsage().external - before;
  assert.ok(grown < 8 * 1024 * 1024, `the window of 32 ids of 2 MiB grew the heap by ${Math.round(grown / 1024 / 1024)} MiB`);
  assert.ok(ring.seen(id(5)), 'a long id recorded is a duplicate');
  assert.not.ok(ring.seen(id(40)), 'another long id is not');
  ring.add('x'.repeat(MAX_KEPT_ID));
  assert.ok(ring.seen('x'.repeat(MAX_KEPT_ID)), 'at the bound, kept as itself');
  // Oldest out first, digests or not.
  ring.add(id(100));
  assert.not.ok(ring.seen(id(0)));
  assert.not.ok(ring.seen(id(1)));
  assert.ok(ring.seen(id(2)));
});

t.run();
