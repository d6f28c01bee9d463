import type { Channel, Message } from 'amqplib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { QUIET_ACK_DELAY_MS, TickAcks } from '../../src/driver/rabbit/tick-acks.js';

const t = suite('rabbit acknowledgements per tick (TickAcks)');

function fixture(prefetch?: number, quietDelayMs?: number) {
  const sent: string[] = [];
  const ch = {
    ack: (m: Message, multiple: boolean) => sent.push(`ack ${m.fields.deliveryTag}${multiple ? ' multiple' : ''}`),
    nack: (m: Message, _all: boolean, requeue: boolean) => sent.push(`nack ${m.fields.deliveryTag}${requeue ? ' requeue' : ''}`),
  } as unknown as Channel;
  const msg = (tag: number) => ({ fields: { deliveryTag: tag } }) as Message;
  return { acks: new TickAcks(ch, prefetch, quietDelayMs), sent, msg };
}

const tick = () => new Promise((r) => setImmediate(r));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t('acks of one tick leave as one multiple ack up to the first delivery still open, the rest one by one', async () => {
  const { acks, sent, msg } = fixture();
  for (const tag of [1, 2, 3, 4, 5, 6]) acks.delivered(msg(tag));
  for (const tag of [2, 1, 3, 5]) acks.ack(msg(tag));
  assert.equal(sent, [], 'nothing before the end of the tick');
  await tick();
  assert.equal(sent, ['ack 3 multiple', 'ack 5']);
  // 4 and 6 stay open; once 4 is acked, the run from the oldest open one reaches 4 only.
  acks.ack(msg(4));
  await tick();
  assert.equal(sent.slice(2), ['ack 4 multiple']);
  acks.ack(msg(6));
  acks.flush();
  assert.equal(sent.slice(3), ['ack 6 multiple']);
});

t('an ack twice counts once; a requeue goes at once and takes the delivery out of the run', async () => {
  const { acks, sent, msg } = fixture();
  for (const tag of [1, 2, 3]) acks.delivered(msg(tag));
  acks.requeue(msg(1));
  assert.equal(sent, ['nack 1 requeue']);
  acks.ack(msg(2));
  acks.ack(msg(2));
  acks.ack(msg(3));
  await tick();
  assert.equal(sent.slice(1), ['ack 3 multiple']);
  acks.flush();
  await tick();
  assert.is(sent.length, 2, 'nothing more to send');
});

t('an ack of a tag never recorded as delivered is sent on its own, and leaves the others alone', async () => {
  const { acks, sent, msg } = fixture();
  for (const tag of [1, 2]) acks.delivered(msg(tag));
  acks.ack(msg(9));
  acks.ack(msg(1));
  await tick();
  assert.equal(sent, ['ack 1 multiple', 'ack 9']);
  acks.ack(msg(2));
  await tick();
  assert.equal(sent.slice(2), ['ack 2 multiple']);
});

t('a channel that throws on ack does not throw out of flush', () => {
  const acks = new TickAcks({
    ack: () => {
      throw new Error('Channel closed');
    },
  } as unknown as Channel);
  acks.delivered({ fields: { deliveryTag: 1 } } as Message);
  acks.ack({ fields: { deliveryTag: 1 } } as Message);
  acks.flush();
});

t('a quiet channel (under half the prefetch unacknowledged) acks after a short delay, many calls in one frame', async () => {
  // A delay far longer than the real one: the steps below must all fall inside it, and on a
  // loaded CI machine a few turns of the event loop took longer than the real 10 ms.
  const delay = Math.max(QUIET_ACK_DELAY_MS, 300);
  const { acks, sent, msg } = fixture(8, delay);
  acks.delivered(msg(1));
  acks.ack(msg(1));
  await tick();
  assert.equal(sent, [], 'not at the end of the tick: the broker still has credit');
  acks.delivered(msg(2));
  acks.ack(msg(2));
  acks.delivered(msg(3));
  await tick();
  acks.ack(msg(3));
  await sleep(delay + 50);
  assert.equal(sent, ['ack 3 multiple'], 'one frame for the three, within the delay');
  // The timer is re-armed for the next quiet batch.
  acks.delivered(msg(4));
  acks.ack(msg(4));
  await sleep(delay + 50);
  assert.equal(sent.slice(1), ['ack 4 multiple']);
});

t('from half the prefetch unacknowledged on, acks leave at the end of the tick', async () => {
  const { acks, sent, msg } = fixture(8);
  for (const tag of [1, 2, 3]) acks.delivered(msg(tag));
  acks.ack(msg(1));
  await tick();
  assert.equal(sent, [], 'three open of eight: waits');
  acks.delivered(msg(4));
  acks.ack(msg(2));
  await tick();
  assert.equal(sent, ['ack 2 multiple'], 'four open of eight: this tick, with the one that waited');
  // The quiet timer armed before fires into nothing.
  await sleep(QUIET_ACK_DELAY_MS + 15);
  assert.equal(sent, ['ack 2 multiple']);
});

t('flush sends waiting acks at once (a consumer that stops loses none of them)', () => {
  const { acks, sent, msg } = fixture(64);
  acks.delivered(msg(1));
  acks.ack(msg(1));
  acks.flush();
  assert.equal(sent, ['ack 1 multiple']);
});

t.run();
