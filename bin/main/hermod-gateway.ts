import { randomBytes } from 'node:crypto';
import diagnostics_channel from 'node:diagnostics_channel';
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { describeConfig, parseConfigArgs } from '../../src/cli/config-args.js';
import { CLI_DEFAULT_URL, CLI_DEFAULTS } from '../../src/cli/defaults.js';
import { EXIT, exitOnUsage, fatal, fatalAsJsonLog, fatalAsJsonLogIfAsked } from '../../src/cli/exit-codes.js';
import { captureConsole, logConnectionState, makeLogger } from '../../src/cli/log.js';
import { applyLogFlags, commonOptions, intAtLeast, type LogFlags } from '../../src/cli/program.js';
import { handleShutdown, parseShutdownTimeout } from '../../src/cli/shutdown.js';
import type { GatewayRequestEvent } from '../../src/core/diagnostics.js';
import { keysAuthenticator } from '../../src/gateway/auth.js';
import { hermodSection, mergeGatewayConfig, readGatewayConfig, resolveGatewayConfig } from '../../src/gateway/config.js';
import { type ConnectionRefusedEvent, createGateway, type Gateway, type GatewayConfig, JOBS_KEY_ENV } from '../../src/gateway/index.js';
import { ClosedError, defaultConfig, getTransport, loadConfig, type Transport } from '../../src/index.js';
import { exposeMetrics, Metrics, type MetricsServer, parseMetricsAddress, serveClusterMetrics } from '../../src/ops/metrics.js';
import { parseWorkers } from '../../src/ops/run/config.js';
import { onPrimaryStop, READY_MESSAGE, specFromPrimary, tellPrimary, WorkerSupervisor, workerNumber } from '../../src/ops/run/workers.js';

/** Past the workers' deadline, how long the primary waits for them to exit before it kills them. */
const PRIMARY_MARGIN_MS = 1500;
/** How long running calls may finish on a stop, without --shutdown-timeout. */
const GATEWAY_SHUTDOWN_MS = 10_000;
/** Refused connections are logged at most once per this interval. */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  // A bad --config-file or flag with --log-json is a JSON line too, before the log exists.
  fatalAsJsonLogIfAsked('hermod-gateway', argv);
  if (argv.includes('--help-config')) {
    process.stdout.write(`${describeConfig(CLI_DEFAULTS)}\n`);
    process.exit(0);
  }
  // --config-file names gateway files (routes, limits; hermod options under "hermod");
  // --config key=value sets hermod options, above the files and the environment.
  const { overrides, files, rest } = parseConfigArgs(argv);
  const program = commonOptions(
    new Command('hermod-gateway')
      .description('HTTP/JSON gateway: REST and JSON-RPC 2.0 in front of hermod (and oslo.messaging) RPC servers')
      .option('--host <host>', 'interface to listen on (default: listen.host, 127.0.0.1)')
      .option('--port <port>', 'TCP port, 0 = any free port (default: listen.port, 8080)', intAtLeast(0))
      .option('--transport-url <url>', `transport URL (default ${CLI_DEFAULT_URL}, the embedded router)`)
      .option(
        '--workers <n|max>',
        'worker processes (node:cluster) answering on the one port, each with its own connection; max = one per core (default 1: this process answers)',
      )
      .option('--shutdown-timeout <seconds>', 'on SIGTERM/SIGINT, how long running calls may finish (default 10 s)')
      .option(
        '--metrics-port <[host:]port>',
        "serve Prometheus metrics (HTTP requests, the gateway's RPC calls, its connection; with --workers every worker's, summed) at http://host:port/metrics; off unless given, host 127.0.0.1 unless given, port 0 = any free port",
      ),
    [
      'Configuration: --config-file gw.json (the gateway file, hermod options under "hermod"; repeatable, later wins), --config key=value | --config key value, --help-config (every key)',
    ],
  )
    .exitOverride(exitOnUsage)
    .parse(rest, { from: 'user' });
  const o = program.opts<
    { host?: string; port?: number; transportUrl?: string; shutdownTimeout?: string; workers?: string; metricsPort?: string } & LogFlags
  >();
  if (o.metricsPort !== undefined) parseMetricsAddress(o.metricsPort);
  // In seconds, as every bin's --shutdown-timeout (it was milliseconds here alone).
  const shutdownMs = parseShutdownTimeout(o.shutdownTimeout, GATEWAY_SHUTDOWN_MS);
  const count = o.workers === undefined ? 1 : parseWorkers(o.workers, '--workers');
  const worker = workerNumber();

  let gw: GatewayConfig = {};
  // The keys files' texts, in a worker: read by the primary like the configuration.
  let keys: SecretTexts = {};
  // Each file's hermod section is a named layer: a bad value there is reported from it.
  let layers: Array<{ source: string; values: Record<string, unknown> }> = [];
  if (worker === undefined) {
    for (const file of files) {
      const { hermod: section, ...part } = readGatewayConfig(file);
      const source = `file ${file}, section hermod`;
      layers.push({ source, values: hermodSection(section, source) });
      gw = mergeGatewayConfig(gw, part);
    }
    // Each file was checked on its own; what spans keys, on what they make together.
    if (files.length) resolveGatewayConfig(gw, files.length === 1 ? `file ${files[0]}` : `files ${files.join(', ')}`);
  } else {
    // The files as the primary read them at start (see SPEC_REQUEST): a restarted worker
    // serving the files as edited since would differ from the others.
    ({ gw, layers, keys } = (await specFromPrimary()) as { gw: GatewayConfig; layers: typeof layers; keys: SecretTexts });
  }
  gw.listen = { ...gw.listen, ...(o.host !== undefined ? { host: o.host } : {}), ...(o.port !== undefined ? { port: o.port } : {}) };
  const config = applyLogFlags(loadConfig({ defaults: CLI_DEFAULTS, layers, overrides }), o);
  const logName = worker === undefined ? 'hermod-gateway' : `hermod-gateway worker ${worker}`;
  const log = makeLogger(config, logName);
  captureConsole(log);
  // A failure from here on is a line of this log: JSON with --log-json.
  fatalAsJsonLog(config.log.json ? logName : undefined);

  // The primary answers nothing itself: node:cluster hands each accepted connection to a worker
  // in turn, and a connection stays with its worker. Workers that die are restarted; on
  // SIGTERM/SIGINT each drains as a single gateway does.
  if (worker === undefined && count > 1) {
    // Every check a worker would make at start (the file, route schemas, the keys file) fails
    // here, once, with exit 2, instead of in every worker and every restart.
    const probe = await getTransport('memory://', { config: defaultConfig() });
    try {
      createGateway(probe, gw);
    } finally {
      await probe.close();
    }
    // One scrape for the whole run: the primary sums what every worker's Metrics counted.
    const metrics = o.metricsPort === undefined ? undefined : await serveClusterMetrics(parseMetricsAddress(o.metricsPort));
    // A worker that ends before any worker listened met what a single gateway would have exited
    // on (the port taken, the broker refusing it): end the run with its status instead of
    // restarting it forever.
    const supervisor = new WorkerSupervisor({
      count,
      log,
      spec: { gw, layers, keys: secretTexts(gw) },
      onEarlyDeath: ({ worker: n, pid, code, signal }) => {
        if (shutdown.stopping) return true;
        log.error(`worker ${n} (pid ${pid}) exited (${signal ?? `status ${code}`}) before any worker listened; stopping`);
        // Its own status when it chose one (2 for a usage error, 5 for an unreachable broker), else 1.
        shutdown.stop('a worker failed to start', code ? code : EXIT.failed);
        return true;
      },
    });
    const shutdown = handleShutdown({
      log,
      timeoutMs: shutdownMs + PRIMARY_MARGIN_MS,
      target: supervisor.shutdownTarget(metrics),
    });
    // The workers seal job references with one key (a poll may reach any of them); without a
    // key file or variable, one made for this run, which they inherit with the environment.
    if (gw.jobs?.enabled !== false && !gw.jobs?.keyFile && !process.env[JOBS_KEY_ENV]?.trim())
      process.env[JOBS_KEY_ENV] = randomBytes(32).toString('base64');
    log.info(`starting ${count} workers (deadline of each on stop ${shutdownMs / 1000} s)`, { workers: count });
    if (metrics) log.announce(`metrics of all workers at ${metrics.url}`, { event: 'metrics', url: metrics.url });
    supervisor.start();
    return;
  }
  logConnectionState(log);

  let transport: Transport | undefined;
  let gateway: Gateway | undefined;
  // Installed before connecting: a signal (or the primary's stop) while connecting stops at once.
  let metrics: MetricsServer | undefined;
  /** Writes the refused-connections line still pending, at the stop (set once the gateway is made). */
  let flushRefusals = () => {};
  const shutdown = handleShutdown({
    log,
    timeoutMs: shutdownMs,
    ...(worker === undefined ? {} : { primaryRelaysSigint: () => process.connected }),
    target: {
      pending: () => (gateway && gateway.inFlight > 0 ? `${gateway.inFlight} call(s) in flight` : ''),
      aborted: () => aborted,
      graceful: async (deadline) => {
        flushRefusals();
        if (gateway) aborted = (await gateway.stop(deadline)).aborted;
        await transport?.close();
        await metrics?.close();
        return aborted;
      },
      abort: async () => {
        flushRefusals();
        // The calls still running are answered (504, as at the deadline) before the connections
        // are cut: closing them at once left every caller with an empty reply.
        await gateway?.abort();
        await transport?.close();
        await metrics?.close();
      },
    },
  });
  if (o.metricsPort !== undefined && worker !== undefined)
    new Metrics().start(); // answers the primary's scrapes
  else if (o.metricsPort !== undefined) {
    metrics = await exposeMetrics(o.metricsPort);
    log.announce(`metrics at ${metrics.url}`, { event: 'metrics', url: metrics.url });
  }
  let aborted = 0;
  if (worker !== undefined) onPrimaryStop((reason) => shutdown.stop(reason));
  transport = await getTransport(o.transportUrl, { config });
  if (shutdown.stopping) return;
  // One line when refusing starts, then at most one per interval with the count since. The
  // count of refusals past the line is written by a timer at the end of the interval, or at the
  // stop: written by the next refusal instead, a flood's count came whenever the next flood did
  // (minutes later, or never for the last one).
  let lastRefusalLog = 0;
  let refusedAtLog = 0;
  /** The last refusal not said in a line yet. */
  let unlogged: ConnectionRefusedEvent | undefined;
  let refusalTimer: NodeJS.Timeout | undefined;
  const logRefusals = () => {
    clearTimeout(refusalTimer);
    refusalTimer = undefined;
    const r = unlogged;
    if (!r) return;
    unlogged = undefined;
    const why = r.pipelined
      ? `it had more than ${r.limit} requests unanswered (maxPipelined)`
      : r.perAddress
        ? `${r.limit} open from its address (maxConnectionsPerAddress)`
        : `${r.limit} open (maxConnections)`;
    log.warn(
      `refused ${r.refused - refusedAtLog} connection(s) since the last such line (${r.refused} in all)${r.remoteAddress ? `, the last from ${r.remoteAddress}` : ''}: ${why}`,
      { event: 'connections-refused', refused: r.refused, limit: r.limit },
    );
    lastRefusalLog = Date.now();
    refusedAtLog = r.refused;
  };
  flushRefusals = logRefusals;
  gateway = createGateway(transport, {
    ...gw,
    ...(keys.auth !== undefined && gw.auth?.keysFile ? { authenticate: keysAuthenticator(keys.auth, gw.auth.keysFile) } : {}),
    ...(keys.jobs !== undefined ? { jobsKey: keys.jobs } : {}),
    onConnectionRefused: (event) => {
      unlogged = event;
      const wait = lastRefusalLog + REFUSAL_LOG_INTERVAL_MS - Date.now();
      if (wait <= 0) logRefusals();
      // Unref'd: a pending line never keeps the process up (the stop writes it).
      else refusalTimer ??= setTimeout(logRefusals, wait).unref();
    },
  });
  if (gateway.config.accessLog) {
    // One line per request; logSafe (in the logger) bounds and escapes the client's text.
    diagnostics_channel.subscribe('hermod:gateway:request', (message) => {
      const e = message as GatewayRequestEvent;
      const ms = Math.round(e.durationMs * 10) / 10;
      log.info(
        `${e.method} ${e.url} ${e.status} ${ms} ms ${e.requestId} ${e.remoteAddress ?? '-'}${e.user !== undefined ? ` user=${e.user}` : ''}`,
        {
          event: 'access',
          method: e.method,
          url: e.url,
          route: e.route,
          status: e.status,
          ms,
          requestId: e.requestId,
          ...(e.remoteAddress ? { remoteAddress: e.remoteAddress } : {}),
          ...(e.user !== undefined ? { user: e.user } : {}),
        },
      );
    });
  }
  // A stop while binding makes start() reject (ClosedError): the stop in progress ends the process.
  const addr = await gateway.start().catch((err: unknown) => {
    if (!shutdown.stopping) throw listenFailure(err as NodeJS.ErrnoException, gateway!.config.listen);
    // The stop's own ClosedError is expected; anything else (the bind it waited on failed) is said.
    if ((err as { code?: string }).code !== ClosedError.CODE) log.warn(`the gateway did not start: ${(err as Error).message}`);
    return undefined;
  });
  if (!addr || shutdown.stopping) return;
  log.announce(
    `listening on ${addr.url} (transport ${transport.url}, ${gateway.config.routes.length} route(s), policy ${gateway.config.mappingPolicy})`,
  );
  tellPrimary(READY_MESSAGE);
}

/** A failed listen said with the address and what to do (a bare "listen EADDRINUSE" named neither); other errors as they are. */
function listenFailure(err: NodeJS.ErrnoException, listen: { host: string; port: number }): Error {
  const where = `${listen.host}:${listen.port}`;
  switch (err.code) {
    case 'EADDRINUSE':
      return new Error(`cannot listen on ${where}: the port is in use (EADDRINUSE); use --port <n> to pick another (0 = any free port)`);
    case 'EACCES':
      return new Error(`cannot listen on ${where}: not allowed (EACCES; ports below 1024 need privileges); use --port`);
    case 'EADDRNOTAVAIL':
      return new Error(`cannot listen on ${where}: no interface of this host has that address (EADDRNOTAVAIL); use --host`);
    default:
      return err;
  }
}

/** The texts of the keys files a gateway configuration names (the primary's reading of them). */
interface SecretTexts {
  auth?: string;
  jobs?: string;
}

function secretTexts(gw: GatewayConfig): SecretTexts {
  // Read after the probe gateway did (it reported any error, exit 2): these reads succeed.
  return {
    ...(gw.auth?.keysFile ? { auth: readFileSync(gw.auth.keysFile, 'utf8') } : {}),
    ...(gw.jobs?.keyFile && gw.jobs.enabled !== false ? { jobs: readFileSync(gw.jobs.keyFile, 'utf8') } : {}),
  };
}

main().catch(fatal);
