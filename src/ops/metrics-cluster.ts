/**
 * Metrics of `node:cluster` workers, summed by the primary. Our own messages rather than
 * prom-client's `AggregatorRegistry.clusterMetrics()`: that one asks every worker in
 * `cluster.workers` and fails the whole scrape (500, after 5 s) when one does not answer, which
 * every worker restart, recycle or crash caused: a worker still loading its modules has no
 * listener yet, and one that died mid-scrape never answers. Here only workers that said they
 * serve metrics are asked, one that exits is not waited for, and one that is late counts with
 * its last answer, so a scrape always answers and counters never step back for a slow worker.
 * Nor for a dead one: its counters (histograms' buckets, sums and counts too) as it last
 * reported them are folded into one retained set of summed series, which later scrapes add, so
 * a worker's exit is no counter reset to Prometheus' rate(); its gauges go with it.
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { OTHER } from './metrics-labels.js';

/** What a worker says once it has metrics to give. */
const READY = 'metrics-ready';
/** The primary asks, when it starts serving, which of the workers already running have metrics. */
const WHO = 'metrics-who?';
/** The primary's request, and the worker's answer. */
const REQUEST = 'metrics?';
const ANSWER = 'metrics';

type Snapshot = object[];
/** A sample of a metric, as prom-client's `getMetricsAsJSON()` gives it. */
interface Sample {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}
/** A metric, as prom-client's `getMetricsAsJSON()` gives it. */
interface MetricJson {
  name: string;
  help: string;
  type: string;
  aggregator?: string;
  values: Sample[];
}
interface Message {
  hermod?: string;
  id?: number;
  metrics?: Snapshot[];
}

/** Registries this worker gives the primary. */
const registries = new Set<Registry>();
let answering = false;

/** In a cluster worker: `registry` is part of what the primary's scrapes get from this process. */
export function shareWithPrimary(registry: Registry): void {
  if (!cluster.isWorker) return;
  registries.add(registry);
  if (answering) return;
  answering = true;
  process.on('message', (m: Message | null) => {
    if (m?.hermod === WHO) send({ hermod: READY });
    if (m?.hermod !== REQUEST) return;
    void Promise.all([...registries].map((r) => r.getMetricsAsJSON())).then(
      (metrics) => send({ hermod: ANSWER, id: m.id, metrics }),
      () => send({ hermod: ANSWER, id: m.id, metrics: [] }),
    );
  });
  send({ hermod: READY });
}

/** In a cluster worker: `registry` is no longer given (the primary then gets nothing of it). */
export function stopSharing(registry: Registry): void {
  registries.delete(registry);
}

function send(message: Message): void {
  // With a callback: a channel closing meanwhile (the primary died) is not an unheard 'error'.
  if (process.connected) process.send?.(message, undefined, {}, () => undefined);
}

/** Options of {@link ClusterMetrics}. */
export interface ClusterMetricsOptions {
  /** How long a scrape waits for a worker's answer before using its last one, ms. @default 3000 */
  workerTimeoutMs?: number;
  /**
   * Distinct series (label sets, a histogram's buckets counted once) kept per metric of the
   * workers that exited; later ones are folded into `__other__` series, as each worker's
   * `maxMethods` folds its own. @default 500, the workers' default budget
   */
  maxMethods?: number;
}

/** Labels a peer chooses, on every side: folded past the budget. */
const PEER_LABELS = new Set(['namespace', 'version', 'method', 'exception']);
/**
 * Metrics whose `topic` and `server` are the process's own (a server's): elsewhere (the client
 * side, undeliverable messages) a caller chooses them through the gateway, and they are folded too.
 */
const OWN_TARGET = /^(?:oslo_messaging_rpc_server_|hermod_rpc_server_)/;

interface Peer {
  /** The worker's last answer, used when it is late. */
  last: Snapshot[] | undefined;
}

function sortedEntries(labels: Record<string, string | number>): Array<[string, string | number]> {
  return Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** A sample's series: its labels but a histogram bucket's `le`. */
function seriesKey(labels: Record<string, string | number>): string {
  return JSON.stringify(sortedEntries(labels).filter(([k]) => k !== 'le'));
}

/**
 * `labels` with those a peer chooses replaced by {@link OTHER}, as Metrics' own fallback
 * series: what is left is the process's own, so the folded series are bounded.
 */
function folded(metric: string, labels: Record<string, string | number>): Record<string, string | number> {
  const own = OWN_TARGET.test(metric);
  const out: Record<string, string | number> = {};
  for (const [k, v] of Object.entries(labels)) {
    const peer = PEER_LABELS.has(k) || (!own && (k === 'topic' || (k === 'server' && v !== '')));
    out[k] = peer ? OTHER : v;
  }
  return out;
}

/** The primary's side: asks the workers that serve metrics and sums their answers. */
export class ClusterMetrics {
  private readonly peers = new Map<Worker, Peer>();
  private readonly waiting = new Map<number, { worker: Worker; done: (answer: Snapshot[] | undefined) => void }>();
  private nextId = 0;
  private readonly timeoutMs: number;
  /**
   * The counters of workers that exited, as they last reported them, summed into one set of
   * series (by metric, then by sample name and labels): bounded by the series there are, not by
   * how many workers ever died.
   */
  private readonly retained = new Map<string, { metric: Omit<MetricJson, 'values'>; values: Map<string, Sample>; series: Set<string> }>();
  private readonly maxSeries: number;
  /** Workers that served metrics and exited (crashed, recycled, stopped). */
  private exits = 0;
  private readonly onMessage = (worker: Worker, m: Message | null) => {
    if (m?.hermod === READY) this.peers.set(worker, this.peers.get(worker) ?? { last: undefined });
    else if (m?.hermod === ANSWER && typeof m.id === 'number') {
      const metrics = Array.isArray(m.metrics) ? m.metrics : [];
      const waiting = this.waiting.get(m.id);
      if (waiting) waiting.done(metrics);
      else {
        // Too late for its scrape, still the freshest it said: the next one that times out
        // uses it (a worker always slower than the timeout was never summed).
        const peer = this.peers.get(worker);
        if (peer) peer.last = metrics;
      }
    }
  };
  private readonly onExit = (worker: Worker) => {
    const peer = this.peers.get(worker);
    if (peer) {
      this.exits++;
      // Dropped, its counts made the sums step back: a counter reset (a false spike) to rate().
      if (peer.last) this.retain(peer.last);
    }
    this.peers.delete(worker);
    for (const w of this.waiting.values()) if (w.worker === worker) w.done(undefined);
  };

  constructor(options: ClusterMetricsOptions = {}) {
    this.timeoutMs = options.workerTimeoutMs ?? 3000;
    this.maxSeries = options.maxMethods ?? 500;
    cluster.on('message', this.onMessage);
    cluster.on('exit', this.onExit);
    // Workers forked (and counting) before this primary began to serve said ready to no one.
    for (const w of Object.values(cluster.workers ?? {})) {
      if (w?.isConnected()) w.send({ hermod: WHO } satisfies Message, undefined, undefined, () => undefined);
    }
  }

  /** The summed exposition of every worker that serves metrics, in Prometheus' text format. */
  async text(): Promise<string> {
    let now = 0;
    let stale = 0;
    // Late with no answer before (hung, SIGSTOPped or busy since it started): nothing of it is
    // in the sum, and a scrape that said nothing of it read as if it were not there at all.
    let missing = 0;
    const asked = [...this.peers.keys()];
    await Promise.all(
      asked.map(async (worker) => {
        const answer = await this.ask(worker);
        const peer = this.peers.get(worker);
        if (!peer) return;
        if (answer) {
          peer.last = answer;
          now++;
        } else if (peer.last) stale++;
        else missing++;
      }),
    );
    // Read together, after every answer is in: a worker that exited meanwhile is in the retained
    // counters now, and summed from its answer as well it would count twice in this scrape only.
    const live = asked.flatMap((w) => this.peers.get(w)?.last ?? []);
    const body = await AggregatorRegistry.aggregate([...live, this.retainedSnapshot()]).metrics();
    return `${body}# HELP hermod_metrics_workers Workers that serve metrics, by their answer to this scrape: now, stale (late: their last answer counts), missing (late with no answer yet: not in the sum).
# TYPE hermod_metrics_workers gauge
hermod_metrics_workers{answer="now"} ${now}
hermod_metrics_workers{answer="stale"} ${stale}
hermod_metrics_workers{answer="missing"} ${missing}
# HELP hermod_metrics_worker_exits_total Workers that served metrics and exited (crashed, recycled, restarted or stopped); their counters stay in the sums.
# TYPE hermod_metrics_worker_exits_total counter
hermod_metrics_worker_exits_total ${this.exits}
`;
  }

  /**
   * Adds the counters of a worker's last answer to {@link retained}; gauges are left out (they
   * end with the worker). Each worker's series are within its budget, but not their union over
   * many exits: a peer choosing labels (method names, version spellings) anew for each worker
   * grew the scrape by a budget per round of exits, for good. Past {@link maxSeries} series a
   * metric's new ones are folded as a live worker folds them.
   */
  private retain(answer: Snapshot[]): void {
    for (const registry of answer) {
      for (const m of registry as MetricJson[]) {
        if (!m || (m.type !== 'counter' && m.type !== 'histogram') || (m.aggregator ?? 'sum') !== 'sum' || !Array.isArray(m.values))
          continue;
        let kept = this.retained.get(m.name);
        if (!kept) {
          kept = { metric: { name: m.name, help: m.help, type: m.type, aggregator: 'sum' }, values: new Map(), series: new Set() };
          this.retained.set(m.name, kept);
        }
        for (const v of m.values) {
          if (typeof v?.value !== 'number' || !Number.isFinite(v.value)) continue;
          let labels: Record<string, string | number> = { ...v.labels };
          const series = seriesKey(labels);
          if (!kept.series.has(series)) {
            if (kept.series.size < this.maxSeries) kept.series.add(series);
            else labels = folded(m.name, labels);
          }
          const key = `${v.metricName ?? ''}\0${JSON.stringify(sortedEntries(labels))}`;
          const sum = kept.values.get(key);
          if (sum) sum.value += v.value;
          else kept.values.set(key, { labels, value: v.value, ...(v.metricName ? { metricName: v.metricName } : {}) });
        }
      }
    }
  }

  /** {@link retained} as one registry's `getMetricsAsJSON()`. */
  private retainedSnapshot(): MetricJson[] {
    return [...this.retained.values()].map(({ metric, values }) => ({ ...metric, values: [...values.values()].map((v) => ({ ...v })) }));
  }

  /** The content type of {@link text}. */
  get contentType(): string {
    return AggregatorRegistry.PROMETHEUS_CONTENT_TYPE;
  }

  /** Stops listening to the workers; waiting scrapes get what they have. */
  close(): void {
    cluster.off('message', this.onMessage);
    cluster.off('exit', this.onExit);
    for (const w of [...this.waiting.values()]) w.done(undefined);
  }

  private ask(worker: Worker): Promise<Snapshot[] | undefined> {
    if (!worker.isConnected()) return Promise.resolve(undefined);
    const id = ++this.nextId;
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(undefined), this.timeoutMs);
      const done = (answer: Snapshot[] | undefined) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve(answer);
      };
      this.waiting.set(id, { worker, done });
      worker.send({ hermod: REQUEST, id } satisfies Message, undefined, undefined, (err: Error | null) => err && done(undefined));
    });
  }
}
