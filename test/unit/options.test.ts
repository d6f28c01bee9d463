import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { getTransport, NotificationListener, Notifier, RPCClient, RPCServer, Target, type Transport } from '../../src/index.js';
import { rejects } from '../support/assert.js';

// Library options objects refuse names they do not know: a misspelt option used to be ignored in
// silence and its default used (a JavaScript caller, or TypeScript through `as any`).

const t = suite<{ tr: Transport }>('options objects refuse unknown names', {} as { tr: Transport });
t.before(async (ctx) => {
  ctx.tr = await getTransport('memory://options');
});
t.after(async (ctx) => {
  await ctx.tr.close();
});

const BAD = 'HERMOD_ERR_INVALID_ARGUMENT';

t('RPCClient, prepare(), call options, proxy options', async (ctx) => {
  const target = new Target({ topic: 'opts' });
  await rejects(
    () => new RPCClient(ctx.tr, target, { timeot: 100 } as never),
    BAD,
    /RPCClient options: unknown option 'timeot'; did you mean 'timeout'\?/,
  );
  const c = new RPCClient(ctx.tr, target);
  await rejects(() => c.prepare({ sever: 'c1' } as never), BAD, /prepare\(\): unknown option 'sever'; did you mean 'server'\?/);
  await rejects(c.call({}, 'm', {}, { timout: 5 } as never), BAD, /call options: unknown option 'timout'/);
  await rejects(
    () => c.proxy({}, { contracts: {}, chek: true } as never),
    BAD,
    /proxy\(\) options: unknown option 'chek'; did you mean 'check'\?/,
  );
  await rejects(() => new RPCClient(ctx.tr, target, 5 as never), BAD, /RPCClient options must be an object, got number/);
  await rejects(c.start({}, 'm', {}, { timout: 1 } as never), BAD, /start options: unknown option 'timout'/);
  await rejects(c.start({}, 'm', {}, { timeout: 3e9 }), BAD, /at most 2147483647 ms/);
  // Every documented option still passes.
  c.prepare({ server: 's', timeout: 10, retry: 0, versionCap: '1.0', jobTimeout: 0, followJobs: false, fanout: null });
});

t('RPCServer and its stop(), Notifier, NotificationListener, getTransport', async (ctx) => {
  const target = new Target({ topic: 'opts', server: 's' });
  await rejects(() => new RPCServer(ctx.tr, target, [{}], { concurency: 3 } as never), BAD, /did you mean 'concurrency'\?/);
  const server = new RPCServer(ctx.tr, target, [{}]);
  await rejects(server.stop({ job: 'abort' } as never), BAD, /stop\(\) options: unknown option 'job'; did you mean 'jobs'\?/);
  await rejects(() => new Notifier(ctx.tr, { publisherId: 'p', topic: ['x'] } as never), BAD, /did you mean 'topics'\?/);
  await rejects(() => new Notifier(ctx.tr, { publisherID: 'p' } as never), BAD, /did you mean 'publisherId'\?/);
  await rejects(
    () => new Notifier(ctx.tr, { publisherId: 'p' }).prepare({ publisher_id: 'q' } as never),
    BAD,
    /Notifier\.prepare\(\): unknown option 'publisher_id'/,
  );
  await rejects(
    () => new NotificationListener(ctx.tr, [new Target({ topic: 'n' })], [{}], { pol: 'x' } as never),
    BAD,
    /did you mean 'pool'\?/,
  );
  await rejects(
    getTransport('memory://x', { overides: {} } as never),
    BAD,
    /getTransport options: unknown option 'overides'; did you mean 'overrides'\?/,
  );
});

t('getTransport checks a given config as a file: partial gets defaults, bad values are named', async () => {
  const partial = await getTransport('memory://partial', { config: { rpc: { responseTimeout: 300 } } as never });
  assert.equal([partial.config.rpc.responseTimeout, partial.config.rpc.serverConcurrency], [300, 64]);
  await partial.close();
  await rejects(
    getTransport('memory://partial', { config: { rpc: { responseTimeout: 'abc' } } as never }),
    'HERMOD_ERR_CONFIG',
    /invalid value for rpc\.responseTimeout \(from the configuration given\)/,
  );
});

t('MultiCall: a bad via or option is refused when queued; nothing was sent, nothing unhandled', async (ctx) => {
  const c = new RPCClient(ctx.tr, new Target({ topic: 'opts-mc' }), { timeout: 200 });
  const mc = c.multicall({}).call('add', { a: 1, b: 1 });
  await rejects(() => mc.call('who', {}, { via: 'c2' as never }), BAD, /MultiCall options of who: via must be a client/);
  await rejects(() => mc.call('who', {}, { server: 'c2' } as never), BAD, /MultiCall options of who: unknown option 'server'/);
  await rejects(
    () => mc.call('who', {}, { timeout: -5 }),
    BAD,
    /MultiCall options of who: timeout must be a positive number of milliseconds, got -5/,
  );
  await rejects(() => mc.call('who', {}, { timeout: 0 }), BAD, /timeout must be a positive/);
  await rejects(() => mc.call('who', {}, { callMonitorTimeout: Number.NaN }), BAD, /callMonitorTimeout must be a non-negative/);
  assert.is(mc.size, 1, 'none of the refused entries was queued');
  // The entry queued before still runs (and fails on its own: nobody serves the topic).
  const results = await mc.run();
  assert.is(results.length, 1);
  assert.not.ok(results.ok(0));
});

t.run();
