/// <reference types="node" preserve="true" />
// A package entry point: its .d.ts use Node's types (EventEmitter, Buffer, NodeJS.*), and from
// TypeScript 6 on an app loads no @types package it is not told about (`types` defaults to []);
// `preserve` keeps this line in the emitted .d.ts (TypeScript 5.5+ drops it otherwise).
import * as diagnostics_channel from 'node:diagnostics_channel';
import { Registry } from 'prom-client';
import type {
  CallEvent,
  CallStartEvent,
  ConnectionStateEvent,
  DuplicateMessageEvent,
  GatewayRefusedEvent,
  GatewayRequestEvent,
  InvalidMessageEvent,
  NotificationEvent,
  ServerRequestEvent,
  ServerRequestStartEvent,
} from '../core/diagnostics.js';
import { errorClassName, InvalidArgument } from '../core/errors.js';
import { shareWithPrimary, stopSharing } from './metrics-cluster.js';
import { type Cell, type HistogramCell, HistogramFamily, ValueFamily } from './metrics-family.js';
import { type MetricsServer, serveMetrics } from './metrics-http.js';
import { LabelCap, labelsFit, OTHER } from './metrics-labels.js';
import { registerProcessMetrics } from './metrics-process.js';

export { type MetricsServer, type ServeMetricsOptions, serveClusterMetrics, serveMetrics } from './metrics-http.js';
export { PROCESS_METRIC_NAMES } from './metrics-process.js';

/** Options of {@link Metrics}. */
export interface MetricsOptions {
  /** Registry to fill. @default a registry of its own */
  registry?: Registry;
  /**
   * Distinct namespace/version/method combinations kept per side (server, client; on the
   * client, with topic and server); later ones are counted under `__other__`. Method names come
   * from peers, targets from the gateway's HTTP clients: this bounds the series a caller can
   * create. @default 500
   */
  maxMethods?: number;
  /** Distinct `exception` label values kept per side. @default 100 */
  maxExceptions?: number;
  /** Histogram buckets in seconds. @default prom-client's (as oslo.metrics: 5 ms … 10 s) */
  buckets?: number[];
  /**
   * The process's own series, by prom-client's default names (`process_cpu_seconds_total`,
   * `process_resident_memory_bytes`, `nodejs_heap_size_used_bytes`, …), read when scraped.
   * @default true with a registry of its own; false with `registry` given, which may have
   * prom-client's `collectDefaultMetrics()` on it already
   */
  processMetrics?: boolean;
}

const PRIORITIES = new Set(['audit', 'debug', 'info', 'warn', 'error', 'critical', 'sample']);
const HTTP_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
/**
 * The receivers that drop copies by `_unique_id`. The event's `where` is a plain string on a
 * public channel, so anything else is folded rather than trusted to stay a short, fixed list.
 */
const DUPLICATE_WHERE = new Set(['rpc server', 'notification listener']);
/**
 * The `version` label of a requested version: `major.minor` as numbers (`01.00` and `1.000` are
 * `1.0`, `1.4.2` is `1.4`), as the dispatcher compares them. The spelling is the caller's, and
 * every spelling of a compatible version is answered: labelled as sent, a peer filled the
 * `maxMethods` budget with `1.00`, `01.0`, `1.000`, … of one real method, each a proven series,
 * and real methods called later were `__other__`. So the distinct labels of answered requests
 * are bounded by the versions the endpoints serve (same major, minor up to the served one).
 * The patch is dropped because it is not so bounded: any patch of a lower minor is compatible.
 * The endpoint's own version would be exact, but the request events do not carry it. Anything
 * else (refused by the dispatcher as not X.Y, and so folded by settle) is kept as sent.
 */
function versionLabel(version: string | undefined): string {
  if (version === undefined) return '';
  const m = /^(\d+)\.(\d+)(?:\.\d+)?$/.exec(version);
  return m ? `${Number(m[1])}.${Number(m[2])}` : version;
}

/** prom-client's (and Python prometheus_client's, so oslo.metrics') default buckets, in seconds. */
const DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

type Labels = Record<string, string>;
/** The cells of one server or client series, found once per distinct label set. */
interface Series {
  key: string;
  labels: Labels;
  start: Cell;
  end: Cell;
  seconds: HistogramCell;
  inFlightGauge: Cell;
  inFlight: number;
  /** The event fields it was made for: the next event with the same ones skips the lookup. */
  fields: readonly (string | undefined)[];
  /** Has its own method label (not {@link OTHER}). */
  admitted: boolean;
  /** Some request of it got an answer other than "no such method or version": it exists. */
  proven: boolean;
  /** The exception labels its unanswered ends (see {@link unanswered}) were counted under. */
  unanswered: Set<string> | undefined;
}

/**
 * Prometheus metrics of everything hermod does in this process, built only from its
 * `node:diagnostics_channel` events: oslo.metrics' RPC server and client series (same names
 * and labels, minus `endpoint` and `process`; the client side adds `method`), plus in-flight
 * calls, outcomes, undeliverable messages, connection state, reconnects, invalid and duplicate
 * messages, and notifications.
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
  private lastServer: Series | undefined;
  private lastClient: Series | undefined;
  /**
   * Admitted client series per topic label. A caller may choose the topic (the gateway's
   * mappingPolicy "any"), so the per-topic in-flight gauge and undeliverable counter of the
   * client side exist only while some admitted series has that topic.
   */
  private readonly clientTopics = new Map<string, number>();
  private readonly m: ReturnType<typeof defineMetrics>;

  constructor(options: MetricsOptions = {}) {
    this.registry = options.registry ?? new Registry();
    this.m = defineMetrics(this.registry, options.buckets ?? DEFAULT_BUCKETS);
    if (options.processMetrics ?? options.registry === undefined) registerProcessMetrics(this.registry);
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
      ['hermod:message:invalid', (e) => this.m.invalid.at({ where: (e as InvalidMessageEvent).where }).value++],
      ['hermod:message:duplicate', (e) => this.onDuplicate(e as DuplicateMessageEvent)],
      ['hermod:notify:listener', (e) => this.onNotification(e as NotificationEvent)],
      ['hermod:gateway:request', (e) => this.onGatewayRequest(e as GatewayRequestEvent)],
      ['hermod:gateway:refused', (e) => this.m.gatewayRefused.at({ limit: (e as GatewayRefusedEvent).limit }).value++],
    ];
  }

  /** Subscribes to hermod's events; idempotent. In a cluster worker, also answers the primary's scrapes. */
  start(): void {
    if (this.running) return;
    this.running = true;
    for (const [name, fn] of this.subscriptions) diagnostics_channel.subscribe(name, fn);
    shareWithPrimary(this.registry);
  }

  /** Unsubscribes; the series keep their values. */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    for (const [name, fn] of this.subscriptions) diagnostics_channel.unsubscribe(name, fn);
    stopSharing(this.registry);
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

  /**
   * Requests in flight that started under {@link OTHER} (the budget was full) though their
   * labels fit, by their own key: their end must find the series their start counted in. A slot
   * freed meanwhile (see settle) would otherwise admit their key at the end, as a new series
   * with nothing in flight: the end went uncounted, the gauge stayed up, the slot stayed taken.
   */
  private readonly strays = { server: new Map<string, number>(), client: new Map<string, number>() };

  private serverKey(e: ServerRequestStartEvent): string {
    return `${e.exchange}\0${e.topic}\0${e.server}\0${e.namespace ?? ''}\0${versionLabel(e.version)}\0${e.method}`;
  }

  private clientKey(e: CallStartEvent): string {
    return `${e.kind}\0${e.exchange}\0${e.topic}\0${e.server ?? ''}\0${e.fanout ? 1 : 0}\0${e.namespace ?? ''}\0${versionLabel(e.version)}\0${e.method}`;
  }

  /** At a start: remember a request counted under OTHER whose own key could have had a series. */
  private stray(side: 'server' | 'client', e: ServerRequestStartEvent | CallStartEvent): void {
    if (!labelsFit(e.method, e.namespace, versionLabel(e.version))) return;
    const key = side === 'server' ? this.serverKey(e as ServerRequestStartEvent) : this.clientKey(e as CallStartEvent);
    const strays = this.strays[side];
    strays.set(key, (strays.get(key) ?? 0) + 1);
  }

  /** At an end: the series its start counted in. */
  private ended(side: 'server' | 'client', e: ServerRequestEvent | CallEvent): Series {
    const strays = this.strays[side];
    if (strays.size > 0) {
      const key = side === 'server' ? this.serverKey(e as ServerRequestEvent) : this.clientKey(e as CallEvent);
      const n = strays.get(key);
      if (n !== undefined) {
        if (n === 1) strays.delete(key);
        else strays.set(key, n - 1);
        return side === 'server' ? this.server(e as ServerRequestEvent, true) : this.client(e as CallEvent, true);
      }
    }
    return side === 'server' ? this.server(e as ServerRequestEvent) : this.client(e as CallEvent);
  }

  private server(e: ServerRequestStartEvent, other = false): Series {
    const last = this.lastServer;
    const f = last?.fields;
    if (
      !other &&
      f &&
      f[0] === e.method &&
      f[1] === e.topic &&
      f[2] === e.server &&
      f[3] === e.exchange &&
      f[4] === e.namespace &&
      f[5] === e.version
    ) {
      return last!;
    }
    const own = `${e.exchange}\0${e.topic}\0${e.server}`;
    // One spelling of the key for the series and the strays, which must find each other.
    const key = this.serverKey(e);
    const s = this.serverSeries.get(
      key,
      own,
      (admitted) => {
        const labels: Labels = {
          exchange: e.exchange ?? '',
          topic: e.topic,
          server: e.server,
          namespace: admitted ? (e.namespace ?? '') : OTHER,
          version: admitted ? versionLabel(e.version) : OTHER,
          method: admitted ? e.method : OTHER,
        };
        const gauge = this.m.serverInFlight.at({ topic: e.topic, server: e.server });
        return this.series(admitted ? key : `${own}\0${OTHER}`, labels, 'server', gauge, admitted);
      },
      !other && labelsFit(e.method, e.namespace, versionLabel(e.version)),
    );
    if (other) return s;
    s.fields = [e.method, e.topic, e.server, e.exchange, e.namespace, e.version];
    this.lastServer = s;
    return s;
  }

  private client(e: CallStartEvent, other = false): Series {
    const last = this.lastClient;
    const f = last?.fields;
    if (
      !other &&
      f &&
      f[0] === e.method &&
      f[1] === e.topic &&
      f[2] === e.server &&
      f[3] === e.exchange &&
      f[4] === e.namespace &&
      f[5] === e.version &&
      f[6] === e.kind &&
      f[7] === (e.fanout ? 'True' : 'False')
    ) {
      return last!;
    }
    // Only labels the process controls: a caller chooses the topic and server through the
    // gateway (`?server=`, mappingPolicy "any"), and keying the fallback by them made one series
    // (and gauge) per made-up name, past any budget.
    const own = `${e.kind}\0${e.exchange}\0${e.server ? 1 : 0}\0${e.fanout ? 1 : 0}`;
    const key = this.clientKey(e);
    const s = this.clientSeries.get(
      key,
      own,
      (admitted) => {
        const labels: Labels = {
          call_type: e.kind,
          exchange: e.exchange ?? '',
          topic: admitted ? e.topic : OTHER,
          namespace: admitted ? (e.namespace ?? '') : OTHER,
          version: admitted ? versionLabel(e.version) : OTHER,
          server: admitted || !e.server ? (e.server ?? '') : OTHER,
          fanout: e.fanout ? 'True' : 'False',
          // Not an oslo.metrics client label (oslo groups by target); hermod adds it.
          method: admitted ? e.method : OTHER,
        };
        if (admitted) this.clientTopics.set(e.topic, (this.clientTopics.get(e.topic) ?? 0) + 1);
        const gauge = this.m.clientInFlight.at({ call_type: e.kind, topic: labels.topic! });
        return this.series(admitted ? key : `${own}\0${OTHER}`, labels, 'client', gauge, admitted);
      },
      !other && labelsFit(e.method, e.namespace, versionLabel(e.version)),
    );
    if (other) return s;
    s.fields = [e.method, e.topic, e.server, e.exchange, e.namespace, e.version, e.kind, e.fanout ? 'True' : 'False'];
    this.lastClient = s;
    return s;
  }

  private series(key: string, labels: Labels, side: 'server' | 'client', inFlightGauge: Cell, admitted: boolean): Series {
    const m =
      side === 'server'
        ? [this.m.serverStart, this.m.serverEnd, this.m.serverSeconds]
        : [this.m.clientStart, this.m.clientEnd, this.m.clientSeconds];
    return {
      key,
      labels,
      start: (m[0] as ValueFamily).cell(key, labels),
      end: (m[1] as ValueFamily).cell(key, labels),
      seconds: (m[2] as HistogramFamily).cell(key, labels),
      inFlightGauge,
      inFlight: 0,
      fields: [],
      admitted,
      proven: false,
      unanswered: undefined,
    };
  }

  /**
   * After a request of `s` ended: a method that exists keeps its series; one that, so far, was
   * never answered (see {@link unanswered}) gives its place back once nothing of it is in
   * flight, its counts moving to the {@link OTHER} series. Else a peer (or the gateway's HTTP
   * clients) calling made-up method names, or made-up servers or topics that never answer,
   * filled the `maxMethods` budget, and the real methods, called later, were all `__other__`.
   */
  private settle(side: 'server' | 'client', s: Series, e: ServerRequestEvent | CallEvent): void {
    if (!unanswered(side, e.error)) {
      s.proven = true;
      return;
    }
    if (!s.admitted || s.proven || s.inFlight > 0) return;
    const server = side === 'server';
    (server ? this.serverSeries : this.clientSeries).release(s.key);
    if (!server) this.releaseTopic(s.labels.topic!);
    if (server ? this.lastServer === s : this.lastClient === s) {
      if (server) this.lastServer = undefined;
      else this.lastClient = undefined;
    }
    const o = server ? this.server(e as ServerRequestEvent, true) : this.client(e as CallEvent, true);
    const [start, end, seconds, exceptions] = server
      ? [this.m.serverStart, this.m.serverEnd, this.m.serverSeconds, this.m.serverException]
      : [this.m.clientStart, this.m.clientEnd, this.m.clientSeconds, this.m.clientException];
    o.start.value += start.drop(s.key)?.value ?? 0;
    o.end.value += end.drop(s.key)?.value ?? 0;
    const h = seconds.drop(s.key);
    if (h) o.seconds.add(h);
    for (const exception of s.unanswered ?? []) {
      const c = exceptions.dropAt({ ...s.labels, exception });
      if (c) exceptions.at({ ...o.labels, exception }).value += c.value;
    }
  }

  private onServerStart(e: ServerRequestStartEvent): void {
    const s = this.server(e);
    if (!s.admitted) this.stray('server', e);
    s.start.value++;
    s.inFlight++;
    s.inFlightGauge.value++;
  }

  private onServerEnd(e: ServerRequestEvent): void {
    this.m.serverOutcome.at({ exchange: e.exchange ?? '', topic: e.topic, server: e.server, outcome: e.outcome }).value++;
    if (e.error && isUndeliverable(e.error)) this.m.undeliverable.at({ side: 'server', topic: e.topic }).value++;
    // A request that never started (refused as malformed, before dispatch) is counted by its
    // outcome only, as oslo.metrics counts nothing it did not dispatch: looking its series up
    // here made zero-valued invocation series with empty labels appear.
    if (!e.started) return;
    const s = this.ended('server', e);
    // Started before we subscribed: not in flight here.
    if (s.inFlight === 0) return;
    s.inFlight--;
    s.inFlightGauge.value--;
    s.end.value++;
    s.seconds.observe(e.durationMs / 1000);
    if (e.error) {
      const name = errorClassName(e.error);
      const exception = this.serverExceptions.get(name, '', (ok) => (ok ? name : OTHER), labelsFit(name));
      this.m.serverException.at({ ...s.labels, exception }).value++;
      if (unanswered('server', e.error)) {
        s.unanswered ??= new Set();
        s.unanswered.add(exception);
      }
    }
    if (!s.proven) this.settle('server', s, e);
  }

  private onClientStart(e: CallStartEvent): void {
    const s = this.client(e);
    if (!s.admitted) this.stray('client', e);
    s.start.value++;
    s.inFlight++;
    s.inFlightGauge.value++;
  }

  private onClientEnd(e: CallEvent): void {
    const s = this.ended('client', e);
    if (e.error && isUndeliverable(e.error)) this.m.undeliverable.at({ side: 'client', topic: s.labels.topic! }).value++;
    if (s.inFlight === 0) return;
    s.inFlight--;
    s.inFlightGauge.value--;
    s.end.value++;
    s.seconds.observe(e.durationMs / 1000);
    if (e.error) {
      const name = exceptionName(e.error);
      const exception = this.clientExceptions.get(name, '', (ok) => (ok ? name : OTHER), labelsFit(name));
      this.m.clientException.at({ ...s.labels, exception }).value++;
      if (unanswered('client', e.error)) {
        s.unanswered ??= new Set();
        s.unanswered.add(exception);
      }
    }
    if (!s.proven) this.settle('client', s, e);
  }

  /** A client series of `topic` gave its place back: the topic's cells go with the last one. */
  private releaseTopic(topic: string): void {
    const n = (this.clientTopics.get(topic) ?? 0) - 1;
    if (n > 0) {
      this.clientTopics.set(topic, n);
      return;
    }
    this.clientTopics.delete(topic);
    // Nothing of the topic is in flight (every series of it gave its place back idle).
    this.m.clientInFlight.dropAt({ call_type: 'call', topic });
    this.m.clientInFlight.dropAt({ call_type: 'cast', topic });
    const u = this.m.undeliverable.dropAt({ side: 'client', topic });
    if (u) this.m.undeliverable.at({ side: 'client', topic: OTHER }).value += u.value;
  }

  private onConnection(e: ConnectionStateEvent): void {
    const labels = { driver: e.driver, host: e.host };
    if (e.state === 'connected') this.m.connectionUp.at(labels).value = 1;
    else if (e.state === 'disconnected') this.m.connectionUp.at(labels).value = 0;
    else if (e.state === 'reconnecting') {
      this.m.reconnects.at({ driver: e.driver }).value++;
      // A host never reached (a wrong port after a deploy) shows as down, not as no series at
      // all: an alert on `hermod_connection_up == 0` missed a server that never connected.
      if (typeof e.host === 'string') this.m.connectionUp.at(labels).value = 0;
    } else if (e.state === 'failed' && typeof e.host === 'string') this.m.connectionUp.at(labels).value = 0;
    else if (e.state === 'blocked') this.m.blocked.at(labels).value = 1;
    else if (e.state === 'unblocked') this.m.blocked.at(labels).value = 0;
  }

  private onGatewayRequest(e: GatewayRequestEvent): void {
    // Routes are the gateway's patterns (bounded by its configuration); methods are bounded by
    // the HTTP methods Node parses, and anything else is folded.
    const method = HTTP_METHODS.has(e.method) ? e.method : OTHER;
    const route = e.route.length <= 200 ? e.route : OTHER;
    this.m.gatewayRequests.at({ route, method, status: String(e.status) }).value++;
    this.m.gatewaySeconds.at({ route, method }).observe(e.durationMs / 1000);
  }

  private onDuplicate(e: DuplicateMessageEvent): void {
    // Only `where`: the id is the sender's, one per message, and would make a series per copy.
    this.m.duplicates.at({ where: DUPLICATE_WHERE.has(e.where) ? e.where : OTHER }).value++;
  }

  private onNotification(e: NotificationEvent): void {
    const p = typeof e.priority === 'string' ? e.priority.toLowerCase() : '';
    this.m.notifications.at({ priority: PRIORITIES.has(p) ? p : OTHER, outcome: e.outcome }).value++;
  }
}

/**
 * The request got no sign that its target exists: no such method or version (hermod's or oslo's,
 * rebuilt) and, for a client, also a timeout or nobody to deliver to (a made-up server or topic).
 */
function unanswered(side: 'server' | 'client', err: Error | undefined): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (code === 'HERMOD_ERR_NO_SUCH_METHOD' || code === 'HERMOD_ERR_UNSUPPORTED_VERSION') return true;
  return side === 'client' && (code === 'HERMOD_ERR_TIMEOUT' || code === 'HERMOD_ERR_UNDELIVERABLE');
}

function isUndeliverable(err: Error): boolean {
  return (err as { code?: unknown }).code === 'HERMOD_ERR_UNDELIVERABLE';
}

/** A remote error is labelled by the remote class (oslo labels by exception class). */
function exceptionName(err: Error): string {
  const remote = (err as { excType?: unknown }).excType;
  return typeof remote === 'string' && remote.length > 0 ? remote : errorClassName(err);
}

function defineMetrics(registry: Registry, buckets: readonly number[]) {
  const counter = (name: string, help: string) => new ValueFamily(name, help, 'counter').register(registry);
  const gauge = (name: string, help: string) => new ValueFamily(name, help, 'gauge').register(registry);
  const histogram = (name: string, help: string) => new HistogramFamily(name, help, buckets).register(registry);
  return {
    serverStart: counter(
      'oslo_messaging_rpc_server_invocation_start_total',
      'Requests a server started on (parsed; malformed ones are not counted)',
    ),
    serverEnd: counter('oslo_messaging_rpc_server_invocation_end_total', 'Requests a server finished, either way'),
    serverException: counter('oslo_messaging_rpc_server_exception_total', 'Requests that ended in an exception, by exception class'),
    serverSeconds: histogram('oslo_messaging_rpc_server_processing_second', 'Server processing time in seconds'),
    serverInFlight: gauge('hermod_rpc_server_in_flight', 'Requests running on servers now'),
    serverOutcome: counter(
      'hermod_rpc_server_requests_total',
      'Requests a server finished, by outcome (ok, error, invalid, aborted, expired)',
    ),
    clientStart: counter('oslo_messaging_rpc_client_invocation_start_total', 'Calls and casts started'),
    clientEnd: counter('oslo_messaging_rpc_client_invocation_end_total', 'Calls and casts finished, either way'),
    clientException: counter('oslo_messaging_rpc_client_exception_total', 'Calls and casts that failed, by exception class'),
    clientSeconds: histogram('oslo_messaging_rpc_client_processing_second', 'Call and cast time in seconds'),
    clientInFlight: gauge('hermod_rpc_client_in_flight', 'Calls and casts in flight now'),
    undeliverable: counter(
      'hermod_rpc_undeliverable_total',
      'Messages nobody could take: calls with no queue bound (client), replies whose caller is gone (server)',
    ),
    connectionUp: gauge(
      'hermod_connection_up',
      '1 while the connection to this host is up, 0 after it went down or an attempt to reach it failed',
    ),
    blocked: gauge('hermod_connection_blocked', '1 while the broker blocks publishing on this connection'),
    reconnects: counter('hermod_connection_reconnects_total', 'Reconnect attempts'),
    invalid: counter('hermod_messages_invalid_total', 'Messages dropped because they could not be decoded'),
    duplicates: counter(
      'hermod_messages_duplicate_total',
      'Requests and notifications dropped as copies of one already received (same _unique_id, RabbitMQ)',
    ),
    notifications: counter(
      'hermod_notifications_total',
      'Notifications seen by listeners: handled, requeue, dropped, error (an endpoint threw)',
    ),
    gatewayRequests: counter('hermod_gateway_requests_total', 'HTTP requests the gateway answered, by route pattern, method and status'),
    gatewaySeconds: histogram('hermod_gateway_request_seconds', 'Time from an HTTP request read to its response sent, in seconds'),
    gatewayRefused: counter('hermod_gateway_connections_refused_total', 'Connections the gateway closed at one of its limits'),
  };
}

/** A `[host:]port` metrics address (`9100`, `0.0.0.0:9100`, `[::1]:9100`); `what` names it in the error. */
export function parseMetricsAddress(spec: string, what = '--metrics-port'): { port: number; host?: string } {
  const m = /^(?:(.*):)?(\d{1,5})$/.exec(spec.trim());
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port > 65535) throw new InvalidArgument(`${what} wants [host:]port, got ${JSON.stringify(spec)}`);
  const host = m[1]?.replace(/^\[(.*)\]$/, '$1');
  return host ? { port, host } : { port };
}

/**
 * What `--metrics-port [host:]port` does in the CLIs: starts a {@link Metrics} and serves it
 * (host 127.0.0.1 unless given, e.g. `0.0.0.0:9100` for a scraper on another host). `close()`
 * stops both.
 */
export async function exposeMetrics(spec: string): Promise<MetricsServer> {
  const address = parseMetricsAddress(spec);
  const metrics = new Metrics();
  metrics.start();
  try {
    const server = await serveMetrics(metrics, address);
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
