import * as assert from 'uvu/assert';
import { defaultConfig, getTransport, RPCClient, Target, type Transport } from '../../src/index.js';
import { until } from '../support/assert.js';
import { heldCount, type ModeCtx, modeCases, modeSuite, modeTransport, releaseHeld, serveSlow as serve } from '../support/rabbit-mode.js';
import { rpcSuite } from '../support/rpc-cases.js';

// rabbit.replyAcks=false: the reply_<uuid> queue consumed without acknowledgements.
// The RPC cases every driver passes, with every client in that mode (a URL query option).
rpcSuite('rpc over RabbitMQ with rabbit.replyAcks=false: shared cases', modeCases('racks-cases', '?replyAcks=false')).run();

const t = modeSuite('rabbit.replyAcks', 'racks');

function transport(ctx: ModeCtx, replyAcks: boolean): Promise<Transport> {
  return modeTransport(ctx, { 'rabbit.replyAcks': replyAcks });
}

/** `ack_required` of the consumers on reply queues, as the broker reports it. */
async function replyConsumers(ctx: ModeCtx): Promise<string[]> {
  const out = await ctx.node.ctl('list_consumers', '-p', ctx.vhost, '--no-table-headers', '-q', 'queue_name', 'ack_required');
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter(([q]) => q?.startsWith('reply_'))
    .map(([, ack]) => ack!);
}

t('the broker sees the reply queue consumed without acknowledgements, and with them by default', async (ctx) => {
  await serve(ctx, 'racks-basic');
  const plain = new RPCClient(await transport(ctx, true), new Target({ topic: 'racks-basic' }), { timeout: 5000 });
  const noAck = new RPCClient(await transport(ctx, false), new Target({ topic: 'racks-basic' }), { timeout: 5000 });
  const results = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? noAck : plain).call({}, 'echo', { v: i })));
  assert.equal(
    results,
    Array.from({ length: 100 }, (_, i) => i),
  );
  assert.equal((await replyConsumers(ctx)).sort(), ['false', 'true']);
});

// What the mode keeps (it would pass with acknowledgements too): without them the consumer is
// still set up again on the reconnect, and a reply sent after it arrives.
t('without acknowledgements, a call whose reply is sent after a reconnect still completes', async (ctx) => {
  await serve(ctx, 'racks-drop');
  const tr = await transport(ctx, false);
  const states: string[] = [];
  tr.on('state', (s: { state: string }) => states.push(s.state));
  const c = new RPCClient(tr, new Target({ topic: 'racks-drop' }), { timeout: 60_000 });
  assert.is(await c.call({}, 'echo', { v: 'warm' }), 'warm');
  // The server holds this call's reply until the connections are back on both sides: the
  // client's 'connected' comes once its reply consumer is set up again, and the second call's
  // answer shows the server's side is back.
  const inFlight = c.call({}, 'hold', {});
  // Handled now, asserted below: a step failing before that must not leave it unhandled.
  inFlight.catch(() => {});
  await until(() => heldCount() === 1, 'the server holding the call');
  await ctx.node.ctl('close_all_connections', '-p', ctx.vhost, 'test: forced close');
  await until(() => states.includes('disconnected') && states.at(-1) === 'connected', 'the client reconnected', 15_000);
  assert.is(await c.call({}, 'echo', { v: 'again' }, { timeout: 15_000 }), 'again');
  releaseHeld();
  assert.is(await inFlight, 'released');
});

/** Ready messages in the vhost's reply queues, as the broker counts them. */
async function replyBacklog(ctx: ModeCtx): Promise<Array<[string, number]>> {
  const out = await ctx.node.ctl('list_queues', '-p', ctx.vhost, '--no-table-headers', '-q', 'name', 'messages');
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter(([q]) => q?.startsWith('reply_'))
    .map(([q, n]) => [q!, Number(n)] as [string, number]);
}

// The reply queue outlives its consumer (it expires after rabbit.transientQueuesTtl), and with the
// queue manager the next process of the same name consumes it: a reply left in it was read again.
t('the last reply before close() is acknowledged: nothing is left in the reply queue', async (ctx) => {
  await serve(ctx, 'racks-close');
  const before = new Set((await replyBacklog(ctx)).map(([q]) => q));
  for (let i = 0; i < 3; i++) {
    const tr = await getTransport(ctx.url, { config: defaultConfig() });
    const c = new RPCClient(tr, new Target({ topic: 'racks-close' }), { timeout: 5000 });
    assert.is(await c.call({}, 'echo', { v: i }), i);
    // At once, as a CLI does after its one call: the reply's 20 ms acknowledgement timer has not run.
    await tr.close();
  }
  const backlog = (await replyBacklog(ctx)).filter(([q]) => !before.has(q));
  assert.is(backlog.length, 3, 'three reply queues, kept after their consumers went');
  assert.equal(
    backlog.filter(([, n]) => n !== 0),
    [],
  );
});

t('the option is validated like every other', async (ctx) => {
  let err: unknown;
  try {
    await getTransport(ctx.url, { config: defaultConfig(), overrides: { 'rabbit.replyAcks': 'sometimes' } });
  } catch (e) {
    err = e;
  }
  assert.match(String((err as Error)?.message), /invalid value for rabbit\.replyAcks .*must be true or false/);
});

t.run();
