import diagnostics_channel from 'node:diagnostics_channel';
import { Command, Option } from 'commander';
import { CONFIG_HELP_LINE, cliConfig } from '../../src/cli/config-args.js';
import { CLI_DEFAULT_URL, CLI_DEFAULTS } from '../../src/cli/defaults.js';
import { DemoEndpoints } from '../../src/cli/demo-endpoints.js';
import { quitOnStopWhile } from '../../src/cli/early-signals.js';
import { describeEndpoint, loadEndpoints } from '../../src/cli/endpoints.js';
import { exitOnUsage, failureStatus, fatal, fatalAsJsonLog, fatalAsJsonLogIfAsked } from '../../src/cli/exit-codes.js';
import { captureConsole, lineBudget, logConnectionState, makeLogger, PEER_LINES_PER_SECOND } from '../../src/cli/log.js';
import { applyLogFlags, commonOptions, intAtLeast, type LogFlags } from '../../src/cli/program.js';
import { handleShutdown, parseShutdownTimeout } from '../../src/cli/shutdown.js';
import type { ConnectionState, DuplicateMessageEvent, ServerRequestEvent } from '../../src/core/diagnostics.js';
import { Target } from '../../src/core/target.js';
import { lingerPastDeadline } from '../../src/jobs/runner.js';
import { importModule } from '../../src/ops/load-endpoints.js';
import { PresenceBeacon } from '../../src/ops/status/beacon.js';
import { RPCServer } from '../../src/rpc/server.js';
import { getTransport } from '../../src/transport.js';

async function main(): Promise<void> {
  // A bad --config or flag with --log-json is a JSON line too, before the log exists.
  fatalAsJsonLogIfAsked('rpc-server', process.argv.slice(2));
  const { config: loaded, rest } = cliConfig(process.argv.slice(2), CLI_DEFAULTS);
  const program = commonOptions(
    new Command('rpc-server')
      .description('Serve RPC endpoints on a topic (built-in demo endpoints: echo, add, sleep, fail, info, and resize, a long operation)')
      .argument('<name>', "this server's name (Target.server)")
      .requiredOption('-t, --topic <topic>', 'topic to serve')
      .option('--exchange <exchange>', 'exchange (default controlExchange, "openstack")')
      .option('--namespace <namespace>', 'namespace of the built-in endpoints')
      .option('--target-version <version>', 'version of the built-in endpoints (X.Y)', '1.0')
      .option('--endpoints <modules...>', 'ES modules whose default export is an endpoint, a list of them, a class or a factory')
      .option('--transport-url <url>', `transport URL (default ${CLI_DEFAULT_URL}, the embedded router)`)
      .option('--metrics-port <[host:]port>', 'serve Prometheus metrics at http://host:port/metrics (host 127.0.0.1 unless given)')
      .option('--beacon [ms]', 'send presence beacons for `hermod status` every ms (default 5000)', intAtLeast(50))
      .option('--concurrency <n>', `requests run at once (default rpc.serverConcurrency, ${loaded.rpc.serverConcurrency})`, intAtLeast(1))
      .option(
        '--shutdown-timeout <seconds>',
        `on SIGTERM/SIGINT, how long running requests may finish (default rpc.stopTimeout, ${loaded.rpc.stopTimeout / 1000} s)`,
      )
      .addOption(
        new Option(
          '--stop-jobs <strategy>',
          `on SIGTERM/SIGINT, running jobs: wait (finish within --shutdown-timeout, polls answered) or abort (cancelled at once; pollers read cancelled) (default jobs.stopStrategy, ${loaded.jobs.stopStrategy})`,
        ).choices(['wait', 'abort']),
      ),
    ['Logs a line per failed request at info, per request at debug (--log-level debug).', CONFIG_HELP_LINE],
  )
    .exitOverride(exitOnUsage)
    .parse(rest, { from: 'user' });
  const [name] = program.args as [string];
  const o = program.opts<
    {
      topic: string;
      exchange?: string;
      namespace?: string;
      targetVersion: string;
      endpoints?: string[];
      transportUrl?: string;
      concurrency?: number;
      shutdownTimeout?: string;
      stopJobs?: 'wait' | 'abort';
      metricsPort?: string;
      beacon?: number | true;
    } & LogFlags
  >();
  const config = applyLogFlags(loaded, o);
  const timeoutMs = parseShutdownTimeout(o.shutdownTimeout, config.rpc.stopTimeout);
  const log = makeLogger(config, `rpc-server ${name}`);
  captureConsole(log);
  // A failure from here on (cannot connect, a refused login) is a line of this log: JSON with --log-json.
  fatalAsJsonLog(config.log.json ? `rpc-server ${name}` : undefined);
  logConnectionState(log);

  const target = new Target({ topic: o.topic, server: name, ...(o.exchange ? { exchange: o.exchange } : {}) });
  // Before the modules load, so that they get it: getTransport connects nothing yet.
  const transport = await getTransport(o.transportUrl, { config });
  const endpoints = o.endpoints?.length
    ? await quitOnStopWhile(loadEndpoints(o.endpoints, { server: name, topic: o.topic, transport }, importModule), (signal) => {
        log.info(`${signal} while loading the endpoint modules: nothing serves yet; stopped`, { event: 'stopped', signal });
        process.exit(0);
      })
    : [new DemoEndpoints(name, o.namespace, o.targetVersion)];
  // Not from the package index, and metrics only when asked for: a server holds in memory the
  // code it loads, and the index brings the router (rhea) and prom-client.
  const metrics = o.metricsPort === undefined ? undefined : await (await import('../../src/ops/metrics.js')).exposeMetrics(o.metricsPort);
  if (metrics) log.announce(`metrics at ${metrics.url}`);
  const server = new RPCServer(transport, target, endpoints, o.concurrency ? { concurrency: o.concurrency } : {});
  const beacon = o.beacon === undefined ? undefined : new PresenceBeacon(server, o.beacon === true ? {} : { intervalMs: o.beacon });

  // A request that succeeded is logged at debug, one that failed at info: at info, a line per
  // request would cost a busy server much of its throughput (README "Logging").
  const debug = config.log.level === 'debug';
  if (debug || config.log.level === 'info') {
    // Failed requests are a peer's to cause: a flood of them is a line a second past the budget.
    const failures = lineBudget(PEER_LINES_PER_SECOND, 1000, (n) =>
      log.info(`${n} more failed request(s) in the last second not logged`, { event: 'failures-not-logged', skipped: n }),
    );
    diagnostics_channel.subscribe('hermod:rpc:server:request', (e) => {
      const ev = e as ServerRequestEvent;
      // At info, a request that succeeded costs no formatting of a line nobody writes.
      if (ev.outcome === 'ok' && !debug) return;
      if (ev.outcome !== 'ok' && !failures()) return;
      const err = ev.error ? ` ${ev.error.name}: ${ev.error.message}` : '';
      (ev.outcome === 'ok' ? log.debug : log.info)(`${ev.kind} ${ev.method} ${ev.outcome} ${ev.durationMs.toFixed(1)}ms${err}`, {
        method: ev.method,
        outcome: ev.outcome,
        // A tenth of a millisecond, as the text says (it printed 1.2608030000001236).
        durationMs: Math.round(ev.durationMs * 10) / 10,
      });
    });
  }
  const invalid = lineBudget(PEER_LINES_PER_SECOND, 1000, (n) =>
    log.warn(`${n} more invalid or duplicate message(s) in the last second not logged`, { event: 'invalid-not-logged', skipped: n }),
  );
  diagnostics_channel.subscribe('hermod:message:invalid', (e) => {
    const ev = e as { error: Error };
    if (invalid()) log.warn(`dropped an invalid message: ${ev.error.message}`);
  });
  // As oslo logs it; a peer can send copies at will, so within the same budget.
  diagnostics_channel.subscribe('hermod:message:duplicate', (e) => {
    if (invalid()) log.warn(`ignoring duplicate message ${(e as DuplicateMessageEvent).uniqueId}`);
  });

  // Installed before start(): a signal while connecting stops at once instead of being lost.
  const shutdown = handleShutdown({
    log,
    timeoutMs,
    // Jobs cancelled at the deadline are still polled for a while: the backstop waits for that
    // (only while the server says so).
    overrunMs: lingerPastDeadline(config.jobs),
    target: {
      pending: () => {
        const { inFlight, queued, jobs } = server.stats();
        const active = jobs.running + jobs.pending;
        const what = [
          inFlight + queued > 0 ? `${inFlight} in-flight request(s)` : '',
          active > 0 ? `${active} job(s)${(o.stopJobs ?? config.jobs.stopStrategy) === 'abort' ? ' (cancelling them)' : ''}` : '',
          jobs.uncollected > 0 ? `pollers to collect ${jobs.uncollected} ended job(s)` : '',
        ];
        return what.filter(Boolean).join(', ');
      },
      aborted: () => server.stats().aborted,
      lingering: () => server.stats().jobs.uncollected > 0,
      graceful: async (deadline) => {
        // The goodbye is sent, not waited for, before the wait: with no status view to take it, it
        // takes up to twice the beacon's bound (600 ms), which pushed the abort of calls running
        // at the deadline past the backstop (their callers timed out instead of ServerStopped).
        // The deadline counts from the signal, as the backstop's does.
        const t0 = Date.now();
        const goodbye = beacon?.stop();
        await server.stop(o.stopJobs ? { jobs: o.stopJobs } : {});
        const res = await server.wait(Math.max(0, deadline - (Date.now() - t0)));
        await goodbye;
        await transport.close();
        await metrics?.close();
        return res.aborted;
      },
      // Their callers get ServerStopped; unacknowledged requests go back to the broker.
      abort: async () => {
        beacon?.abort();
        await server.abort();
        await transport.close();
        await metrics?.close();
      },
    },
  });

  // A subscription that can never come back (RabbitMQ refuses our declares for flags a peer set
  // meanwhile; a router refuses our links after a reconnect): logged by logConnectionState; stop,
  // and exit as for a configuration error (2) or a refusal (5).
  transport.on('state', (s: ConnectionState) => {
    if (s.state === 'failed') shutdown.stop('the connection gave up', failureStatus(s.error));
  });
  await server.start();
  if (shutdown.stopping) return;
  beacon?.start();
  log.info(
    `serving topic ${o.topic} as ${name} on ${transport.url} (exchange ${target.exchange ?? config.controlExchange}): ${endpoints.map(describeEndpoint).join('; ')}`,
  );
}

main().catch(fatal);
