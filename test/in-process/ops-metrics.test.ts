import { spawn } from 'node:child_process';
import cluster, { type Worker } from 'node:cluster';
import nodeHttp from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  defaultConfig,
  getTransport,
  NotificationListener,
  Notifier,
  RPCClient,
  RPCServer,
  Target,
  type Transport,
} from '../../src/index.js';
import { Metrics, PROCESS_METRIC_NAMES, serveClusterMetrics, serveMetrics } from '../../src/ops/metrics.js';
import { ClusterMetrics } from '../../src/ops/metrics-cluster.js';
import { HEADERS_TIMEOUT_MS, MAX_CONNECTIONS } from '../../src/ops/metrics-http.js';
import { Router } from '../../src/router/router.js';
import { rejects, sleep, until } from '../support/assert.js';
import { Recorder } from '../support/endpoints.js';
import { sampleValue, scrape } from '../support/prometheus.js';

interface Ctx {
  transports: Transport[];
  servers: RPCServer[];
  closers: Array<() => Promise<unknown> | unknown>;
}
const t = suite<Ctx>('ops - metrics', { transports: [], servers: [], closers: [] });

t.before.each((ctx) => {
  ctx.transports = [];
  ctx.servers = [];
  ctx.closers = [];
});
t.after.each(async (ctx) => {
  for (const s of ctx.servers) {
    await s.stop();
    await s.wait(1000);
  }
  for (const tr of ctx.transports) await tr.close();
  for (const c of ctx.closers.reverse()) await c();
});

async function setup(
  ctx: Ctx,
  url: string,
  topic: string,
  options: ConstructorParameters<typeof Metrics>[0] = {},
  more: object[] = [],
  overrides: Record<string, unknown> = {},
) {
  const metrics = new Metrics(options);
  metrics.start();
  ctx.closers.push(() => metrics.close());
  const http = await serveMetrics(metrics, { port: 0 });
  ctx.closers.push(() => http.close());
  const transport = await getTransport(url, { config: defaultConfig(), overrides });
  ctx.transports.push(transport);
  const server = new RPCServer(transport, new Target({ topic, server: 's1' }), [new Recorder('s1'), ...more]);
  await server.start();
  ctx.servers.push(server);
  const client = new RPCClient(transport, new Target({ topic }), { timeout: 3000 });
  return { metrics, http, client, server };
}

t('oslo.metrics series, in-flight gauges and exceptions, scraped over HTTP', async (ctx) => {
  const { http, client } = await setup(ctx, 'memory://ops-metrics-1', 'mt1');
  for (let i = 0; i < 3; i++) assert.is(await client.call({}, 'add', { a: i, b: 1 }), i + 1);
  await rejects(client.call({}, 'fail', { message: 'no' }), 'HERMOD_ERR_REMOTE');
  // While a slow call runs, both sides show it in flight (polled: the machine may be loaded).
  // 5 s under a 15 s timeout: a 2 s call under the client's 3 s timed out at the suite's load,
  // and the scrapes below must all fall within the call.
  const slow = client.call({}, 'sleep', { ms: 5000 }, { timeout: 15_000 });
  let text = '';
  const deadline = Date.now() + 4500;
  let seen = false;
  while (!seen && Date.now() < deadline) {
    text = await scrape(http.url);
    seen =
      sampleValue(text, 'hermod_rpc_server_in_flight', { topic: 'mt1', server: 's1' }) === 1 &&
      sampleValue(text, 'hermod_rpc_client_in_flight', { call_type: 'call', topic: 'mt1' }) === 1;
    if (!seen) await sleep(50);
  }
  assert.ok(seen, `in-flight gauges never showed the slow call:\n${text}`);
  await slow;

  text = await scrape(http.url);
  const server = { exchange: 'openstack', topic: 'mt1', server: 's1', namespace: '', version: '1.0', method: 'add' };
  assert.is(sampleValue(text, 'oslo_messaging_rpc_server_invocation_start_total', server), 3);
  assert.is(sampleValue(text, 'oslo_messaging_rpc_server_invocation_end_total', server), 3);
  assert.is(sampleValue(text, 'oslo_messaging_rpc_server_processing_second_count', server), 3);
  assert.is(sampleValue(text, 'oslo_messaging_rpc_server_processing_second_bucket', { ...server, le: '+Inf' }), 3);
  assert.is(sampleValue(text, 'oslo_messaging_rpc_server_exception_total', { ...server, method: 'fail', exception: 'TypeError' }), 1);
  const caller = { call_type: 'call', exchange: 'openstack', topic: 'mt1', namespace: '', version: '', server: '', fanout: 'False' };
  assert.is(sampleValue(text, 'oslo_messaging_rpc_client_invocation_end_total', { ...caller, method: 'add' }), 3);
  // The client labels a remote failure by the remote class.
  assert.is(sampleValue(text, 'oslo_messaging_rpc_client_exception_total', { ...caller, method: 'fail', exception: 'TypeError' }), 1);
  assert.is(sampleValue(text, 'hermod_rpc_server_in_flight', { topic: 'mt1', server: 's1' }), 0);
  assert.is(
    sampleValue(text, 'hermod_rpc_server_requests_total', { exchange: 'openstack', topic: 'mt1', server: 's1', outcome: 'error' }),
    1,
  );
  assert.is(sampleValue(text, 'hermod_rpc_server_requests_total', { exchange: 'openstack', topic: 'mt1', server: 's1', outcome: 'ok' }), 4);

  // A request refused before dispatch counts by its outcome only: no exception, no
  // zero-valued invocation series (they appeared, with version="").
  await rejects(client.call({}, 'echo', JSON.parse('{"__proto__":{"x":1}}')), 'HERMOD_ERR_MALFORMED_MESSAGE');
  text = await scrape(http.url);
  assert.is(
    sampleValue(text, 'hermod_rpc_server_requests_total', { exchange: 'openstack', topic: 'mt1', server: 's1', outcome: 'invalid' }),
    1,
  );
  assert.not.match(text, /oslo_messaging_rpc_server_[a-z_]+\{[^}]*method="echo"/);

  const res = await fetch(http.url.replace('/metrics', '/other'));
  assert.is(res.status, 404);
  await res.text();
  const post = await fetch(http.url, { method: 'POST', body: 'x' });
  assert.is(post.status, 405);
  assert.is(post.headers.get('allow'), 'GET, HEAD', 'a 405 says what is allowed (RFC 9110)');
  await post.text();
  // The absolute form of a request target (what a proxy sends) is the same resource.
  const absolute = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const u = new URL(http.url);
    const req = nodeHttp.request({ host: u.hostname, port: u.port, path: http.url }, (r) => {
      let body = '';
      r.on('data', (d) => (body += d));
      r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
  assert.is(absolute.status, 200);
  assert.match(absolute.body, /oslo_messaging_rpc_server_invocation_start_total/);
});

t('a method that throws a value that is not an Error counts as NonErrorThrown on both sides, as its caller is told', async (ctx) => {
  class Careless {
    throwText() {
      throw 'disk full';
    }
    throwNull() {
      throw null;
    }
  }
  const { http, client } = await setup(ctx, 'memory://ops-metrics-nonerror', 'mtn', {}, [new Careless()]);
  for (const method of ['throwText', 'throwNull']) {
    const err = (await rejects(client.call({}, method), 'HERMOD_ERR_REMOTE')) as Error & { excType?: string };
    assert.is(err.excType, 'NonErrorThrown', method);
  }
  const text = await scrape(http.url);
  const server = { exchange: 'openstack', topic: 'mtn', server: 's1', namespace: '', version: '1.0' };
  const caller = { call_type: 'call', exchange: 'openstack', topic: 'mtn', namespace: '', version: '', server: '', fanout: 'False' };
  for (const method of ['throwText', 'throwNull']) {
    // The server labelled it "Error" (the wrapper it made of the value), the client NonErrorThrown.
    assert.is(
      sampleValue(text, 'oslo_messaging_rpc_server_exception_total', { ...server, method, exception: 'NonErrorThrown' }),
      1,
      method,
    );
    assert.is(
      sampleValue(text, 'oslo_messaging_rpc_client_exception_total', { ...caller, method, exception: 'NonErrorThrown' }),
      1,
      method,
    );
  }
  assert.not.match(text, /exception="Error"/);
});

t('an error class that sets no name is counted by its class on both sides, as its caller is told', async (ctx) => {
  class QuotaExceeded extends Error {}
  const { http, client } = await setup(ctx, 'memory://ops-metrics-classname', 'mtq', {}, [
    {
      quota: () => {
        throw new QuotaExceeded('over');
      },
    },
  ]);
  const err = (await rejects(client.call({}, 'quota'), 'HERMOD_ERR_REMOTE')) as Error & { excType?: string };
  assert.is(err.excType, 'QuotaExceeded');
  const text = await scrape(http.url);
  const server = { exchange: 'openstack', topic: 'mtq', server: 's1', namespace: '', version: '1.0', method: 'quota' };
  const caller = { call_type: 'call', exchange: 'openstack', topic: 'mtq', namespace: '', version: '', server: '', fanout: 'False' };
  assert.is(sampleValue(text, 'oslo_messaging_rpc_server_exception_total', { ...server, exception: 'QuotaExceeded' }), 1, text);
  assert.is(sampleValue(text, 'oslo_messaging_rpc_client_exception_total', { ...caller, method: 'quota', exception: 'QuotaExceeded' }), 1);
  assert.not.match(text, /exception="Error"/);
});

t('method names cannot grow the series without bound, and made-up ones do not use up the budget of real ones', async (ctx) => {
  // 30 real methods beside the Recorder's, and a budget of 20 series per side.
  const many = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`m${i}`, async () => i]));
  const { http, client } = await setup(ctx, 'memory://ops-metrics-2', 'mt2', { maxMethods: 20 }, [many]);
  await client.call({}, 'add', { a: 1, b: 1 });
  // Made-up names (a peer, or HTTP clients through the gateway) end up under __other__ and give
  // their place back: before, they took the budget and every real method after them was __other__.
  for (let i = 0; i < 200; i++) await rejects(client.call({}, `nosuch_${i}`), 'HERMOD_ERR_NO_SUCH_METHOD');
  let text = await scrape(http.url);
  assert.not.match(text, /method="nosuch_/);
  const other = { exchange: 'openstack', topic: 'mt2', server: 's1', namespace: '__other__', version: '__other__', method: '__other__' };
  assert.is(sampleValue(text, 'oslo_messaging_rpc_server_invocation_start_total', other), 200);
  assert.is(sampleValue(text, 'oslo_messaging_rpc_server_invocation_end_total', other), 200);
  assert.is(sampleValue(text, 'oslo_messaging_rpc_server_processing_second_count', other), 200);
  assert.is(sampleValue(text, 'oslo_messaging_rpc_server_exception_total', { ...other, exception: 'NoSuchMethod' }), 200);
  // The client's fallback keeps only what the process controls: a caller may choose the topic.
  const caller = {
    call_type: 'call',
    exchange: 'openstack',
    topic: '__other__',
    namespace: '__other__',
    version: '__other__',
    server: '',
    fanout: 'False',
  };
  assert.is(sampleValue(text, 'oslo_messaging_rpc_client_invocation_end_total', { ...caller, method: '__other__' }), 200);
  assert.is(
    sampleValue(text, 'oslo_messaging_rpc_client_exception_total', { ...caller, method: '__other__', exception: 'NoSuchMethod' }),
    200,
  );
  // The real methods get the budget: add and 19 of the 30, the rest under __other__.
  for (let i = 0; i < 30; i++) assert.is(await client.call({}, `m${i}`), i);
  text = await scrape(http.url);
  const methods = new Set(
    [...text.matchAll(/^oslo_messaging_rpc_server_invocation_start_total\{[^}]*method="([^"]*)"/gm)].map((m) => m[1]),
  );
  assert.is(methods.size, 21);
  assert.ok(methods.has('add') && methods.has('m0') && methods.has('m18') && !methods.has('m19') && methods.has('__other__'));
  assert.is(sampleValue(text, 'oslo_messaging_rpc_server_invocation_start_total', other), 211);
  // A version no endpoint has is folded the same way; the method's real version keeps its series.
  await rejects(client.prepare({ version: '9.0' }).call({}, 'add', { a: 1, b: 1 }), 'HERMOD_ERR_UNSUPPORTED_VERSION');
  text = await scrape(http.url);
  assert.not.match(text, /version="9\.0"/);
  assert.is(sampleValue(text, 'oslo_messaging_rpc_server_invocation_start_total', other), 212);
  assert.is(
    sampleValue(text, 'oslo_messaging_rpc_server_invocation_start_total', { ...other, method: 'add', namespace: '', version: '1.0' }),
    1,
  );
  assert.ok(text.length < 200_000, `exposition grew to ${text.length} bytes`);
});

t('spellings of a compatible version (01.0, 1.00, …) share one series: they cannot use up the budget of real methods', async (ctx) => {
  // From a review: the label was the version as the caller spelt it, and every spelling of a
  // compatible one is answered, so each took (and kept) a place of the budget.
  const many = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`m${i}`, async () => i]));
  const { http, client } = await setup(ctx, 'memory://ops-metrics-versions', 'mtv', { maxMethods: 20 }, [many]);
  const spellings = Array.from({ length: 60 }, (_, i) => `${'0'.repeat(i % 6)}1.${'0'.repeat(1 + Math.floor(i / 6))}`);
  assert.is(new Set(spellings).size, 60);
  for (const version of spellings) assert.is(await client.prepare({ version }).call({}, 'add', { a: 1, b: 1 }), 2);
  for (let i = 0; i < 30; i++) assert.is(await client.call({}, `m${i}`), i);
  const text = await scrape(http.url);
  const versions = new Set(
    [...text.matchAll(/^oslo_messaging_rpc_(?:server|client)_invocation_start_total\{[^}]*version="([^"]*)"/gm)].map((m) => m[1]),
  );
  // '': the client's calls that name no version.
  assert.equal([...versions].sort(), ['', '1.0', '__other__'], 'one label per version, as the dispatcher compares them');
  const own = { exchange: 'openstack', topic: 'mtv', server: 's1', namespace: '', version: '1.0' };
  assert.is(sampleValue(text, 'oslo_messaging_rpc_server_invocation_start_total', { ...own, method: 'add' }), 60);
  // The real methods get the budget: add and 19 of the 30, the rest under __other__.
  const methods = new Set(
    [...text.matchAll(/^oslo_messaging_rpc_server_invocation_start_total\{[^}]*method="([^"]*)"/gm)].map((m) => m[1]),
  );
  assert.is(methods.size, 21);
  assert.ok(methods.has('m18') && !methods.has('m19') && methods.has('__other__'));
});

t('made-up servers and topics cannot grow the client series either, and do not use up the budget of real ones', async (ctx) => {
  // Requests nobody is bound for dropped (as oslo's on RabbitMQ): the calls wait for their timeout.
  const { http, client } = await setup(ctx, 'memory://ops-metrics-targets', 'mts', { maxMethods: 20 }, [], {
    'rabbit.mandatoryRequests': false,
  });
  assert.is(await client.call({}, 'add', { a: 1, b: 1 }), 2);
  // What the gateway's HTTP clients choose with `?server=` or (mappingPolicy "any") the topic.
  // Before: each became client series and a gauge of its own, kept for good since the calls
  // time out; past the budget, the real methods were all __other__.
  const quick = client.prepare({ timeout: 30 });
  for (let round = 0; round < 4; round++) {
    await Promise.allSettled(
      Array.from({ length: 30 }, (_, i) =>
        i % 2
          ? quick.prepare({ server: `made-up-${round}-${i}` }).call({}, 'add')
          : client.prepare({ topic: `t-${round}-${i}`, timeout: 30 }).call({}, 'add'),
      ),
    );
  }
  assert.is(await client.call({}, 'echo', { value: 1 }), 1);
  let text = await scrape(http.url);
  assert.not.match(text, /made-up-|topic="t-/);
  const starts = text.split('\n').filter((l) => l.startsWith('oslo_messaging_rpc_client_invocation_start_total{'));
  assert.ok(starts.length <= 24, `${starts.length} client series:\n${starts.join('\n')}`);
  const gauges = text.split('\n').filter((l) => l.startsWith('hermod_rpc_client_in_flight{'));
  assert.ok(gauges.length <= 4, `${gauges.length} client gauges:\n${gauges.join('\n')}`);
  const caller = { call_type: 'call', exchange: 'openstack', topic: 'mts', namespace: '', version: '', server: '', fanout: 'False' };
  assert.is(
    sampleValue(text, 'oslo_messaging_rpc_client_invocation_end_total', { ...caller, method: 'echo' }),
    1,
    'a real method called later has its own series',
  );
  const unanswered = sampleValue(text, 'oslo_messaging_rpc_client_invocation_end_total', {
    ...caller,
    topic: '__other__',
    namespace: '__other__',
    version: '__other__',
    method: '__other__',
  });
  const directed = sampleValue(text, 'oslo_messaging_rpc_client_invocation_end_total', {
    ...caller,
    topic: '__other__',
    namespace: '__other__',
    version: '__other__',
    server: '__other__',
    method: '__other__',
  });
  assert.is((unanswered ?? 0) + (directed ?? 0), 120, 'every unanswered call is counted, under __other__');
  assert.is(sampleValue(text, 'hermod_rpc_client_in_flight', { call_type: 'call', topic: '__other__' }), 0);
  // A cast gets no answer, so casts to made-up servers keep their places: the budget still holds.
  for (let i = 0; i < 60; i++) await quick.prepare({ server: `cast-${i}` }).cast({}, 'add');
  text = await scrape(http.url);
  // The budget, plus one fallback per call type and kind of target (any server, one server).
  const after = text.split('\n').filter((l) => l.startsWith('oslo_messaging_rpc_client_invocation_start_total{'));
  assert.ok(after.length <= 24, `${after.length} client series:\n${after.join('\n')}`);
  assert.ok(text.split('\n').filter((l) => l.startsWith('hermod_rpc_client_in_flight{')).length <= 4);
});

t(
  'thousands of casts to made-up servers at the default budget: the client series stop at the budget, on memory and the router',
  async (ctx) => {
    const series = (text: string, name: string) => text.split('\n').filter((l) => l.startsWith(`${name}{`));
    const servers = (text: string) => new Set([...text.matchAll(/server="(x\d+)"/g)].map((m) => m[1]));
    // Without mandatory requests (oslo's default on RabbitMQ) memory:// takes a cast nobody is
    // bound for without a word: each one is a success, so each made-up server keeps its place,
    // and only the budget (500) stops them.
    const mem = await setup(ctx, 'memory://ops-metrics-casts', 'mtc', {}, [], { 'rabbit.mandatoryRequests': false });
    for (let i = 0; i < 3000; i++) await mem.client.prepare({ server: `x${i}` }).cast({}, 'add', { a: 1, b: 1 });
    let text = await scrape(mem.http.url);
    // The 500 admitted, plus the fallback of a cast to one server.
    assert.is(series(text, 'oslo_messaging_rpc_client_invocation_start_total').length, 501);
    assert.is(servers(text).size, 500);
    assert.is(
      sampleValue(text, 'oslo_messaging_rpc_client_invocation_start_total', {
        call_type: 'cast',
        exchange: 'openstack',
        topic: '__other__',
        namespace: '__other__',
        version: '__other__',
        server: '__other__',
        fanout: 'False',
        method: '__other__',
      }),
      2500,
    );
    assert.ok(series(text, 'hermod_rpc_client_in_flight').length <= 3, text);
    await mem.server.stop();
    await mem.server.wait(1000);
    mem.metrics.close();

    // The router releases a message nobody takes, and the cast fails undeliverable: each gives its
    // place back, and none of them is left as a series.
    const router = new Router({ port: 0 });
    const port = await router.start();
    ctx.closers.push(() => router.stop());
    const amqp = await setup(ctx, `amqp://127.0.0.1:${port}/`, 'mtc');
    const quick = amqp.client.prepare({ timeout: 300 });
    for (let round = 0; round < 10; round++) {
      const casts = Array.from({ length: 200 }, (_, i) => quick.prepare({ server: `x${round * 200 + i}` }).cast({}, 'add', { a: 1, b: 1 }));
      for (const r of await Promise.allSettled(casts)) assert.is(r.status, 'rejected');
    }
    assert.is(await amqp.client.call({}, 'add', { a: 1, b: 2 }), 3);
    text = await scrape(amqp.http.url);
    assert.is(servers(text).size, 0, text);
    assert.ok(series(text, 'oslo_messaging_rpc_client_invocation_start_total').length <= 4, text);
    assert.is(
      sampleValue(text, 'oslo_messaging_rpc_client_invocation_end_total', {
        call_type: 'call',
        exchange: 'openstack',
        topic: 'mtc',
        namespace: '',
        version: '',
        server: '',
        fanout: 'False',
        method: 'add',
      }),
      1,
      'a real method called after them has its own series',
    );
  },
);

t('made-up names in flight together, more than the budget: every end finds the series its start counted in', async (ctx) => {
  const { http, client } = await setup(ctx, 'memory://ops-metrics-burst', 'mtb', { maxMethods: 20 });
  // Before: the first ends gave their places back, and the ends of calls that had started under
  // __other__ then made new empty series that kept those places for good; the gauges stayed up.
  await Promise.allSettled(Array.from({ length: 50 }, (_, i) => client.call({}, `burst_${i}`)));
  assert.is(await client.call({}, 'add', { a: 1, b: 2 }), 3);
  const text = await scrape(http.url);
  assert.not.match(text, /method="burst_/);
  assert.is(sampleValue(text, 'hermod_rpc_server_in_flight', { topic: 'mtb', server: 's1' }), 0);
  assert.is(sampleValue(text, 'hermod_rpc_client_in_flight', { call_type: 'call', topic: 'mtb' }), 0);
  const other = { exchange: 'openstack', topic: 'mtb', server: 's1', namespace: '__other__', version: '__other__', method: '__other__' };
  assert.is(sampleValue(text, 'oslo_messaging_rpc_server_invocation_start_total', other), 50);
  assert.is(sampleValue(text, 'oslo_messaging_rpc_server_invocation_end_total', other), 50);
  const add = { exchange: 'openstack', topic: 'mtb', server: 's1', namespace: '', version: '1.0', method: 'add' };
  assert.is(sampleValue(text, 'oslo_messaging_rpc_server_invocation_end_total', add), 1, 'the real method has its own series');
});

t(
  'long method names from peers are counted under __other__, not kept: 50 names of 100 kB stay out of memory and the scrape',
  async (ctx) => {
    const { http, client } = await setup(ctx, 'memory://ops-metrics-long', 'mtl', {}, [{ ['n'.repeat(200)]: async () => 1 }]);
    await client.call({}, 'add', { a: 1, b: 1 });
    // Below the series limit: the length alone sends them to __other__ (500 names of 400 kB took a
    // server to 677 MiB and its scrape to 18 s).
    for (let i = 0; i < 50; i++) await rejects(client.call({}, `${'m'.repeat(100_000)}${i}`), 'HERMOD_ERR_NO_SUCH_METHOD');
    assert.is(await client.call({}, 'n'.repeat(200)), 1);
    const text = await scrape(http.url);
    assert.ok(text.length < 100_000, `exposition grew to ${text.length} bytes`);
    const other = { exchange: 'openstack', topic: 'mtl', server: 's1', namespace: '__other__', version: '__other__', method: '__other__' };
    assert.is(sampleValue(text, 'oslo_messaging_rpc_server_invocation_start_total', other), 50);
    // At the bound a name is still its own series.
    assert.match(text, new RegExp(`method="${'n'.repeat(200)}"`));
  },
);

t('connection state over the embedded router; stop() counts nothing more, close() empties', async (ctx) => {
  const router = new Router({ port: 0 });
  const port = await router.start();
  ctx.closers.push(() => router.stop());
  const { metrics, http, client } = await setup(ctx, `amqp://127.0.0.1:${port}/`, 'mt3');
  await client.call({}, 'add', { a: 1, b: 2 });
  let text = await scrape(http.url);
  const up = [...text.matchAll(/^hermod_connection_up\{driver="amqp1",host="([^"]+)"\} (\d+)/gm)];
  assert.ok(up.length >= 1, text);
  assert.ok(
    up.every((m) => m[2] === '1'),
    'connection shown up',
  );
  const labels = { exchange: 'openstack', topic: 'mt3', server: 's1', namespace: '', version: '1.0', method: 'add' };
  assert.is(sampleValue(text, 'oslo_messaging_rpc_server_invocation_end_total', labels), 1);
  metrics.stop();
  await client.call({}, 'add', { a: 1, b: 2 });
  text = await scrape(http.url);
  assert.is(sampleValue(text, 'oslo_messaging_rpc_server_invocation_end_total', labels), 1);
  metrics.close();
  text = await scrape(http.url);
  assert.not.match(text, /oslo_messaging/);
});

t(
  "the process's own series, by prom-client's default names, read when scraped; not on a registry of the caller's unless asked",
  async () => {
    const own = new Metrics();
    const text = await own.text();
    for (const name of PROCESS_METRIC_NAMES) assert.match(text, new RegExp(`^${name}[{ ]`, 'm'), name);
    const rss = sampleValue(text, 'process_resident_memory_bytes', {})!;
    assert.ok(Math.abs(rss - process.memoryUsage.rss()) < 50e6, `${rss} bytes`);
    assert.ok(sampleValue(text, 'process_open_fds', {})! > 0);
    const cpu = sampleValue(text, 'process_cpu_seconds_total', {})!;
    const busy = Date.now() + 60;
    while (Date.now() < busy);
    assert.ok(sampleValue(await own.text(), 'process_cpu_seconds_total', {})! > cpu, 'read again at each scrape');
    own.close();
    // A registry of the caller's may have prom-client's collectDefaultMetrics() on it: the same names would clash.
    const theirs = new Registry();
    collectDefaultMetrics({ register: theirs });
    const given = new Metrics({ registry: theirs });
    assert.is((await given.text()).match(/^process_resident_memory_bytes /gm)?.length, 1);
    given.close();
    const asked = new Metrics({ registry: new Registry(), processMetrics: true });
    assert.match(await asked.text(), /^nodejs_heap_size_used_bytes \d+/m);
    asked.close();
  },
);

t('a host never reached shows as down (hermod_connection_up 0), not as no series', async (ctx) => {
  // From a review: the gauge was set only on connected/disconnected, so a server started with
  // the wrong port had no series at all and an alert on `== 0` never fired.
  const metrics = new Metrics();
  metrics.start();
  ctx.closers.push(() => metrics.close());
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
  const { port } = closed.address() as net.AddressInfo;
  await new Promise<void>((r) => closed.close(() => r()));
  const transport = await getTransport(`amqp://127.0.0.1:${port}/`, { config: defaultConfig() });
  ctx.transports.push(transport);
  const c = new RPCClient(transport, new Target({ topic: 'nowhere' }), { timeout: 3000 });
  void c.cast({}, 'x').catch(() => {});
  const host = `127.0.0.1:${port}`;
  let text = '';
  const poll = setInterval(async () => {
    text = await metrics.registry.metrics();
  }, 50);
  try {
    await until(() => text.includes(`hermod_connection_up{driver="amqp1",host="${host}"} 0`), 'a 0 for the host', 5000);
  } finally {
    clearInterval(poll);
  }
  assert.match(text, /hermod_connection_reconnects_total\{driver="amqp1"\} [1-9]/);
});

t('a notification is counted once, by what became of it, also when its endpoint threw', async (ctx) => {
  // From a review: an endpoint that threw was counted as `error` and again as `handled` (or as
  // `requeue` each time and `dropped` at the end): two counts per delivery.
  const metrics = new Metrics();
  metrics.start();
  ctx.closers.push(() => metrics.close());
  const count = async (outcome: string) =>
    sampleValue(await metrics.registry.metrics(), 'hermod_notifications_total', { priority: 'info', outcome }) ?? 0;
  for (const allowRequeue of [false, true]) {
    const transport = await getTransport(`memory://metrics-notify-${allowRequeue}`, {
      config: defaultConfig(),
      overrides: { 'notifications.allowRequeue': allowRequeue, 'notifications.redeliveryLimit': 2 },
    });
    ctx.transports.push(transport);
    let runs = 0;
    const before = {
      error: await count('error'),
      handled: await count('handled'),
      requeue: await count('requeue'),
      dropped: await count('dropped'),
    };
    const listener = new NotificationListener(
      transport,
      [new Target({ topic: 'notifications' })],
      [
        {
          info() {
            runs++;
            throw new Error('boom');
          },
        },
      ],
    );
    await listener.start();
    await new Notifier(transport, { publisherId: 'p', topics: ['notifications'] }).info({}, 'thing.happened', { n: 1 });
    // Without requeue: run once and acknowledged (error). With it: given back twice, then dropped.
    const deliveries = allowRequeue ? 3 : 1;
    await until(() => runs === deliveries, `${deliveries} runs`, 5000);
    const settled = allowRequeue ? 'dropped' : 'error';
    for (let i = 0; i < 100 && (await count(settled)) - before[settled] !== 1; i++) await sleep(50);
    const d = {
      error: (await count('error')) - before.error,
      handled: (await count('handled')) - before.handled,
      requeue: (await count('requeue')) - before.requeue,
      dropped: (await count('dropped')) - before.dropped,
    };
    assert.equal(d, allowRequeue ? { error: 0, handled: 0, requeue: 2, dropped: 1 } : { error: 1, handled: 0, requeue: 0, dropped: 0 });
    await listener.stop();
    await listener.wait(1000);
  }
});

t('serveMetrics: a taken port is a clear error; close() ends keep-alive connections', async (ctx) => {
  const metrics = new Metrics();
  const a = await serveMetrics(metrics, { port: 0 });
  ctx.closers.push(() => a.close());
  await rejects(
    serveMetrics(metrics, { port: a.port }),
    'HERMOD_ERR_CONFIG',
    /cannot serve metrics on 127\.0\.0\.1:\d+: the port is in use \(EADDRINUSE\)/,
  );
  await rejects(serveMetrics(metrics, { host: 'nosuch.invalid', port: 0 }), 'HERMOD_ERR_CONFIG', /nosuch\.invalid:0: unknown host/);
  const res = await fetch(a.url);
  assert.is(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
  await res.text();
  const t0 = Date.now();
  await a.close();
  // Not held by the fetch's keep-alive connection (5 s).
  assert.ok(Date.now() - t0 < 3000, `closed after ${Date.now() - t0} ms`);
});

t('serveMetrics under a flood: concurrent scrapes share one exposition, idle sockets are bounded', async (ctx) => {
  let made = 0;
  let release: (() => void) | undefined;
  const slow = {
    contentType: 'text/plain; version=0.0.4; charset=utf-8',
    text: async () => {
      made++;
      await new Promise<void>((r) => {
        release = r;
      });
      return 'x_total 1\n';
    },
  };
  const m = await serveMetrics(slow, { port: 0 });
  ctx.closers.push(() => m.close());
  // Sockets that never send a request: Node's default took any number, each for up to 60 s.
  const idle: net.Socket[] = [];
  ctx.closers.push(() => {
    for (const s of idle) s.destroy();
  });
  let dropped = 0;
  for (let i = 0; i < MAX_CONNECTIONS + 40; i++) {
    const s = net.connect(m.port, '127.0.0.1');
    s.on('error', () => {});
    s.on('close', () => dropped++);
    idle.push(s);
  }
  await until(() => dropped >= 40, 'the sockets past the bound to be closed');
  await sleep(200);
  assert.is(dropped, 40, `${dropped} of ${idle.length} sockets closed`);
  for (const s of idle) s.destroy();
  await until(() => dropped === idle.length, 'all gone');
  // The server counts them out as their close reaches it: on a loaded machine 200 ms was once
  // too little (the 49th scrape refused as over the bound).
  await sleep(1000);
  // Served again once they left. Before, each of these asked the registry (on a cluster primary: every worker) on its own.
  const scrapes = Array.from({ length: 50 }, () => fetch(m.url).then((r) => r.text()));
  await until(() => made === 1 && release !== undefined, 'the first exposition');
  await sleep(100);
  release!();
  assert.equal(new Set(await Promise.all(scrapes)), new Set(['x_total 1\n']));
  assert.is(made, 1, 'one exposition for 50 concurrent scrapes');
});

t('serveMetrics: a client that asks and never reads has its connection cut at the send timeout', async (ctx) => {
  // From a review: the response sat in the server's memory for as long as the client liked
  // (64 such sockets on a 1.7 MB scrape: 88 → 427 MB of RSS). More than loopback's socket
  // buffers hold, so most of it waits in the process.
  const body = `${'x'.repeat(99)}\n`.repeat(320_000);
  const m = await serveMetrics({ contentType: 'text/plain', text: async () => body }, { port: 0, sendTimeoutMs: 500 });
  ctx.closers.push(() => m.close());
  const s = net.connect(m.port, '127.0.0.1');
  ctx.closers.push(() => s.destroy());
  s.pause();
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n');
  await sleep(2000);
  let received = 0;
  let head = '';
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  s.on('data', (d: Buffer) => {
    if (received === 0) head = d.subarray(0, 12).toString('latin1');
    received += d.length;
  });
  s.resume();
  await until(() => s.destroyed || received > body.length, 'the connection closed, or the whole response read', 10_000);
  await closed;
  assert.is(head, 'HTTP/1.1 200');
  assert.ok(received < body.length, `${received} of ${body.length} bytes sent: the rest was dropped with the connection`);
  // A client that reads gets all of it: from a server with the default bound (10 s), since on a
  // loaded machine 32 MB may take a fetch longer than the 500 ms this one allows.
  const reading = await serveMetrics({ contentType: 'text/plain', text: async () => body }, { port: 0 });
  ctx.closers.push(() => reading.close());
  assert.is((await fetch(reading.url).then((r) => r.text())).length, body.length);
});

t('serveMetrics: a request whose headers never end is answered 408 and closed near the 10 s headers timeout', async (ctx) => {
  const m = await serveMetrics({ contentType: 'text/plain', text: async () => 'x_total 1\n' }, { port: 0 });
  ctx.closers.push(() => m.close());
  const s = net.connect(m.port, '127.0.0.1');
  ctx.closers.push(() => s.destroy());
  let answer = '';
  s.on('data', (d: Buffer) => {
    answer += d.toString('latin1');
  });
  s.on('error', () => {});
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  await new Promise((r) => s.once('connect', r));
  const t0 = Date.now();
  s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
  await closed;
  const took = Date.now() - t0;
  // Node checks its connections' timeouts every 30 s by default: such a socket was kept 13-36 s.
  assert.ok(took >= HEADERS_TIMEOUT_MS - 500 && took < HEADERS_TIMEOUT_MS + 4000, `closed after ${took} ms`);
  assert.match(answer, /^HTTP\/1\.1 408 /);
});

t('the counters kept from workers that exited are bounded by the series budget, the excess folded into __other__', async () => {
  // From a review: each exit merged the worker's series into the retained set with no bound, so
  // a peer choosing new labels for each worker grew the scrape by a budget per round of exits.
  // The primary's side alone, its workers played by events on `cluster`.
  const primary = new ClusterMetrics({ maxMethods: 20 });
  try {
    const server = { exchange: 'openstack', topic: 't', server: 'w', namespace: '', version: '1.0' };
    const client = { call_type: 'call', exchange: 'openstack', namespace: '', version: '1.0', server: '', fanout: 'False', method: 'add' };
    for (let round = 0; round < 5; round++) {
      const worker = { id: 1000 + round } as unknown as Worker;
      const names = Array.from({ length: 20 }, (_, i) => `m_${round}_${i}`);
      const answer = [
        {
          name: 'oslo_messaging_rpc_server_invocation_start_total',
          help: 'h',
          type: 'counter',
          aggregator: 'sum',
          values: names.map((method) => ({ labels: { ...server, method }, value: 1 })),
        },
        {
          name: 'oslo_messaging_rpc_server_processing_second',
          help: 'h',
          type: 'histogram',
          aggregator: 'sum',
          values: names.flatMap((method) => [
            { labels: { ...server, method, le: 0.1 }, value: 1, metricName: 'oslo_messaging_rpc_server_processing_second_bucket' },
            { labels: { ...server, method, le: '+Inf' }, value: 1, metricName: 'oslo_messaging_rpc_server_processing_second_bucket' },
            { labels: { ...server, method }, value: 0.05, metricName: 'oslo_messaging_rpc_server_processing_second_sum' },
            { labels: { ...server, method }, value: 1, metricName: 'oslo_messaging_rpc_server_processing_second_count' },
          ]),
        },
        {
          // A caller chooses the client's topic (the gateway's mappingPolicy "any").
          name: 'oslo_messaging_rpc_client_invocation_end_total',
          help: 'h',
          type: 'counter',
          aggregator: 'sum',
          values: names.map((topic) => ({ labels: { ...client, topic }, value: 1 })),
        },
      ];
      cluster.emit('message', worker, { hermod: 'metrics-ready' });
      // An answer no scrape waits for is kept as the worker's last.
      cluster.emit('message', worker, { hermod: 'metrics', id: -1, metrics: [answer] });
      cluster.emit('exit', worker, 0, null);
    }
    const text = await primary.text();
    const series = (name: string) => [...text.matchAll(new RegExp(`^${name}\\{`, 'gm'))].length;
    assert.is(series('oslo_messaging_rpc_server_invocation_start_total'), 21, 'the first 20, and __other__');
    assert.is(series('oslo_messaging_rpc_server_processing_second_count'), 21);
    assert.is(series('oslo_messaging_rpc_client_invocation_end_total'), 21);
    const other = { ...server, namespace: '__other__', version: '__other__', method: '__other__' };
    assert.is(sampleValue(text, 'oslo_messaging_rpc_server_invocation_start_total', { ...server, method: 'm_0_7' }), 1);
    assert.is(sampleValue(text, 'oslo_messaging_rpc_server_invocation_start_total', other), 80, 'nothing lost');
    assert.is(sampleValue(text, 'oslo_messaging_rpc_server_processing_second_count', other), 80);
    assert.is(sampleValue(text, 'oslo_messaging_rpc_server_processing_second_bucket', { ...other, le: '+Inf' }), 80);
    const clientOther = { ...client, topic: '__other__', namespace: '__other__', version: '__other__', method: '__other__' };
    assert.is(sampleValue(text, 'oslo_messaging_rpc_client_invocation_end_total', clientOther), 80);
    assert.is(sampleValue(text, 'hermod_metrics_worker_exits_total', {}), 5);
  } finally {
    primary.close();
  }
});

t(
  'serveClusterMetrics: the primary sums the metrics of real workers; a busy one counts with its last answer, a dead or starting one does not hold the scrape, the counters of a dead one stay in the sums',
  async (ctx) => {
    const exec = fileURLToPath(new URL('../support/metrics-worker.js', import.meta.url));
    cluster.setupPrimary({ exec, silent: false });
    // A worker timeout of 2 s, so that "not held" (under 1.5 s) and "held to the timeout" stay
    // apart on a loaded machine: at 500 ms a prompt scrape measured 421 ms there.
    const primary = await serveClusterMetrics({ port: 0, workerTimeoutMs: 2000 });
    ctx.closers.push(() => primary.close());
    const workers: Worker[] = [];
    ctx.closers.push(async () => {
      for (const w of workers) {
        if (w.isDead()) continue;
        const exited = new Promise((r) => w.once('exit', r));
        w.kill();
        await exited;
      }
    });
    const ready: number[] = [];
    for (const env of [{ METRICS_WORKER_CALLS: '3' }, { METRICS_WORKER_CALLS: '5' }, { METRICS_WORKER_IDLE: '1' }]) {
      const w = cluster.fork(env);
      w.on('message', (m: { ready?: number }) => {
        if (typeof m?.ready === 'number') ready.push(m.ready);
      });
      workers.push(w);
    }
    await until(() => ready.length === 3, 'the workers made their calls', 30_000);
    const labels = { exchange: 'openstack', topic: 'cluster-metrics', server: 'w', namespace: '', version: '1.0', method: 'add' };
    const timed = async () => {
      const t0 = performance.now();
      const text = await scrape(primary.url);
      return { text, ms: performance.now() - t0 };
    };
    // The idle worker (no Metrics: one still loading its modules) is not asked; before, every
    // scrape waited 5 s for it and failed with 500.
    let r = await timed();
    assert.ok(r.ms < 1500, `${r.ms} ms`);
    assert.is(sampleValue(r.text, 'oslo_messaging_rpc_server_invocation_end_total', labels), 8);
    assert.is(sampleValue(r.text, 'oslo_messaging_rpc_server_processing_second_count', labels), 8);
    assert.is(sampleValue(r.text, 'hermod_rpc_server_in_flight', { topic: 'cluster-metrics', server: 'w' }), 0);
    assert.is(sampleValue(r.text, 'hermod_metrics_workers', { answer: 'now' }), 2);
    // The workers' own process series, aggregated as prom-client's are: summed, but the earliest
    // start time and one version line.
    const [major, minor, patch] = process.versions.node.split('.') as [string, string, string];
    assert.is(sampleValue(r.text, 'nodejs_version_info', { version: process.version, major, minor, patch }), 1);
    const started = sampleValue(r.text, 'process_start_time_seconds', {})!;
    // prom-client rounds the start time to the second: a worker started less than a second ago
    // may say the next one (a CI run read 19:30:21 at 19:30:20.6).
    assert.ok(started <= Date.now() / 1000 + 1 && started > Date.now() / 1000 - 120, `start time ${started}`);
    assert.ok(sampleValue(r.text, 'process_resident_memory_bytes', {})! > 2 * 20e6, 'two workers of 20 MB at least');
    assert.ok(sampleValue(r.text, 'process_cpu_seconds_total', {})! > 0);
    // A primary that begins to serve after its workers started counting finds them too.
    const late = await serveClusterMetrics({ port: 0, workerTimeoutMs: 500 });
    ctx.closers.push(() => late.close());
    let lateText = '';
    for (let i = 0; i < 50 && sampleValue(lateText, 'hermod_metrics_workers', { answer: 'now' }) !== 2; i++) {
      await sleep(20);
      lateText = await scrape(late.url);
    }
    assert.is(sampleValue(lateText, 'oslo_messaging_rpc_server_invocation_end_total', labels), 8);
    // A worker too busy to answer counts with its last answer: the sum does not step back.
    workers[1]!.send({ block: 4000 });
    r = await timed();
    assert.ok(r.ms >= 1950 && r.ms < 3800, `${r.ms} ms`);
    assert.is(sampleValue(r.text, 'oslo_messaging_rpc_server_invocation_end_total', labels), 8);
    assert.is(sampleValue(r.text, 'hermod_metrics_workers', { answer: 'now' }), 1);
    assert.is(sampleValue(r.text, 'hermod_metrics_workers', { answer: 'stale' }), 1);
    // Worker 2 answers again once its block is over.
    for (let i = 0; i < 30; i++) {
      r = await timed();
      if (sampleValue(r.text, 'hermod_metrics_workers', { answer: 'now' }) === 2) break;
      await sleep(100);
    }
    // A worker that dies while a scrape waits for it is not waited for: blocked (so it cannot
    // answer), then killed 50 ms into the scrape, which ends then, not at the 2 s timeout.
    workers[0]!.send({ block: 8000 });
    await sleep(50);
    const waiting = timed();
    await sleep(50);
    workers[0]!.process.kill('SIGKILL');
    r = await waiting;
    assert.ok(r.ms < 1500, `${r.ms} ms`);
    await until(() => workers[0]!.isDead(), 'worker 1 gone');
    r = await timed();
    assert.is(sampleValue(r.text, 'hermod_metrics_workers', { answer: 'now' }), 1);
    assert.ok(r.ms < 1500, `${r.ms} ms`);
    // What the dead worker counted stays in the sums: 8 → 5 read as a counter reset to rate().
    assert.is(sampleValue(r.text, 'oslo_messaging_rpc_server_invocation_end_total', labels), 8, 'the counter did not step back');
    assert.is(sampleValue(r.text, 'oslo_messaging_rpc_server_processing_second_count', labels), 8);
    assert.is(sampleValue(r.text, 'oslo_messaging_rpc_server_processing_second_bucket', { ...labels, le: '+Inf' }), 8);
    assert.is(sampleValue(r.text, 'hermod_metrics_worker_exits_total', {}), 1);
    // A worker started after it adds its own counts to what was kept, once.
    const more = cluster.fork({ METRICS_WORKER_CALLS: '2' });
    workers.push(more);
    let moreReady = false;
    more.on('message', (m: { ready?: number }) => {
      if (m?.ready === 2) moreReady = true;
    });
    await until(() => moreReady, 'the new worker made its calls', 8000);
    for (let i = 0; i < 50; i++) {
      r = await timed();
      if (sampleValue(r.text, 'hermod_metrics_workers', { answer: 'now' }) === 2) break;
      await sleep(100);
    }
    assert.is(sampleValue(r.text, 'hermod_metrics_workers', { answer: 'now' }), 2, r.text);
    assert.is(sampleValue(r.text, 'oslo_messaging_rpc_server_invocation_end_total', labels), 10);
    // Its gauges went with it: the in-flight gauge is summed over the live workers only.
    assert.is(sampleValue(r.text, 'hermod_rpc_server_in_flight', { topic: 'cluster-metrics', server: 'w' }), 0);
    // Repeated scrapes do not fold anything in twice.
    r = await timed();
    assert.is(sampleValue(r.text, 'oslo_messaging_rpc_server_invocation_end_total', labels), 10);
    assert.is(sampleValue(r.text, 'hermod_metrics_worker_exits_total', {}), 1);
  },
);

t('rpc-server --metrics-port serves its metrics and stops with the server on SIGTERM', async (ctx) => {
  const router = new Router({ port: 0 });
  const port = await router.start();
  ctx.closers.push(() => router.stop());
  const url = `amqp://127.0.0.1:${port}/`;
  const bin = fileURLToPath(new URL('../../bin/rpc-server.js', import.meta.url));
  const child = spawn(process.execPath, [bin, 'cli1', '-t', 'mt-cli', '--transport-url', url, '--metrics-port', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  ctx.closers.push(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  await until(() => /serving topic mt-cli/.test(out), 'rpc-server started', 8000);
  const metricsUrl = /metrics at (http:\/\/\S+)/.exec(out)?.[1];
  assert.ok(metricsUrl, out);
  const transport = await getTransport(url, { config: defaultConfig() });
  ctx.transports.push(transport);
  const client = new RPCClient(transport, new Target({ topic: 'mt-cli' }), { timeout: 3000 });
  assert.is(await client.call({}, 'add', { a: 2, b: 3 }), 5);
  const text = await scrape(metricsUrl!);
  const labels = { exchange: 'openstack', topic: 'mt-cli', server: 'cli1', namespace: '', version: '1.0', method: 'add' };
  assert.is(sampleValue(text, 'oslo_messaging_rpc_server_invocation_end_total', labels), 1);
  child.kill('SIGTERM');
  assert.is(await exited, 0, out);
  // The endpoint went away with the server (fetch wraps the socket error in its cause).
  const err = await fetch(metricsUrl!).then(
    () => undefined,
    (e: Error & { cause?: { code?: string } }) => e,
  );
  assert.is(err?.cause?.code, 'ECONNREFUSED');
});

t.run();
