import { readdirSync } from 'node:fs';
import type { Registry } from 'prom-client';

/**
 * The process's own series, by the names of prom-client's default set (`process_*`,
 * `nodejs_*`), so the usual Node.js dashboards and alerts work: CPU, resident memory, the V8
 * heap, open file descriptors, start time, Node's version. Each is read when scraped. Not
 * prom-client's `collectDefaultMetrics()`: its event-loop monitor wakes an idle process every
 * 10 ms for good, and its garbage-collection observer runs a callback per scavenge (thousands a
 * second on a busy server), neither of which can be stopped again.
 *
 * Aggregated across `--workers` as prom-client's own are: sums, but the earliest start time
 * and the first version.
 */

type Sample = { labels: Record<string, string>; value: number };

interface ProcessMetric {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  aggregator: 'sum' | 'min' | 'first';
  read(): Sample[] | undefined;
}

const START_SECONDS = Math.round(Date.now() / 1000 - process.uptime());

/** Open file descriptors, where the OS shows them (Linux's /proc); undefined elsewhere. */
function openFds(): number | undefined {
  try {
    // One entry is the directory's own descriptor, open while it is read.
    return readdirSync('/proc/self/fd').length - 1;
  } catch {
    return undefined;
  }
}

const one = (value: number): Sample[] => [{ labels: {}, value }];

const METRICS: readonly ProcessMetric[] = [
  {
    name: 'process_cpu_user_seconds_total',
    help: 'Total user CPU time spent in seconds.',
    type: 'counter',
    aggregator: 'sum',
    read: () => one(process.cpuUsage().user / 1e6),
  },
  {
    name: 'process_cpu_system_seconds_total',
    help: 'Total system CPU time spent in seconds.',
    type: 'counter',
    aggregator: 'sum',
    read: () => one(process.cpuUsage().system / 1e6),
  },
  {
    name: 'process_cpu_seconds_total',
    help: 'Total user and system CPU time spent in seconds.',
    type: 'counter',
    aggregator: 'sum',
    read: () => {
      const u = process.cpuUsage();
      return one((u.user + u.system) / 1e6);
    },
  },
  {
    name: 'process_resident_memory_bytes',
    help: 'Resident memory size in bytes.',
    type: 'gauge',
    aggregator: 'sum',
    read: () => one(process.memoryUsage.rss()),
  },
  {
    name: 'process_open_fds',
    help: 'Number of open file descriptors.',
    type: 'gauge',
    aggregator: 'sum',
    read: () => {
      const n = openFds();
      return n === undefined ? undefined : one(n);
    },
  },
  {
    name: 'process_start_time_seconds',
    help: 'Start time of the process since unix epoch in seconds.',
    type: 'gauge',
    aggregator: 'min',
    read: () => one(START_SECONDS),
  },
  {
    name: 'nodejs_heap_size_total_bytes',
    help: 'Process heap size from Node.js in bytes.',
    type: 'gauge',
    aggregator: 'sum',
    read: () => one(process.memoryUsage().heapTotal),
  },
  {
    name: 'nodejs_heap_size_used_bytes',
    help: 'Process heap size used from Node.js in bytes.',
    type: 'gauge',
    aggregator: 'sum',
    read: () => one(process.memoryUsage().heapUsed),
  },
  {
    name: 'nodejs_external_memory_bytes',
    help: 'Node.js external memory size in bytes.',
    type: 'gauge',
    aggregator: 'sum',
    read: () => one(process.memoryUsage().external),
  },
  {
    name: 'nodejs_version_info',
    help: 'Node.js version info.',
    type: 'gauge',
    aggregator: 'first',
    read: () => {
      const [major = '', minor = '', patch = ''] = process.versions.node.split('.');
      return [{ labels: { version: process.version, major, minor, patch }, value: 1 }];
    },
  },
];

/** The names {@link registerProcessMetrics} registers. */
export const PROCESS_METRIC_NAMES: readonly string[] = METRICS.map((m) => m.name);

/** Registers the process's series (see the module's comment) in `registry`. */
export function registerProcessMetrics(registry: Registry): void {
  for (const m of METRICS) {
    registry.registerMetric({
      name: m.name,
      help: m.help,
      type: m.type,
      aggregator: m.aggregator,
      get: () => ({ name: m.name, help: m.help, type: m.type, aggregator: m.aggregator, values: m.read() ?? [] }),
      reset: () => {},
    } as never);
  }
}
