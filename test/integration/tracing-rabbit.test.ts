// Tracing over a real RabbitMQ node: a hermod client and server share one trace; the message on
// the wire carries `_context_traceparent` (read with plain amqplib); a Python oslo.messaging
// server receives the traceparent and tracestate untouched in its ctxt.
import { SpanKind, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import amqplib from 'amqplib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type Context, defaultConfig, getTransport, RPCClient, RPCServer, Target, type Transport } from '../../src/index.js';
import { until } from '../support/assert.js';
import { Recorder } from '../support/endpoints.js';
import type { Broker } from '../support/interop.js';
import { OsloPeer, osloAvailable } from '../support/oslo.js';
import { rabbitBroker } from '../support/oslo-rabbit.js';

interface Ctx {
  broker: Broker;
  exporter: InMemorySpanExporter;
  transport: Transport;
  servers: RPCServer[];
  py?: OsloPeer;
}
const t = suite<Ctx>('tracing over RabbitMQ and through an oslo peer', {} as Ctx);

t.before(async (ctx) => {
  ctx.broker = await rabbitBroker('tracing');
});
t.before.each(async (ctx) => {
  ctx.exporter = new InMemorySpanExporter();
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(ctx.exporter)] }));
  ctx.transport = await getTransport(ctx.broker.url, { config: defaultConfig() });
  ctx.servers = [];
});
t.after.each(async (ctx) => {
  trace.disable();
  for (const s of ctx.servers) {
    await s.stop();
    await s.wait(1000);
  }
  await ctx.py?.kill();
  ctx.py = undefined;
  await ctx.transport.close();
});
t.after(async (ctx) => {
  await ctx.broker.stop();
});

const traceparentOf = (span: { spanContext(): { traceId: string; spanId: string } }) =>
  `00-${span.spanContext().traceId}-${span.spanContext().spanId}-01`;

t('a hermod client and server on RabbitMQ share one trace; the wire carries _context_traceparent', async (ctx) => {
  const topic = `trace-${process.pid}`;
  const server = new RPCServer(ctx.transport, new Target({ topic, server: 's1' }), [new Recorder('s1')]);
  await server.start();
  ctx.servers.push(server);
  const client = new RPCClient(ctx.transport, new Target({ topic }), { timeout: 5000 });
  const seen = (await client.call({ user: 'u1' }, 'ctx')) as Context;
  await until(() => ctx.exporter.getFinishedSpans().length === 2, 'a client and a server span');
  const spans = ctx.exporter.getFinishedSpans();
  const c = spans.find((s) => s.kind === SpanKind.CLIENT)!;
  const s = spans.find((x) => x.kind === SpanKind.SERVER)!;
  assert.ok(c && s, `kinds ${spans.map((x) => x.kind)}`);
  assert.is(s.spanContext().traceId, c.spanContext().traceId);
  assert.is(s.parentSpanContext?.spanId, c.spanContext().spanId);
  assert.is(seen.traceparent, traceparentOf(c));

  // The raw message: a queue of our own bound to the topic's routing key takes a copy of a cast.
  const conn = await amqplib.connect(ctx.broker.url.replace(/^rabbit:/, 'amqp:'));
  try {
    const ch = await conn.createChannel();
    const q = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(q.queue, 'openstack', topic);
    ctx.exporter.reset();
    await client.cast({ request_id: 'req-wire' }, 'ctx');
    // One get at a time: gets from an interval overlapped on a loaded machine, and a late empty
    // answer overwrote the one that had taken the message (noAck), which was then lost.
    let raw: amqplib.GetMessage | false = false;
    const end = Date.now() + 5000;
    while (raw === false && Date.now() < end) {
      raw = await ch.get(q.queue, { noAck: true });
      if (raw === false) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(raw, 'the cast in our queue');
    const envelope = JSON.parse((raw as unknown as amqplib.GetMessage).content.toString()) as { 'oslo.message': string };
    const message = JSON.parse(envelope['oslo.message']) as Record<string, unknown>;
    await until(() => ctx.exporter.getFinishedSpans().some((x) => x.kind === SpanKind.PRODUCER), 'the cast span');
    const producer = ctx.exporter.getFinishedSpans().find((x) => x.kind === SpanKind.PRODUCER)!;
    assert.is(message._context_traceparent, traceparentOf(producer));
    assert.is(message._context_request_id, 'req-wire');
  } finally {
    await conn.close();
  }
});

t('a hermod client calling a Python oslo server: its ctxt holds traceparent and tracestate untouched', async (ctx) => {
  if (!osloAvailable()) throw new Error('python3-oslo.messaging is not installed (.ci/run installs it)');
  const topic = `trace-py-${process.pid}`;
  ctx.py = await OsloPeer.start('server', { url: ctx.broker.url, topic, server: 'p1' });
  const client = new RPCClient(ctx.transport, new Target({ topic }), { timeout: 10_000 });
  // The caller's own trace (an upstream service's): the client span is its child, tracestate kept.
  const parent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const seen = (await client.call({ user: 'u1', traceparent: parent, tracestate: 'vendor=x,other=y' }, 'ctx')) as Record<string, unknown>;
  await until(() => ctx.exporter.getFinishedSpans().length === 1, 'the client span');
  const c = ctx.exporter.getFinishedSpans()[0]!;
  assert.is(c.kind, SpanKind.CLIENT);
  assert.is(c.spanContext().traceId, '0af7651916cd43dd8448eb211c80319c');
  assert.is(c.parentSpanContext?.spanId, 'b7ad6b7169203331');
  // oslo returns the ctxt it was handed: the rabbit driver stripped `_context_` and kept the rest.
  assert.is(seen.traceparent, traceparentOf(c));
  assert.is(seen.tracestate, 'vendor=x,other=y');
  assert.is(seen.user, 'u1');

  // A cast too: the Python server prints the ctxt it received.
  ctx.exporter.reset();
  await client.cast({ request_id: 'req-py' }, 'bump', { seq: 1 });
  const bump = await ctx.py.waitFor((e) => e.event === 'bump' && e.seq === 1, 10_000, 'the bump cast');
  await until(() => ctx.exporter.getFinishedSpans().length === 1, 'the cast span');
  const producer = ctx.exporter.getFinishedSpans()[0]!;
  assert.equal(
    { traceparent: (bump.ctx as Context).traceparent, request_id: (bump.ctx as Context).request_id },
    { traceparent: traceparentOf(producer), request_id: 'req-py' },
  );
});

t.run();
