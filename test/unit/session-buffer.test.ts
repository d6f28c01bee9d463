import { createRequire } from 'node:module';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { installRheaFixes } from '../../src/rhea/index.js';

// The session delivery buffer of src/rhea/session-buffer.ts, driven as rhea's sessions drive it:
// push in id order, pop_if with "settled" after each pass, by_id for dispositions.

const require = createRequire(import.meta.url);
interface Buffer {
  available(): number;
  push(o: { id: number; settled: boolean }): void;
  pop_if(f: (d: { settled: boolean }) => boolean): number;
  by_id(id: number): { id: number; settled: boolean } | undefined;
}
function buffer(): Buffer {
  installRheaFixes();
  const Session = require('rhea/lib/session.js') as new (
    connection: object,
    channel: number,
    size?: number,
  ) => { outgoing: { deliveries: Buffer } };
  return new Session({}, 0, 64).outgoing.deliveries;
}
const settled = (d: { settled: boolean }) => d.settled;

const t = suite('rhea session buffer: freed around an unsettled delivery');

t('a pinned front no longer holds the slots behind it: 10 000 deliveries pass a 64-slot buffer', () => {
  const b = buffer();
  const pinned = { id: 0, settled: false };
  b.push(pinned);
  for (let id = 1; id <= 10_000; id++) {
    assert.ok(b.available() > 0, `room for delivery ${id}`);
    const d = { id, settled: false };
    b.push(d);
    assert.is(b.by_id(id), d);
    d.settled = true;
    b.pop_if(settled);
  }
  assert.is(b.by_id(0), pinned, 'the pinned one is still found by its id');
  assert.is(b.available(), 63, 'only the pinned one is held');
  pinned.settled = true;
  b.pop_if(settled);
  assert.is(b.available(), 64);
  assert.is(b.by_id(0), undefined);
});

t('unsettled deliveries keep their slots, in the ring or moved aside; ids in between stay addressable', () => {
  const b = buffer();
  const all: Array<{ id: number; settled: boolean }> = [];
  for (let id = 0; id < 64; id++) {
    const d = { id, settled: false };
    all.push(d);
    b.push(d);
  }
  assert.is(b.available(), 0);
  // Every other one settles: half the slots come back, the rest stay findable.
  for (const d of all) if (d.id % 2 === 1) d.settled = true;
  for (let i = 0; i < 3; i++) b.pop_if(settled);
  assert.is(b.available(), 32);
  for (let id = 64; id < 96; id++) {
    const d = { id, settled: false };
    all.push(d);
    b.push(d);
  }
  assert.is(b.available(), 0);
  for (const d of all) assert.is(b.by_id(d.id), d.id % 2 === 1 && d.id < 64 ? undefined : d, `by_id(${d.id})`);
  for (const d of all) d.settled = true;
  b.pop_if(settled);
  b.pop_if(settled);
  assert.is(b.available(), 64);
});

t('short of room, settled deliveries behind pinned ones are freed at the next pass: no stall at available 0', () => {
  installRheaFixes();
  const Session = require('rhea/lib/session.js') as new (connection: object, channel: number) => { outgoing: { deliveries: Buffer } };
  // rhea's default size, 2048.
  const b = new Session({}, 0).outgoing.deliveries;
  const all: Array<{ id: number; settled: boolean; pinned: boolean }> = [];
  let id = 0;
  // 700 pinned (calls waiting in a router for a busy server), then traffic settled 1 050 sends later.
  while (b.available() > 0) {
    const d = { id: id++, settled: false, pinned: id <= 700 || id % 1000 === 0 };
    b.push(d);
    all.push(d);
    const old = all[all.length - 1 - 1050];
    if (old && !old.pinned) old.settled = true;
    b.pop_if(settled);
  }
  for (const d of all) if (!d.pinned) d.settled = true;
  b.pop_if(settled);
  const pinned = all.filter((d) => d.pinned).length;
  // Before: 0, for good: nothing was pushed any more, the ring's span never grew, and no sweep
  // came. Now within one sweep's amortization (256) of exact.
  assert.ok(b.available() >= 2048 - pinned - 256, `available ${b.available()} with ${pinned} pinned`);
  for (const d of all) if (d.pinned) assert.is(b.by_id(d.id), d);
});

t.run();
