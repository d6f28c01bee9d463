import type { Sender } from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MessageUndeliverable, MessagingTimeout, TransportError } from '../../src/core/errors.js';
import type { Amqp1Connection } from '../../src/driver/amqp1/connection.js';
import { REPLY_RESERVE, SendFlow } from '../../src/driver/amqp1/flow.js';
import { Abandon, MessageSender } from '../../src/driver/amqp1/sender.js';

/** A link whose session buffer has `free` slots, as sessionRoom reads it. */
function fakeLinks(state: { free: number }) {
  const link = { session: { outgoing: { deliveries: { available: () => state.free } } } } as unknown as Sender;
  return { isOpen: () => true, requests: () => link, replies: () => link };
}

/** Lets the pump (a setImmediate) and what it wakes run. */
const turn = () => new Promise((r) => setImmediate(r));

const t = suite('SendFlow: sends waiting for room in the session buffer');

t('a woken send that gives its slot back unused wakes the next one', async () => {
  // One slot above the reserve: only one send may go at a time.
  const state = { free: REPLY_RESERVE + 1 };
  const flow = new SendFlow(fakeLinks(state));
  state.free = REPLY_RESERVE;
  const order: string[] = [];
  const a = flow.acquire(Date.now() + 5000, 'a').then(() => order.push('a'));
  const b = flow.acquire(Date.now() + 5000, 'b').then(() => order.push('b'));
  await turn();
  assert.equal(order, [], 'no room: both wait');
  state.free = REPLY_RESERVE + 1;
  flow.settled();
  await a;
  // `a` lost its credit while queued and did not send: the buffer is as it was.
  flow.release();
  // Before: nothing woke `b` (no send, no settlement) until its deadline.
  const bWoke = await Promise.race([b.then(() => true), new Promise((r) => setTimeout(() => r(false), 1000))]);
  assert.ok(bWoke, 'b was woken after a gave its slot back');
  assert.equal(order, ['a', 'b']);
  flow.release();
});

t('an abandoned call leaves the queue at once, reserving nothing, and the send behind it goes first', async () => {
  const state = { free: REPLY_RESERVE };
  const flow = new SendFlow(fakeLinks(state));
  const calls = Array.from({ length: 3 }, () => new Abandon());
  const callWaits = calls.map((ab, i) => flow.acquire(Date.now() + 5000, `call ${i}`, ab));
  const cast = flow.acquire(Date.now() + 5000, 'cast');
  for (const ab of calls) ab.abort();
  // Before: the abandoned calls kept their places (and their timers) until their deadlines.
  assert.equal(await Promise.all(callWaits), [false, false, false], 'resolved false: nothing reserved');
  assert.is((flow as unknown as { waiters: unknown[] }).waiters.length, 1, 'only the cast still waits');
  state.free = REPLY_RESERVE + 1;
  flow.settled();
  assert.is(await cast, true);
  assert.is((flow as unknown as { reserved: number }).reserved, 1, 'the cast holds the one slot');
  flow.release();
});

t('a send queued for room still fails at its deadline, saying how many wait', async () => {
  const flow = new SendFlow(fakeLinks({ free: 0 }));
  const err = await flow.acquire(Date.now() + 30, 'cast x').catch((e: unknown) => e);
  assert.instance(err, MessagingTimeout);
  assert.match((err as Error).message, 'cast x: timed out waiting for room to send (0 sends queued');
});

t('a cast lost with the connection near its deadline says its delivery is unknown, not that nobody took it', async () => {
  const conn = { isOpen: true, until: async () => {} };
  const link = { sendable: () => true, send: () => ({}) } as unknown as Sender;
  const flow = new SendFlow(fakeLinks({ free: 2048 }));
  const sender = new MessageSender(conn as unknown as Amqp1Connection, flow, { link: () => link });
  const sent = sender.deliver(() => ({ body: 'x' }), false, Date.now() + 30, -1, 'cast c').catch((e: unknown) => e);
  await turn();
  conn.isOpen = false;
  sender.connectionLost(new TransportError('gone'));
  const err = (await sent) as Error;
  // Before: MessageUndeliverable, "the router released it … (no receiver for the address)".
  assert.not.instance(err, MessageUndeliverable);
  assert.instance(err, MessagingTimeout);
  assert.match(err.message, 'cast c: the connection dropped before the router settled it');
  assert.match(err.message, 'its delivery is unknown');
});

t.run();
