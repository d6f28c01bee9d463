import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { ConsumeMessage } from 'amqplib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DedupRing } from '../../src/driver/rabbit/dedup.js';
import { type IncomingHost, RabbitIncoming } from '../../src/driver/rabbit/incoming.js';
import type { TickAcks } from '../../src/driver/rabbit/tick-acks.js';
import type { IncomingDict, ReplyAddress } from '../../src/driver/rabbit/wire.js';

// A real collection, to show what a settled request still keeps alive.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const t = suite('rabbit incoming message (settling, what it keeps)');

interface Recorded {
  acked: ConsumeMessage[];
  requeued: ConsumeMessage[];
  replies: Array<{ to: ReplyAddress; ending: boolean }>;
  dedup: DedupRing;
}

function fixture(uniqueId = 'u-1'): { host: IncomingHost; rec: Recorded; make: (msg: ConsumeMessage) => RabbitIncoming } {
  const rec: Recorded = { acked: [], requeued: [], replies: [], dedup: new DedupRing() };
  const acks = {
    ack: (m: ConsumeMessage) => rec.acked.push(m),
    requeue: (m: ConsumeMessage) => rec.requeued.push(m),
  } as unknown as TickAcks;
  const host: IncomingHost = {
    dead: false,
    acks,
    dedup: rec.dedup,
    reply: async (to, r) => {
      rec.replies.push({ to, ending: r.ending });
    },
    duplicate: () => {},
  };
  const to: ReplyAddress = { replyQueue: 'reply_q', msgId: 'm-1' };
  const parts: IncomingDict = { ctx: { user: 'u' }, message: { method: 'echo', args: {} }, uniqueId, replyTo: to, callMonitorTimeout: 0 };
  return { host, rec, make: (msg) => new RabbitIncoming(host, msg, parts, to) };
}

const delivery = (tag: number): ConsumeMessage =>
  ({ content: Buffer.from('{}'), fields: { deliveryTag: tag }, properties: {} }) as unknown as ConsumeMessage;

t('acknowledge acks once and records the id; a later requeue or second acknowledge does nothing', () => {
  const { rec, make } = fixture();
  const msg = delivery(1);
  const incoming = make(msg);
  incoming.acknowledge();
  incoming.acknowledge();
  incoming.requeue();
  assert.equal(rec.acked, [msg]);
  assert.equal(rec.requeued, []);
  assert.ok(rec.dedup.seen('u-1'));
});

t('requeue gives the delivery back once and records no id (it is no duplicate when it returns)', () => {
  const { rec, make } = fixture();
  const msg = delivery(2);
  const incoming = make(msg);
  incoming.requeue();
  incoming.acknowledge();
  incoming.requeue();
  assert.equal(rec.requeued, [msg]);
  assert.equal(rec.acked, []);
  assert.not.ok(rec.dedup.seen('u-1'));
});

t('a settled request no longer keeps its delivery alive, while its context and message stay readable', async () => {
  const { rec, make } = fixture();
  let msg: ConsumeMessage | undefined = delivery(3);
  const ref = new WeakRef(msg.content);
  const incoming = make(msg);
  msg = undefined;
  incoming.acknowledge();
  // The acks recorder holds the delivery as TickAcks would until its flush; a flushed one goes.
  rec.acked.length = 0;
  // WeakRef targets live until the end of the job that read them.
  await new Promise((r) => setImmediate(r));
  gc();
  assert.is(ref.deref(), undefined, 'the delivery (content, properties, fields) is collectable once acknowledged');
  assert.equal(incoming.ctx, { user: 'u' });
  assert.equal(incoming.message, { method: 'echo', args: {} });
  await incoming.reply({ result: 1 });
  assert.equal(rec.replies, [{ to: { replyQueue: 'reply_q', msgId: 'm-1' }, ending: true }]);
});

t('before it is settled, the delivery is kept (it must still be acked or requeued)', async () => {
  const { make } = fixture();
  let msg: ConsumeMessage | undefined = delivery(4);
  const ref = new WeakRef(msg.content);
  const incoming = make(msg);
  msg = undefined;
  await new Promise((r) => setImmediate(r));
  gc();
  assert.ok(ref.deref(), 'still held');
  incoming.requeue();
});

t.run();
