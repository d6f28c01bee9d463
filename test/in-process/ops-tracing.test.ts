import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { extractTraceContext, OTEL_GLOBAL } from '../../src/core/tracing.js';
import { type Context, defaultConfig, getTransport, RPCClient, RPCServer, Target, type Transport } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { rejects, until } from '../support/assert.js';
import { Recorder } from '../support/endpoints.js';

interface Ctx {
  exporter: InMemorySpanExporter;
  transports: Transport[];
  servers: RPCServer[];
  router?: Router;
}
const t = suite<Ctx>('ops - tracing', { exporter: undefined as never, transports: [], servers: [] });

t.before.each((ctx) => {
  ctx.exporter = new InMemorySpanExporter();
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(ctx.exporter)] }));
  ctx.transports = [];
  ctx.servers = [];
});
t.after.each(async (ctx) => {
  trace.disable();
  for (const s of ctx.servers) {
    await s.stop();
    await s.wait(1000);
  }
  for (const tr of ctx.transports) await tr.close();
  await ctx.router?.stop();
  ctx.router = undefined;
});

async function pair(ctx: Ctx, url: string, topic: string) {
  const transport = await getTransport(url, { config: defaultConfig() });
  ctx.transports.push(transport);
  const server = new RPCServer(transport, new Target({ topic, server: 's1' }), [new Recorder('s1')]);
  await server.start();
  ctx.servers.push(server);
  return new RPCClient(transport, new Target({ topic }), { timeout: 3000 });
}

async function oneTrace(ctx: Ctx, url: string, topic: string) {
  const client = await pair(ctx, url, topic);
  const seen = (await client.call({ user: 'u1' }, 'ctx')) as Context;
  await until(() => ctx.exporter.getFinishedSpans().length === 2, 'a client and a server span');
  const spans = ctx.exporter.getFinishedSpans();
  const c = spans.find((s) => s.kind === SpanKind.CLIENT)!;
  const s = spans.find((x) => x.kind === SpanKind.SERVER)!;
  assert.ok(c && s, `kinds ${spans.map((x) => x.kind)}`);
  assert.is(s.spanContext().traceId, c.spanContext().traceId);
  assert.is(s.parentSpanContext?.spanId, c.spanContext().spanId);
  assert.is(c.name, `${topic}/ctx`);
  assert.is(s.attributes['rpc.method'], 'ctx');
  assert.is(s.attributes['hermod.server'], 's1');
  // What the server's endpoint saw: the caller's context plus the W3C traceparent of the client span.
  assert.is(seen.user, 'u1');
  assert.is(seen.traceparent, `00-${c.spanContext().traceId}-${c.spanContext().spanId}-01`);
}

t('a client span and a server span share one trace over memory', async (ctx) => {
  await oneTrace(ctx, 'memory://tracing-1', 'tr1');
});

t('a client span and a server span share one trace through the embedded router', async (ctx) => {
  ctx.router = new Router({ port: 0 });
  const port = await ctx.router.start();
  await oneTrace(ctx, `amqp://127.0.0.1:${port}/`, 'tr2');
});

t('a failing call marks both spans as errors; a cast is a producer/consumer pair', async (ctx) => {
  const client = await pair(ctx, 'memory://tracing-3', 'tr3');
  await rejects(client.call({}, 'fail', { message: 'nope' }), 'HERMOD_ERR_REMOTE');
  await client.cast({}, 'bump', { seq: 1 });
  await until(() => ctx.exporter.getFinishedSpans().length === 4, 'four spans');
  const spans = ctx.exporter.getFinishedSpans();
  const failed = spans.filter((s) => s.name === 'tr3/fail');
  assert.is(failed.length, 2);
  assert.ok(failed.every((s) => s.status.code === SpanStatusCode.ERROR));
  const cast = spans.filter((s) => s.name === 'tr3/bump');
  assert.equal(cast.map((s) => s.kind).sort(), [SpanKind.PRODUCER, SpanKind.CONSUMER].sort());
  assert.is(cast[0]!.spanContext().traceId, cast[1]!.spanContext().traceId);
});

t("a peer's long method name is cut in span names, attributes and the recorded exception", async (ctx) => {
  const client = await pair(ctx, 'memory://tracing-long', 'trl');
  const method = `m${'x'.repeat(99_999)}`;
  await rejects(client.call({}, method), 'HERMOD_ERR_NO_SUCH_METHOD');
  await until(() => ctx.exporter.getFinishedSpans().length === 2, 'a client and a server span');
  const cut = `${method.slice(0, 200)}…[100000 chars]`;
  for (const span of ctx.exporter.getFinishedSpans()) {
    // Before: the whole name, in the span's name, its rpc.method and the exception's message and stack.
    assert.is(span.name, `trl/${cut}`);
    assert.is(span.attributes['rpc.method'], cut);
    assert.ok(span.status.code === SpanStatusCode.ERROR && span.status.message!.length <= 4200, `status ${span.status.message?.length}`);
    const size = JSON.stringify(span.events).length;
    assert.ok(size < 10_000, `exception events of ${size} bytes`);
    assert.is(span.events[0]?.attributes?.['exception.type'], 'HERMOD_ERR_NO_SUCH_METHOD');
  }
});

t('a traceparent already in the context is the parent; a malformed one is replaced', async (ctx) => {
  const client = await pair(ctx, 'memory://tracing-4', 'tr4');
  const parent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const seen = (await client.call({ traceparent: parent, tracestate: 'vendor=x' }, 'ctx')) as Context;
  assert.match(String(seen.traceparent), /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
  assert.is.not(seen.traceparent, parent);
  assert.is(seen.tracestate, 'vendor=x');
  const bad = (await client.call({ traceparent: 'ff-zz' }, 'ctx')) as Context;
  assert.ok(extractTraceContext(bad), `replaced by a valid traceparent, got ${bad.traceparent}`);
});

t('no tracer registered: nothing added to the context, no spans', async (ctx) => {
  trace.disable();
  const client = await pair(ctx, 'memory://tracing-5', 'tr5');
  const seen = (await client.call({ a: 1 }, 'ctx')) as Context;
  assert.equal(seen, { a: 1 });
  assert.is(ctx.exporter.getFinishedSpans().length, 0);
});

t('extractTraceContext follows W3C: version ff, zero ids, extra fields on version 00 are refused', () => {
  const ok = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  assert.ok(extractTraceContext({ traceparent: ok }));
  assert.ok(extractTraceContext({ traceparent: '01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-later' }));
  for (const bad of [
    'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    '00-00000000000000000000000000000000-b7ad6b7169203331-01',
    '00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01',
    `${ok}-extra`,
    '00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01',
    42,
  ]) {
    assert.is(extractTraceContext({ traceparent: bad }), undefined, String(bad));
  }
});

t('the registry key hermod reads is where the installed API keeps a registered provider', () => {
  // before.each registered a provider: a major upgrade of the API moves it, and this fails.
  const registry = (globalThis as Record<symbol, { trace?: unknown } | undefined>)[OTEL_GLOBAL];
  assert.ok(registry?.trace, `nothing under ${String(OTEL_GLOBAL)}`);
});

t('a process that registers no tracer never loads the OpenTelemetry API', () => {
  // Calls and serves over memory:// in a fresh process whose ESM resolver refuses the API, then
  // lists the CommonJS modules loaded (hermod's lazy load is a require).
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
  const refuse = `export async function resolve(s, c, next) { if (s.startsWith('@opentelemetry/')) throw new Error('imported ' + s); return next(s, c); }`;
  const script = `
    const { createRequire, register } = await import('node:module');
    register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(refuse)}`)});
    const h = await import(${JSON.stringify(path.join(root, 'dist/src/index.js'))});
    const tr = await h.getTransport('memory://no-otel', { config: h.defaultConfig() });
    const server = new h.RPCServer(tr, new h.Target({ topic: 'n', server: 's' }), [{ echo: (_c, a) => a }]);
    await server.start();
    const r = await new h.RPCClient(tr, new h.Target({ topic: 'n' })).call({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }, 'echo', { v: 1 });
    await server.stop(); await server.wait(1000); await tr.close();
    const req = createRequire(${JSON.stringify(path.join(root, 'package.json'))});
    console.log(JSON.stringify({ r, otel: Object.keys(req.cache).filter((k) => k.includes('@opentelemetry')).length }));
  `;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  assert.is(run.status, 0, run.stderr);
  assert.equal(JSON.parse(run.stdout), { r: { v: 1 }, otel: 0 });
});

t('a provider registered where hermod cannot load the API: calls go on untraced, with one warning', () => {
  // As in a bundle shipped without node_modules: the registry says "traced", the require fails.
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
  const script = `
    const Module = (await import('node:module')).default;
    const resolve = Module._resolveFilename;
    Module._resolveFilename = function (request, ...rest) {
      if (request === '@opentelemetry/api') throw Object.assign(new Error('Cannot find module ' + request), { code: 'MODULE_NOT_FOUND' });
      return resolve.call(this, request, ...rest);
    };
    globalThis[Symbol.for('opentelemetry.js.api.1')] = { version: '1.9.1', trace: {} };
    const warnings = [];
    process.on('warning', (w) => warnings.push(w.name + ': ' + w.message));
    const h = await import(${JSON.stringify(path.join(root, 'dist/src/index.js'))});
    const tr = await h.getTransport('memory://bundled', { config: h.defaultConfig() });
    const server = new h.RPCServer(tr, new h.Target({ topic: 'b', server: 's' }), [{ echo: (_c, a) => a }]);
    await server.start();
    const client = new h.RPCClient(tr, new h.Target({ topic: 'b' }));
    const r = [await client.call({}, 'echo', { v: 1 }), await client.call({}, 'echo', { v: 2 })];
    await server.stop(); await server.wait(1000); await tr.close();
    await new Promise((ok) => setImmediate(ok));
    console.log(JSON.stringify({ r, warnings }));
  `;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  assert.is(run.status, 0, run.stderr);
  const out = JSON.parse(run.stdout) as { r: unknown[]; warnings: string[] };
  assert.equal(out.r, [{ v: 1 }, { v: 2 }]);
  assert.is(out.warnings.length, 1, out.warnings.join('\n'));
  assert.match(out.warnings[0]!, /^HermodWarning: a tracer provider is registered but hermod cannot load @opentelemetry\/api/);
});

t.run();
