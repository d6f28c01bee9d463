import { createRequire } from 'node:module';
import rhea from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { installFastFrames, rheaCodec } from '../../src/rhea/index.js';

// The transfer/disposition codec (src/rhea/fast-frames.ts) against rhea's own: whatever one
// writes, the other reads into the same fields, and what the fast reader does not take goes to
// rhea's reader unchanged.
const require = createRequire(import.meta.url);
interface Frame {
  channel: number;
  size?: number;
  performative?: Record<string, unknown> & { constructor: { name: string } };
  payload?: Buffer;
}
const frames = require('rhea/lib/frames.js') as {
  transfer(f: Record<string, unknown>): object;
  disposition(f: Record<string, unknown>): object;
  amqp_frame(channel: number, performative: object, payload?: Buffer): object;
  read_frame(b: Buffer): Frame;
  write_frame(f: object): Buffer;
};
installFastFrames();
const fast = frames;
/** rhea's outcome builders (untyped in its typings). */
const msg = (
  rhea as unknown as { message: Record<string, (a?: unknown) => { described(): unknown }> & { unwrap_outcome(s: unknown): unknown } }
).message;
const slow = rheaCodec as unknown as typeof frames;
const outcome = (state: unknown) =>
  state === undefined || state === null || (state as { value?: unknown }).value === null
    ? JSON.stringify(state)
    : JSON.stringify(msg.unwrap_outcome(state));
const TRANSFER = [
  'handle',
  'delivery_id',
  'delivery_tag',
  'message_format',
  'settled',
  'more',
  'rcv_settle_mode',
  'resume',
  'aborted',
  'batchable',
];
const DISPOSITION = ['role', 'first', 'last', 'settled', 'batchable'];
const view = (f: Frame, names: string[]) => ({
  channel: f.channel,
  fields: names.map((n) => {
    const v = f.performative![n];
    return Buffer.isBuffer(v) ? `tag:${v.toString('hex')}` : v;
  }),
  state: outcome(f.performative!.state),
  payload: f.payload?.toString('hex'),
});

/** A field or state left out and one sent as null mean the same on the wire (rhea reads them differently). */
const loose = (v: ReturnType<typeof view>) => ({
  ...v,
  fields: v.fields.map((f) => f ?? 'none'),
  state: v.state === undefined || v.state === 'null' || v.state.includes('"Null"') ? 'none' : v.state,
});

/**
 * Writes `fields` with each codec; each frame reads the same with both readers, field for
 * field, and the two frames mean the same (the fast writer leaves out trailing nulls).
 */
function roundTrip(kind: 'transfer' | 'disposition', fields: Record<string, unknown>, payload?: Buffer) {
  const names = kind === 'transfer' ? TRANSFER : DISPOSITION;
  const a = fast.write_frame(fast.amqp_frame(3, fast[kind](fields), payload));
  const b = slow.write_frame(fast.amqp_frame(3, slow[kind](fields), payload));
  const views = [fast.read_frame(a), slow.read_frame(a), fast.read_frame(b), slow.read_frame(b)].map((f) => view(f, names));
  assert.equal(views[0], views[1]);
  assert.equal(views[2], views[3]);
  assert.equal(loose(views[0]!), loose(views[2]!));
  return { fastBytes: a, views, decoded: fast.read_frame(b) };
}

const t = suite('amqp1 - transfer and disposition codec');

t('transfers: ids, tags, flags and payloads read the same through both codecs, and the fast reader makes its own performative', () => {
  for (const id of [0, 1, 255, 256, 70_000, 0xffffffff]) {
    for (const tag of [Buffer.alloc(0), Buffer.from([7]), Buffer.alloc(32, 0xab)]) {
      for (const [settled, more] of [
        [false, false],
        [true, false],
        [false, true],
      ]) {
        const { views, decoded } = roundTrip(
          'transfer',
          { handle: id % 1000, delivery_id: id, delivery_tag: tag, message_format: 0, settled, more },
          Buffer.alloc(id % 3000, 1),
        );
        assert.is(views[0]!.fields[0], id % 1000);
        assert.is(views[0]!.fields[1], id);
        assert.is(decoded.performative!.constructor.name, 'Transfer');
      }
    }
  }
  // A continuation frame: only a handle and `more`.
  const { views } = roundTrip('transfer', { handle: 2, more: true }, Buffer.from('abc'));
  assert.is(views[0]!.fields[0], 2);
  assert.is(views[0]!.fields[5], true);
});

t('dispositions: accepted and released written directly, rejected and modified by rhea, all read the same', () => {
  const states = [
    msg.accepted!().described(),
    msg.released!().described(),
    msg.rejected!({ error: { condition: 'amqp:link:message-size-exceeded', description: 'too big' } }).described(),
    msg.modified!({ delivery_failed: true, undeliverable_here: false }).described(),
    undefined,
  ];
  for (const state of states) {
    for (const [first, last] of [
      [0, 0],
      [255, 300],
      [70_000, 70_001],
    ]) {
      const { views } = roundTrip('disposition', { role: true, first, last, state, settled: true });
      assert.is(views[0]!.state, outcome(state));
    }
  }
  // rejected/modified carry fields: rhea writes those, byte for byte as before.
  const rejected = { role: false, first: 5, last: 5, state: states[2], settled: true };
  assert.equal(
    fast.write_frame(fast.amqp_frame(0, fast.disposition(rejected))),
    slow.write_frame(fast.amqp_frame(0, slow.disposition(rejected))),
  );
});

t('what the fast reader does not take (a delivery state on a transfer, a long tag, other frames) goes to rhea', () => {
  // (rhea cannot write one: its transfer has no writer for a delivery state; hermod's can.)
  const withState = { handle: 1, delivery_id: 9, delivery_tag: Buffer.from([1]), settled: false, state: msg.accepted!().described() };
  const a = fast.write_frame(fast.amqp_frame(1, fast.transfer(withState), Buffer.from('x')));
  assert.is(fast.read_frame(a).performative!.constructor.name, 'c', 'rhea composite');
  assert.equal(view(fast.read_frame(a), TRANSFER), view(slow.read_frame(a), TRANSFER));
  const long = { handle: 1, delivery_id: 9, delivery_tag: Buffer.alloc(300, 1), settled: false };
  const b = fast.write_frame(fast.amqp_frame(1, fast.transfer(long), Buffer.from('x')));
  assert.equal(view(fast.read_frame(b), TRANSFER), view(slow.read_frame(b), TRANSFER));
  const flow = slow.write_frame(
    fast.amqp_frame(0, (frames as unknown as { flow(f: object): object }).flow({ next_incoming_id: 1, incoming_window: 5 })),
  );
  assert.is(fast.read_frame(flow).performative!.constructor.name, 'c');
  // A list whose declared size disagrees with its fields: rhea's reader decides, as before.
  const bad = Buffer.from(fast.write_frame(fast.amqp_frame(1, fast.transfer({ handle: 1, delivery_id: 2 }))));
  bad[12] = bad[12]! + 1;
  let fastErr: unknown;
  let slowErr: unknown;
  let fastOut: unknown;
  let slowOut: unknown;
  try {
    fastOut = view(fast.read_frame(bad), TRANSFER);
  } catch (e) {
    fastErr = (e as Error).message;
  }
  try {
    slowOut = view(slow.read_frame(bad), TRANSFER);
  } catch (e) {
    slowErr = (e as Error).message;
  }
  assert.equal([fastOut, fastErr], [slowOut, slowErr]);
});

t.run();
