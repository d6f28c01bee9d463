import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { ConfigError } from '../core/errors.js';
import { ClusterMetrics, type ClusterMetricsOptions } from './metrics-cluster.js';

/** Options of {@link serveMetrics} and {@link serveClusterMetrics}. */
export interface ServeMetricsOptions {
  /** TCP port; 0 picks a free one (see {@link MetricsServer.port}). */
  port: number;
  /** Address to bind. @default '127.0.0.1' (metrics are not for the world unless asked) */
  host?: string;
  /** Path of the exposition. @default '/metrics' */
  path?: string;
  /**
   * How long a response may take to be sent (the client reading it) before its connection is
   * cut, ms. @default 10000 ({@link SEND_TIMEOUT_MS})
   */
  sendTimeoutMs?: number;
}

/** A running metrics endpoint. */
export interface MetricsServer {
  /** The bound port (the real one when 0 was asked). */
  readonly port: number;
  /** `http://host:port/metrics`. */
  readonly url: string;
  /** Stops listening and ends open connections; resolves when closed. */
  close(): Promise<void>;
}

/**
 * Serves a registry as Prometheus text over HTTP (`GET /metrics`; anything else is 404).
 * Plain node:http rather than fastify: one read-only route needs no framework, and this keeps
 * fastify's load time out of `rpc-server --metrics-port`.
 */
export function serveMetrics(
  metrics: { text(): Promise<string>; readonly contentType: string } | Registry,
  options: ServeMetricsOptions,
): Promise<MetricsServer> {
  const exposition = 'text' in metrics ? () => metrics.text() : () => (metrics as Registry).metrics();
  return listen(options, exposition, () => metrics.contentType);
}

/**
 * On a `node:cluster` primary: serves the sum of every worker's metrics (counters and
 * histograms summed, gauges summed: in-flight calls of all workers, connections up). Each
 * worker runs a started {@link Metrics}. A worker that does not answer within
 * `workerTimeoutMs` counts with its last answer, one still starting or gone is left out, and
 * `hermod_metrics_workers{answer="now"|"stale"}` says how many were summed each way.
 */
export async function serveClusterMetrics(options: ServeMetricsOptions & ClusterMetricsOptions): Promise<MetricsServer> {
  const workers = new ClusterMetrics(options);
  try {
    const server = await listen(
      options,
      () => workers.text(),
      () => workers.contentType,
    );
    return {
      ...server,
      close: async () => {
        workers.close();
        await server.close();
      },
    };
  } catch (err) {
    workers.close();
    throw err;
  }
}

/**
 * The path of a request target: origin form (`/metrics?x`) or absolute form
 * (`http://host:9100/metrics`, which HTTP/1.1 servers must accept, and proxies send).
 */
function pathOf(target: string | undefined): string | undefined {
  if (!target) return undefined;
  if (target.startsWith('/')) return target.split('?')[0];
  try {
    return new URL(target).pathname;
  } catch {
    return undefined;
  }
}

/** Sockets a metrics server keeps at once; more are closed as they arrive. */
export const MAX_CONNECTIONS = 64;

/** How long a metrics server waits for a request's headers before it answers 408 and closes. */
export const HEADERS_TIMEOUT_MS = 10_000;

/**
 * How long a response may take to be sent before its connection is cut: Prometheus' default
 * scrape_timeout, by when a scraper has given up. Without it a client that sent `GET /metrics`
 * and never read held the whole exposition in memory for as long as it liked (64 such sockets
 * on a 1.7 MB scrape: 88 → 427 MB of RSS).
 */
export const SEND_TIMEOUT_MS = 10_000;

function listen(options: ServeMetricsOptions, exposition: () => Promise<string>, contentType: () => string): Promise<MetricsServer> {
  const host = options.host ?? '127.0.0.1';
  const path = options.path ?? '/metrics';
  // Scrapes that arrive while one is being made share its text: on a cluster primary each one
  // asks every worker, and a burst of requests (or a flood on an exposed port) would put that
  // many rounds of messages in flight at once.
  let pending: Promise<string> | undefined;
  const scrape = (): Promise<string> => {
    if (!pending) {
      pending = exposition().finally(() => {
        pending = undefined;
      });
    }
    return pending;
  };
  // Bounded against peers that open sockets and send nothing, or a header a byte at a time
  // (Node's defaults allow 60 s for the headers and any number of sockets): a few Prometheus
  // servers need a handful of connections. Node enforces these timeouts only when it checks its
  // connections, every 30 s unless told otherwise: a half-sent request was kept 13-36 s, not 10.
  const timeouts = { headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: 15_000, connectionsCheckingInterval: 1_000 };
  const sendTimeoutMs = options.sendTimeoutMs ?? SEND_TIMEOUT_MS;
  const server = http.createServer(timeouts, (req, res) => {
    const url = pathOf(req.url);
    if (url !== path) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' }).end('method not allowed\n');
      return;
    }
    scrape().then(
      (text) => {
        if (res.destroyed) return;
        // Each response holds its own copy of the text until the client has read it: with
        // maxConnections, this bounds what slow or stalled clients can hold, and for how long.
        const timer = setTimeout(() => res.destroy(), sendTimeoutMs).unref();
        const sent = () => clearTimeout(timer);
        res.once('finish', sent).once('close', sent);
        res.writeHead(200, { 'content-type': contentType() }).end(req.method === 'HEAD' ? undefined : text);
      },
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics unavailable: ${err.message}\n`),
    );
  });
  // A scrape is one short request: idle keep-alive sockets must not hold a stopping process.
  server.keepAliveTimeout = 5_000;
  // Past the bound Node drops new sockets at once.
  server.maxConnections = MAX_CONNECTIONS;
  return new Promise((resolve, reject) => {
    // Said with the address asked for: a bare "listen EADDRINUSE" or "getaddrinfo ENOTFOUND"
    // did not say that it was about the metrics port.
    const fail = (err: NodeJS.ErrnoException) => {
      const where = `${host.includes(':') ? `[${host}]` : host}:${options.port}`;
      const why =
        err.code === 'EADDRINUSE'
          ? 'the port is in use'
          : err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN'
            ? 'unknown host'
            : err.code === 'EADDRNOTAVAIL'
              ? 'no interface of this host has that address'
              : err.code === 'EACCES'
                ? 'permission denied (a port below 1024?)'
                : err.message;
      reject(new ConfigError(`cannot serve metrics on ${where}: ${why} (${err.code ?? 'error'})`, { cause: err, key: 'metrics' }));
    };
    server.once('error', fail);
    server.listen(options.port, host, () => {
      server.off('error', fail);
      const port = (server.address() as AddressInfo).port;
      const shown = host.includes(':') ? `[${host}]` : host;
      resolve({
        port,
        url: `http://${shown}:${port}${path}`,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
