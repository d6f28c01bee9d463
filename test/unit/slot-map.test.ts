import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { SlotList, SlotMap } from '../../src/core/slot-map.js';
import { Abandon } from '../../src/driver/amqp1/sender.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const t = suite('SlotMap (entries that die with their delete)');

t('set, get, has, take and delete behave as a Map', () => {
  const m = new SlotMap<string, { v: number }>();
  assert.is(m.size, 0);
  m.set('a', { v: 1 }).set('b', { v: 2 });
  assert.is(m.size, 2);
  assert.equal(m.get('a'), { v: 1 });
  assert.ok(m.has('b'));
  assert.not.ok(m.has('c'));
  assert.is(m.get('c'), undefined);
  m.set('a', { v: 3 });
  assert.is(m.size, 2, 'setting a key again replaces its value');
  assert.equal(m.take('a'), { v: 3 });
  assert.is(m.take('a'), undefined);
  assert.not.ok(m.delete('a'));
  assert.ok(m.delete('b'));
  assert.is(m.size, 0);
});

t('freed slots are reused, and keys()/entries() are copies that survive deletes while walking', () => {
  const m = new SlotMap<number, string>();
  for (let i = 0; i < 100; i++) m.set(i, `v${i}`);
  for (let i = 0; i < 100; i += 2) m.delete(i);
  for (let i = 100; i < 150; i++) m.set(i, `v${i}`);
  assert.is(m.size, 100);
  const seen = new Map<number, string>();
  for (const [k, v] of m.entries()) {
    seen.set(k, v);
    m.delete(k);
  }
  assert.is(seen.size, 100);
  for (let i = 1; i < 100; i += 2) assert.is(seen.get(i), `v${i}`);
  for (let i = 100; i < 150; i++) assert.is(seen.get(i), `v${i}`);
  assert.is(m.size, 0);
  m.set(7, 'x');
  assert.equal(m.keys(), [7]);
});

t('a taken value is no longer held by the map (its slot is cleared)', async () => {
  const m = new SlotMap<string, object>();
  // Enough churn for a Map to have rehashed many times.
  for (let i = 0; i < 10_000; i++) {
    m.set(`k${i}`, { i });
    if (i >= 64) m.delete(`k${i - 64}`);
  }
  let value: object | undefined = { big: new Array(1000).fill(1) };
  const ref = new WeakRef(value);
  m.set('watched', value);
  value = undefined;
  m.take('watched');
  await new Promise((r) => setImmediate(r));
  gc();
  assert.is(ref.deref(), undefined);
});

t('SlotList: add returns a slot, remove clears it once, values() is a copy of what is held', () => {
  const l = new SlotList<string>();
  const a = l.add('a');
  const b = l.add('b');
  assert.is(l.size, 2);
  l.remove(a);
  l.remove(a);
  assert.is(l.size, 1);
  assert.equal(l.values(), ['b']);
  const c = l.add('c');
  assert.is(c, a, 'a freed slot is reused');
  for (const v of l.values()) if (v === 'b') l.remove(b);
  assert.equal(l.values(), ['c']);
  l.clear();
  assert.is(l.size, 0);
  assert.equal(l.values(), []);
});

t('Abandon calls its listener once, on the first abort only', () => {
  const a = new Abandon();
  let calls = 0;
  a.onAbort = () => calls++;
  a.abort();
  a.abort();
  assert.is(calls, 1);
  assert.ok(a.aborted);
  assert.is(a.onAbort, undefined);
});

t.run();
