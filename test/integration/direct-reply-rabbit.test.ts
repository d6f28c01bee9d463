import * as assert from 'uvu/assert';
import { defaultConfig, getTransport, RPCClient, Target, type Transport, TransportError } from '../../src/index.js';
import { sleep, until } from '../support/assert.js';
import { type ModeCtx, modeCases, modeSuite, modeTransport, serveSlow as serve } from '../support/rabbit-mode.js';
import { rpcSuite } from '../support/rpc-cases.js';

// rabbit.directReplyTo: replies by RabbitMQ's direct reply-to instead of a reply_<uuid> queue.
// The RPC cases every driver passes, with every client in that mode (a URL query option).
rpcSuite('rpc over RabbitMQ with rabbit.directReplyTo: shared cases', modeCases('drt-cases', '?directReplyTo=true')).run();

const t = modeSuite('rabbit.directReplyTo', 'drt');

function transport(ctx: ModeCtx, directReplyTo: boolean): Promise<Transport> {
  return modeTransport(ctx, { 'rabbit.directReplyTo': directReplyTo });
}

t('calls come back by direct reply-to: no reply queue, and the server counts no failed reply', async (ctx) => {
  const server = await serve(ctx, 'drt-basic');
  const before = new Set((await ctx.node.queues(ctx.vhost)).keys());
  const c = new RPCClient(await transport(ctx, true), new Target({ topic: 'drt-basic' }), { timeout: 5000 });
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) => c.call({}, 'echo', { v: i })));
  assert.equal(
    results,
    Array.from({ length: 50 }, (_, i) => i),
  );
  const added = [...(await ctx.node.queues(ctx.vhost)).keys()].filter((q) => !before.has(q));
  assert.equal(added, [], `queues the client declared: ${added.join(', ')}`);
  // RabbitMQ returns a mandatory message to a direct reply-to address even when it delivered it:
  // the server sends replies there without the flag, so none counts as undeliverable.
  await until(() => server.stats().served === 50, 'all 50 served', 5000);
  assert.is(server.stats().failed, 0);
});

t('a call in flight when the connection drops fails at once with TransportError; the next call works', async (ctx) => {
  await serve(ctx, 'drt-drop');
  const c = new RPCClient(await transport(ctx, true), new Target({ topic: 'drt-drop' }), { timeout: 60_000 });
  assert.is(await c.call({}, 'echo', { v: 'warm' }), 'warm');
  // The server would answer after 30 s; rabbitmqctl itself took over 8 s to start on a busy machine.
  const inFlight = c.call({}, 'sleep', { ms: 30_000 }).then(
    () => undefined,
    (e: Error) => e,
  );
  await sleep(300);
  await ctx.node.ctl('close_all_connections', '-p', ctx.vhost, 'test: forced close');
  const closed = Date.now();
  const err = await inFlight;
  const took = Date.now() - closed;
  assert.instance(err, TransportError);
  assert.match(String(err?.message), /direct reply-to channel .*closed/);
  // At once: not when the server would have answered, nor at the call's 60 s timeout.
  assert.ok(took < 3000, `failed ${took} ms after the connections were closed`);
  // After the reconnect, calls name the new channel's address and get their replies.
  assert.is(await c.call({}, 'echo', { v: 'again' }, { timeout: 15_000 }), 'again');
});

t('the option is validated like every other', async (ctx) => {
  await assert.not.throws(() => defaultConfig());
  let err: unknown;
  try {
    await getTransport(ctx.url, { config: defaultConfig(), overrides: { 'rabbit.directReplyTo': 'sometimes' } });
  } catch (e) {
    err = e;
  }
  assert.match(String((err as Error)?.message), /directReplyTo/);
});

t.run();
