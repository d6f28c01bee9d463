import type { Channel, Message } from 'amqplib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TickAcks } from '../../src/driver/rabbit/tick-acks.js';

const t = suite('rabbit acknowledgements per tick (TickAcks)');

function fixture() {
  const sent: string[] = [];
  const ch = {
    ack: (m: Message, multiple: boolean) => sent.push(`ack ${m.fields.deliveryTag}${multiple ? ' multiple' : ''}`),
    nack: (m: Message, _all: boolean, requeue: boolean) => sent.push(`nack ${m.fields.deliveryTag}${requeue ? ' requeue' : ''}`),
  } as unknown as Channel;
  const msg = (tag: number) => ({ fields: { deliveryTag: tag } }) as Message;
  return { acks: new TickAcks(ch), sent, msg };
}

const tick = () => new Promise((r) => setImmediate(r));

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

t.run();
