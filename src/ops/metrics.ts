import cluster from 'node:cluster';
import diagnostics_channel from 'node:diagnostics_channel';
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type {
  CallEvent,
  CallStartEvent,
  ConnectionStateEvent,
  InvalidMessageEvent,
  NotificationEvent,
  ServerRequestEvent,
  ServerRequestStartEvent,
} from '../core/diagnostics.js';
import { InvalidArgument } from '../core/errors.js';
import { type MetricsServer, serveMetrics } from './metrics-http.js';
import { LabelCap, OTHER } from './metrics-labels.js';

export { type MetricsServer, type ServeMetricsOptions, serveClusterMetrics, serveMetrics } from './metrics-http.js';

/** Options of {@link Metrics}. */
export interface MetricsOptions {
  /** Registry to fill. @default a registry of its own */
  registry?: Registry;
  /**
   * Distinct namespace/version/method combinations kept per side (server, client); later
   * ones are counted under `__other__`. Method names come from peers: this bounds the series
   * a caller can create. @default 500
   */
  maxMethods?: number;
  /** Distinct `exception` label values kept per side. @default 100 */
  maxExceptions?: number;
  /** Histogram buckets in seconds. @default prom-client's (as oslo.metrics: 5 ms … 10 s) */
  buckets?: number[];
}

const SERVER_LABELS = ['exchange', 'topic', 'server', 'namespace', 'version', 'method'] as const;
const CLIENT_LABELS = ['call_type', 'exchange', 'topic', 'namespace', 'version', 'server', 'fanout'] as const;
const PRIORITIES = new Set(['audit', 'debug', 'info', 'warn', 'error', 'critical', 'sample']);

type Labels = Record<string, string>;
interface Series {
  start: Counter.Internal;
  end: Counter.Internal;
  seconds: Histogram.Internal<string>;
  labels: Labels;
  inFlight: number;
}

/** Workers whose metrics the primary aggregates ({@link serveClusterMetrics}). */
const clusterRegistries = new Set<Registry>();
let clusterListening = false;

/**
 * Prometheus metrics of everything hermod does in this process, built only from its
 * `node:diagnostics_channel` events: oslo.metrics' RPC server and client series (same names
 * and labels, minus `endpoint` and `process`), plus in-flight calls, outcomes, undeliverable
 * messages, connection state, reconnects, invalid messages and notifications.
 *
 * `start()` subscribes, `stop()` unsubscribes (series keep their values), `close()` also
 * empties the registry. Nothing is counted while stopped, and nothing costs anything then:
 * the events are not even built without a subscriber.
 */
export class Metrics {
  readonly registry: Registry;
  private readonly subscriptions: Array<[string, (message: unknown) => void]>;
  private running = false;
  private readonly serverSeries: LabelCap<Series>;
  private readonly clientSeries: LabelCap<Series>;
  private readonly serverExceptions: LabelCap<string>;
  private readonly clientExceptions: LabelCap<string>;

  private readonly m: ReturnType<typeof defineMetrics>;

  constructor(options: MetricsOptions = {}) {
    this.registry = options.registry ?? new Registry();
    this.m = defineMetrics(this.registry, options.buckets);
    const maxMethods = options.maxMethods ?? 500;
    const maxExceptions = options.maxExceptions ?? 100;
    this.serverSeries = new LabelCap(maxMethods);
    this.clientSeries = new LabelCap(maxMethods);
    this.serverExceptions = new LabelCap(maxExceptions);
    this.clientExceptions = new LabelCap(maxExceptions);
    this.subscriptions = [
      ['hermod:rpc:server:start', (e) => this.onServerStart(e as ServerRequestStartEvent)],
      ['hermod:rpc:server:request', (e) => this.onServerEnd(e as ServerRequestEvent)],
      ['hermod:rpc:client:start', (e) => this.onClientStart(e as CallStartEvent)],
      ['hermod:rpc:client:call', (e) => this.onClientEnd(e as CallEvent)],
      ['hermod:connection:state', (e) => this.onConnection(e as ConnectionStateEvent)],
      ['hermod:message:invalid', (e) => this.m.invalid.inc({ where: (e as InvalidMessageEvent).where })],
      ['hermod:notify:listener', (e) => this.onNotification(e as NotificationEvent)],
    ];
  }

  /** Subscribes to hermod's events; idempotent. In a cluster worker, also answers the primary's scrapes. */
  start(): void {
    if (this.running) return;
    this.running = true;
    for (const [name, fn] of this.subscriptions) diagnostics_channel.subscribe(name, fn);
    if (cluster.isWorker) {
      clusterRegistries.add(this.registry);
      // prom-client answers the primary from the registries set here; its listener lives as
      // long as the worker (prom-client cannot remove it), and answers [] once all stopped.
      if (!clusterListening) {
        new AggregatorRegistry();
        clusterListening = true;
      }
      AggregatorRegistry.setRegistries([...clusterRegistries]);
    }
  }

  /** Unsubscribes; the series keep their values. */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    for (const [name, fn] of this.subscriptions) diagnostics_channel.unsubscribe(name, fn);
    if (clusterRegistries.delete(this.registry)) AggregatorRegistry.setRegistries([...clusterRegistries]);
  }

  /** Stops and removes every series from the registry. */
  close(): void {
    this.stop();
    this.registry.clear();
  }

  /** The Prometheus text exposition of the registry. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** The content type of {@link text}. */
  get contentType(): string {
    return this.registry.contentType;
  }

  private server(e: ServerRequestStartEvent): Series {
    const own = `${e.exchange}\0${e.topic}\0${e.server}`;
    return this.serverSeries.get(`${own}\0${e.namespace ?? ''}\0${e.version ?? ''}\0${e.method}`, own, (admitted) => {
      const labels: Labels = {
        exchange: e.exchange ?? '',
        topic: e.topic,
        server: e.server,
        namespace: admitted ? (e.namespace ?? '') : OTHER,
        version: admitted ? (e.version ?? '') : OTHER,
        method: admitted ? e.method : OTHER,
      };
      return this.series(labels, this.m.serverStart, this.m.serverEnd, this.m.serverSeconds);
    });
  }

  private client(e: CallStartEvent): Series {
    const own = `${e.kind}\0${e.exchange}\0${e.topic}\0${e.server ?? ''}\0${e.fanout ? 1 : 0}`;
    return this.clientSeries.get(`${own}\0${e.namespace ?? ''}\0${e.version ?? ''}\0${e.method}`, own, (admitted) => {
      const labels: Labels = {
        call_type: e.kind,
        exchange: e.exchange ?? '',
        topic: e.topic,
        namespace: admitted ? (e.namespace ?? '') : OTHER,
        version: admitted ? (e.version ?? '') : OTHER,
        server: e.server ?? '',
        fanout: e.fanout ? 'True' : 'False',
      };
      // Method is not an oslo.metrics client label (oslo groups by target); hermod adds it.
      labels.method = admitted ? e.method : OTHER;
      return this.series(labels, this.m.clientStart, this.m.clientEnd, this.m.clientSeconds);
    });
  }

  private series(labels: Labels, start: Counter, end: Counter, seconds: Histogram): Series {
    return { start: start.labels(labels), end: end.labels(labels), seconds: seconds.labels(labels), labels, inFlight: 0 };
  }

  private onServerStart(e: ServerRequestStartEvent): void {
    const s = this.server(e);
    s.start.inc();
    s.inFlight++;
    this.m.serverInFlight.inc({ topic: e.topic, server: e.server });
  }

  private onServerEnd(e: ServerRequestEvent): void {
    const s = this.server(e);
    this.m.serverOutcome.inc({ exchange: e.exchange ?? '', topic: e.topic, server: e.server, outcome: e.outcome });
    if (e.error && isUndeliverable(e.error)) this.m.undeliverable.inc({ side: 'server', topic: e.topic });
    // A request that never started (malformed) or started before we subscribed is not in flight here.
    if (!e.started || s.inFlight === 0) return;
    s.inFlight--;
    this.m.serverInFlight.dec({ topic: e.topic, server: e.server });
    s.end.inc();
    s.seconds.observe(e.durationMs / 1000);
    if (e.error) {
      const exception = this.serverExceptions.get(e.error.name, '', (ok) => (ok ? e.error!.name : OTHER));
      this.m.serverException.inc({ ...s.labels, exception });
    }
  }

  private onClientStart(e: CallStartEvent): void {
    const s = this.client(e);
    s.start.inc();
    s.inFlight++;
    this.m.clientInFlight.inc({ call_type: e.kind, topic: e.topic });
  }

  private onClientEnd(e: CallEvent): void {
    const s = this.client(e);
    if (e.error && isUndeliverable(e.error)) this.m.undeliverable.inc({ side: 'client', topic: e.topic });
    if (s.inFlight === 0) return;
    s.inFlight--;
    this.m.clientInFlight.dec({ call_type: e.kind, topic: e.topic });
    s.end.inc();
    s.seconds.observe(e.durationMs / 1000);
    if (e.error) {
      const name = exceptionName(e.error);
      const exception = this.clientExceptions.get(name, '', (ok) => (ok ? name : OTHER));
      this.m.clientException.inc({ ...s.labels, exception });
    }
  }

  private onConnection(e: ConnectionStateEvent): void {
    const labels = { driver: e.driver, host: e.host };
    if (e.state === 'connected') this.m.connectionUp.set(labels, 1);
    else if (e.state === 'disconnected') this.m.connectionUp.set(labels, 0);
    else if (e.state === 'reconnecting') this.m.reconnects.inc({ driver: e.driver });
    else if (e.state === 'blocked') this.m.blocked.set(labels, 1);
    else if (e.state === 'unblocked') this.m.blocked.set(labels, 0);
  }

  private onNotification(e: NotificationEvent): void {
    const priority = e.priority && PRIORITIES.has(e.priority.toLowerCase()) ? e.priority.toLowerCase() : OTHER;
    this.m.notifications.inc({ priority, outcome: e.outcome });
  }
}

function isUndeliverable(err: Error): boolean {
  return (err as { code?: unknown }).code === 'HERMOD_ERR_UNDELIVERABLE';
}

/** A remote error is labelled by the remote class (oslo labels by exception class). */
function exceptionName(err: Error): string {
  const remote = (err as { excType?: unknown }).excType;
  return typeof remote === 'string' && remote.length > 0 ? remote : err.name;
}

function defineMetrics(registry: Registry, buckets: number[] | undefined) {
  const registers = [registry];
  const counter = (name: string, help: string, labelNames: readonly string[]) => new Counter({ name, help, labelNames, registers });
  const histogram = (name: string, help: string, labelNames: readonly string[]) =>
    new Histogram({ name, help, labelNames, registers, ...(buckets ? { buckets } : {}) });
  const gauge = (name: string, help: string, labelNames: readonly string[]) => new Gauge({ name, help, labelNames, registers });
  const client = [...CLIENT_LABELS, 'method'];
  return {
    serverStart: counter(
      'oslo_messaging_rpc_server_invocation_start_total',
      'Requests a server started on (parsed; malformed ones are not counted)',
      SERVER_LABELS,
    ),
    serverEnd: counter('oslo_messaging_rpc_server_invocation_end_total', 'Requests a server finished, either way', SERVER_LABELS),
    serverException: counter('oslo_messaging_rpc_server_exception_total', 'Requests that ended in an exception, by exception class', [
      ...SERVER_LABELS,
      'exception',
    ]),
    serverSeconds: histogram('oslo_messaging_rpc_server_processing_second', 'Server processing time in seconds', SERVER_LABELS),
    serverInFlight: gauge('hermod_rpc_server_in_flight', 'Requests running on servers now', ['topic', 'server']),
    serverOutcome: counter('hermod_rpc_server_requests_total', 'Requests a server finished, by outcome (ok, error, invalid, aborted)', [
      'exchange',
      'topic',
      'server',
      'outcome',
    ]),
    clientStart: counter('oslo_messaging_rpc_client_invocation_start_total', 'Calls and casts started', client),
    clientEnd: counter('oslo_messaging_rpc_client_invocation_end_total', 'Calls and casts finished, either way', client),
    clientException: counter('oslo_messaging_rpc_client_exception_total', 'Calls and casts that failed, by exception class', [
      ...client,
      'exception',
    ]),
    clientSeconds: histogram('oslo_messaging_rpc_client_processing_second', 'Call and cast time in seconds', client),
    clientInFlight: gauge('hermod_rpc_client_in_flight', 'Calls and casts in flight now', ['call_type', 'topic']),
    undeliverable: counter(
      'hermod_rpc_undeliverable_total',
      'Messages nobody could take: calls with no queue bound (client), replies whose caller is gone (server)',
      ['side', 'topic'],
    ),
    connectionUp: gauge('hermod_connection_up', '1 while the connection to this host is up, 0 after it went down', ['driver', 'host']),
    blocked: gauge('hermod_connection_blocked', '1 while the broker blocks publishing on this connection', ['driver', 'host']),
    reconnects: counter('hermod_connection_reconnects_total', 'Reconnect attempts', ['driver']),
    invalid: counter('hermod_messages_invalid_total', 'Messages dropped because they could not be decoded', ['where']),
    notifications: counter(
      'hermod_notifications_total',
      'Notifications seen by listeners: handled, requeue, dropped, error (an endpoint threw)',
      ['priority', 'outcome'],
    ),
  };
}

/**
 * What `--metrics-port [host:]port` does in the CLIs: starts a {@link Metrics} and serves it
 * (host 127.0.0.1 unless given, e.g. `0.0.0.0:9100` for a scraper on another host). `close()`
 * stops both.
 */
export async function exposeMetrics(spec: string): Promise<MetricsServer> {
  const m = /^(?:(.*):)?(\d{1,5})$/.exec(spec.trim());
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port > 65535) throw new InvalidArgument(`--metrics-port wants [host:]port, got ${JSON.stringify(spec)}`);
  const metrics = new Metrics();
  metrics.start();
  const host = m[1]?.replace(/^\[(.*)\]$/, '$1');
  try {
    const server = await serveMetrics(metrics, { port, ...(host ? { host } : {}) });
    return {
      port: server.port,
      url: server.url,
      close: async () => {
        await server.close();
        metrics.close();
      },
    };
  } catch (err) {
    metrics.close();
    throw err;
  }
}
