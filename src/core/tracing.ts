import { createRequire } from 'node:module';
import type * as OtelApi from '@opentelemetry/api';
import type { Context as OtelContext, Span, SpanContext, Tracer } from '@opentelemetry/api';
import { textOf } from './errors.js';
import { bounded, MAX_ERROR_TEXT } from './peer-names.js';
import type { Context } from './serializer.js';

/**
 * W3C trace context in the RPC context, and spans around client calls and server dispatch
 * through `@opentelemetry/api`. The keys are `traceparent` and `tracestate`, which the rabbit
 * wire carries as `_context_traceparent` / `_context_tracestate`; oslo peers pass unknown
 * context keys through. Nothing happens unless the application registered a tracer provider
 * (an OpenTelemetry SDK): then the cost is one global lookup per call.
 *
 * traceparent is parsed and formatted here (a few lines of the W3C spec) rather than through
 * the application's propagator: the wire field must be W3C whatever propagator the application
 * uses, and `@opentelemetry/core` would be a second runtime dependency for it.
 */

/** What a span is about: the event fields of the call or request. */
export interface SpanInfo {
  kind: 'call' | 'cast';
  method: string;
  topic?: string;
  server?: string;
  exchange?: string;
  namespace?: string;
  version?: string;
  fanout?: boolean;
}

/** A client span in progress: send `ctx` (the context with traceparent), then `end()`. */
export interface ClientSpan {
  readonly ctx: Context;
  end(error?: Error): void;
}

const require = createRequire(import.meta.url);

/**
 * Where every copy of `@opentelemetry/api` 1.x keeps what an application registered
 * (`trace.setGlobalTracerProvider` puts its provider under `trace`). Reading it tells whether
 * anyone registered a tracer without loading the API: the package and its 44 modules cost a
 * process about 6 MB of RSS, which a server that traces nothing should not pay. A test checks
 * the key against the installed API, so a major upgrade fails there instead of tracing nothing.
 */
export const OTEL_GLOBAL = Symbol.for('opentelemetry.js.api.1');

/** The API once loaded; null when a provider was registered but the API could not be loaded. */
let loaded: typeof OtelApi | null | undefined;

/** The OpenTelemetry API, loaded on first use. */
function api(): typeof OtelApi {
  loaded ??= require('@opentelemetry/api') as typeof OtelApi;
  return loaded;
}

/** The API once an application has registered a tracer provider; undefined (and nothing loaded) before. */
function registeredApi(): typeof OtelApi | undefined {
  if (loaded !== undefined) return loaded ?? undefined;
  const registry = (globalThis as Record<symbol, { trace?: unknown } | undefined>)[OTEL_GLOBAL];
  if (registry?.trace === undefined) return undefined;
  try {
    return api();
  } catch (err) {
    // A bundle shipped without node_modules: the require is invisible to bundlers. Calls go on
    // untraced, said once, rather than each failing.
    loaded = null;
    process.emitWarning(
      `a tracer provider is registered but hermod cannot load @opentelemetry/api (${String(err)}): calls are not traced`,
      {
        type: 'HermodWarning',
      },
    );
    return undefined;
  }
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/s;
const MAX_TRACESTATE = 512;

/** The registered tracer, or undefined when the application registered none. */
function tracer(): Tracer | undefined {
  const otel = registeredApi();
  if (!otel) return undefined;
  const provider = otel.trace.getTracerProvider() as ReturnType<typeof otel.trace.getTracerProvider> & Partial<OtelApi.ProxyTracerProvider>;
  // Duck-typed: the provider may come from another copy of the API (a bundle, a nested
  // install), whose ProxyTracerProvider is not the class of the copy loaded here.
  if (typeof provider.getDelegateTracer === 'function') return provider.getDelegateTracer('hermod');
  return provider.getTracer('hermod');
}

/** The span context in `ctx.traceparent`/`tracestate`, or undefined when absent or malformed. */
export function extractTraceContext(ctx: Context): SpanContext | undefined {
  const tp = ctx.traceparent;
  if (typeof tp !== 'string' || tp.length > 512) return undefined;
  const m = TRACEPARENT.exec(tp.trim().toLowerCase());
  if (!m || m[1] === 'ff' || (m[1] === '00' && m[5] !== undefined)) return undefined;
  const sc: SpanContext = { traceId: m[2]!, spanId: m[3]!, traceFlags: Number.parseInt(m[4]!, 16) & 1, isRemote: true };
  const otel = api();
  if (!otel.isSpanContextValid(sc)) return undefined;
  const ts = ctx.tracestate;
  if (typeof ts === 'string' && ts.length > 0 && ts.length <= MAX_TRACESTATE) sc.traceState = otel.createTraceState(ts);
  return sc;
}

/** `ctx` plus the traceparent (and tracestate) of `sc`. */
export function injectTraceContext(ctx: Context, sc: SpanContext): Context {
  const out: Context = { ...ctx, traceparent: `00-${sc.traceId}-${sc.spanId}-0${sc.traceFlags & 1}` };
  const ts = sc.traceState?.serialize();
  if (ts) out.tracestate = ts;
  else delete out.tracestate;
  return out;
}

/**
 * The span's attributes. Names a caller chose (the method, namespace and version a peer sent, a
 * topic or server through the gateway) are cut to {@link bounded}: a span holds them until
 * exported, and 256 KiB names cost about 0.5 MB per span.
 */
function attributes(info: SpanInfo): Record<string, string | boolean> {
  const a: Record<string, string | boolean> = {
    'rpc.system': 'oslo_messaging',
    'rpc.method': bounded(info.method),
    'hermod.kind': info.kind,
  };
  if (info.topic !== undefined) {
    a['rpc.service'] = bounded(info.topic);
    a['messaging.destination.name'] = a['rpc.service'];
  }
  if (info.server !== undefined) a['hermod.server'] = bounded(info.server);
  if (info.exchange !== undefined) a['hermod.exchange'] = bounded(info.exchange);
  if (info.namespace !== undefined) a['hermod.namespace'] = bounded(info.namespace);
  if (info.version !== undefined) a['hermod.version'] = bounded(info.version);
  if (info.fanout) a['hermod.fanout'] = true;
  return a;
}

function spanName(i: SpanInfo): string {
  return `${bounded(i.topic ?? '')}/${bounded(i.method)}`;
}

function finish(span: Span, error: unknown): void {
  if (error !== undefined) {
    const err = error instanceof Error ? error : new Error(textOf(error));
    const message = bounded(err.message, MAX_ERROR_TEXT);
    const code = (err as { code?: unknown }).code;
    span.recordException({
      name: err.name,
      message,
      ...(err.stack === undefined ? {} : { stack: bounded(err.stack, MAX_ERROR_TEXT) }),
      ...(typeof code === 'string' || typeof code === 'number' ? { code } : {}),
    });
    span.setStatus({ code: api().SpanStatusCode.ERROR, message });
  }
  span.end();
}

/**
 * Starts the span of a call or cast, child of the active span or else of the traceparent the
 * context already carries; undefined (and nothing done) when no tracer is registered.
 */
export function clientSpan(info: () => SpanInfo, wireCtx: Context): ClientSpan | undefined {
  const t = tracer();
  if (!t) return undefined;
  const { context, trace, SpanKind, isSpanContextValid } = api();
  const i = info();
  let parent: OtelContext = context.active();
  if (!trace.getSpanContext(parent)) {
    const remote = extractTraceContext(wireCtx);
    if (remote) parent = trace.setSpanContext(parent, remote);
  }
  const span = t.startSpan(
    spanName(i),
    { kind: i.kind === 'call' ? SpanKind.CLIENT : SpanKind.PRODUCER, attributes: attributes(i) },
    parent,
  );
  const sc = span.spanContext();
  return {
    ctx: isSpanContextValid(sc) ? injectTraceContext(wireCtx, sc) : wireCtx,
    end: (error) => finish(span, error),
  };
}

/**
 * Runs a server's dispatch of one request inside its span (child of the caller's traceparent),
 * active for the endpoint so its own calls nest under it; just runs `fn` when no tracer is
 * registered.
 */
export function serverSpan<T>(ctx: Context, info: () => SpanInfo, fn: () => Promise<T>): Promise<T> {
  const t = tracer();
  if (!t) return fn();
  const { context, trace, ROOT_CONTEXT, SpanKind } = api();
  const i = info();
  const remote = extractTraceContext(ctx);
  const parent = remote ? trace.setSpanContext(ROOT_CONTEXT, remote) : ROOT_CONTEXT;
  const span = t.startSpan(
    spanName(i),
    { kind: i.kind === 'call' ? SpanKind.SERVER : SpanKind.CONSUMER, attributes: attributes(i) },
    parent,
  );
  return context.with(trace.setSpan(parent, span), fn).then(
    (result) => {
      finish(span, undefined);
      return result;
    },
    (err: unknown) => {
      finish(span, err);
      throw err;
    },
  );
}
