#!/usr/bin/env node
/**
 * `hermod <command>`: the operations commands. Each subcommand is one row of {@link COMMANDS}
 * (its one-line summary and its main function, loaded when chosen).
 */
// First: it must run before the other modules load (see the module).
import '../src/cli/young-gen.js';
import diagnostics_channel from 'node:diagnostics_channel';
import { existsSync } from 'node:fs';
import { Command } from 'commander';
import { cliConfig, describeConfig, parseConfigArgs } from '../src/cli/config-args.js';
import { CLI_DEFAULTS } from '../src/cli/defaults.js';
import { EXIT, exitOnUsage, failureStatus, fatal, UsageError } from '../src/cli/exit-codes.js';
import { logConnectionState, makeLogger } from '../src/cli/log.js';
import { HERMOD_VERSION } from '../src/cli/program.js';
import { handleShutdown, parseShutdownTimeout } from '../src/cli/shutdown.js';
import { type ConfigValues, closeKey, type HermodConfig, loadConfig } from '../src/config/index.js';
import type { ConnectionState } from '../src/core/diagnostics.js';
import { ConfigError } from '../src/core/errors.js';
import { exposeMetrics, Metrics, type MetricsServer, parseMetricsAddress, serveClusterMetrics } from '../src/ops/metrics.js';
import {
  DEFAULT_RECYCLE_AFTER,
  DEFAULT_RUN_FILES,
  parseRecycleAfter,
  parseWorkers,
  type RunWatch,
  readRunFile,
  type ServiceSpec,
} from '../src/ops/run/config.js';
import { ServiceGroup } from '../src/ops/run/services.js';
import { onPrimaryStop, READY_MESSAGE, tellPrimary, WorkerSupervisor, workerNumber } from '../src/ops/run/workers.js';
import { runStatus } from '../src/ops/status/index.js';

/** The subcommands: name → summary and main (argv after the name). */
const COMMANDS: Record<string, { summary: string; main: (argv: string[]) => Promise<void> }> = {
  run: { summary: 'run the services a hermod.config.json declares (workers, hot reload)', main: runCommand },
  status: { summary: 'a live table of the servers on topics, from their presence beacons', main: statusCommand },
};

async function statusCommand(argv: string[]): Promise<void> {
  const { config, rest } = cliConfig(argv, CLI_DEFAULTS);
  // Reconnects on stderr, or an unreachable broker is a silent wait until the connect gives up.
  if (!rest.some((a) => a === '--help' || a === '-h')) logConnectionState(makeLogger(config, 'hermod status', true));
  process.exitCode = await runStatus(rest, config);
}

/** `hermod run`'s own defaults: the CLIs' (the local router), and JSON log lines for aggregators. */
const RUN_DEFAULTS: ConfigValues = { ...CLI_DEFAULTS, 'log.json': true };

/** Past the workers' deadline, how long the primary waits for them to exit before it kills them. */
const PRIMARY_MARGIN_MS = 1500;

async function runCommand(argv: string[]): Promise<void> {
  if (argv.includes('--help-config')) {
    process.stdout.write(`${describeConfig(RUN_DEFAULTS)}\n`);
    process.exit(EXIT.ok);
  }
  const { overrides, files, rest } = parseConfigArgs(argv);
  const program = new Command('hermod run')
    .description('Run the services of a deployment file (default ./hermod.config.json, .js, .mjs or .ts): one RPC server per service')
    .argument('[file]', 'the run file: JSON, or a module (.js/.mjs/.ts) exporting it')
    .option('--workers <n|max>', 'worker processes per service (node:cluster), over the file; max = one per core')
    .option('--watch', 'reload endpoint modules when they or their local imports change')
    .option('--watch-polling [ms]', 'as --watch, polling file stats every ms (containers, network filesystems; default 300)')
    .option(
      '--recycle-after <n>',
      `with --watch, hand each worker over to a fresh process after n reloads (reloaded modules stay in memory); 0 = never (default ${DEFAULT_RECYCLE_AFTER})`,
    )
    .option('--shutdown-timeout <seconds>', 'on SIGTERM/SIGINT, how long running requests may finish (default rpc.stopTimeout, 25 s)')
    .option(
      '--metrics-port <[host:]port>',
      "serve Prometheus metrics (every worker's, summed) at http://host:port/metrics; over the file's metricsPort",
    )
    .version(HERMOD_VERSION, '-V, --version', "print hermod's version")
    .addHelpText('after', '\nAlso: --config key=value | --config key value, --config-file file.json, --help-config')
    .exitOverride(exitOnUsage)
    .parse(rest, { from: 'user' });
  const o = program.opts<{
    workers?: string;
    watch?: boolean;
    watchPolling?: string | true;
    recycleAfter?: string;
    shutdownTimeout?: string;
    metricsPort?: string;
  }>();
  const cliWorkers = o.workers === undefined ? undefined : parseWorkers(o.workers, '--workers');
  const file = (program.args[0] as string | undefined) ?? DEFAULT_RUN_FILES.find((f) => existsSync(f));
  if (!file) throw new UsageError(`no run file named and none of ${DEFAULT_RUN_FILES.join(', ')} here`);
  const spec = await readRunFile(file);
  // A module that is not there fails every worker alike, at every restart: said once, here.
  for (const s of spec.services) {
    for (const m of s.endpoints) {
      if (!existsSync(m))
        throw new ConfigError(`${file}: services.${s.name}.endpoints: ${m} does not exist`, { key: `services.${s.name}.endpoints` });
    }
  }

  // The run file's sections are named layers, so a bad value there is reported from its section,
  // and one from --config, a --config-file or the environment from its own source.
  const top = { source: `${file}: config`, values: spec.config };
  const configOf = (s?: ServiceSpec): HermodConfig =>
    loadConfig({
      defaults: RUN_DEFAULTS,
      layers: s ? [top, { source: `${file}: services.${s.name}.config`, values: s.config }] : [top],
      files,
      overrides,
    });
  const base = configOf();
  const configs = new Map(spec.services.map((s) => [s, configOf(s)]));
  const workersOf = (s: ServiceSpec) => cliWorkers ?? s.workers ?? spec.workers ?? 1;
  let watch: RunWatch | false = spec.watch ?? false;
  if (o.watch || o.watchPolling !== undefined) watch = { ...(watch || {}) };
  if (o.watchPolling !== undefined && watch) {
    watch.usePolling = true;
    if (o.watchPolling !== true) {
      const ms = Number(o.watchPolling);
      if (!Number.isInteger(ms) || ms < 1) throw new UsageError(`--watch-polling takes an interval in ms ≥ 1, got '${o.watchPolling}'`);
      watch.interval = ms;
    }
  }
  if (o.recycleAfter !== undefined && !watch)
    throw new UsageError('--recycle-after applies to a watched run (--watch, or watch in the run file)');
  const recycleAfter = !watch
    ? 0
    : o.recycleAfter !== undefined
      ? parseRecycleAfter(o.recycleAfter, '--recycle-after')
      : (watch.recycleAfter ?? DEFAULT_RECYCLE_AFTER);
  const timeoutMs = parseShutdownTimeout(o.shutdownTimeout, base.rpc.stopTimeout);
  const worker = workerNumber();
  const log = makeLogger(base, worker === undefined ? 'hermod run' : `hermod run worker ${worker}`);
  const count = Math.max(...spec.services.map(workersOf));
  const metricsAt = o.metricsPort ?? spec.metricsPort;
  if (metricsAt !== undefined) parseMetricsAddress(metricsAt);

  // A recycled run serves from a cluster worker even with one worker: ES modules re-imported on
  // each reload are never unloaded, so the process holding them must be replaced now and then,
  // and a worker can be handed over to a fresh one while the run itself (its pid for the
  // service manager, its signals, its metrics port) stays.
  if (worker === undefined && (count > 1 || recycleAfter > 0)) {
    // One scrape for the whole run: the primary sums what every worker's Metrics counted.
    const metrics = metricsAt === undefined ? undefined : await serveClusterMetrics(parseMetricsAddress(metricsAt));
    const supervisor = new WorkerSupervisor({ count, log });
    handleShutdown({
      log,
      timeoutMs: timeoutMs + PRIMARY_MARGIN_MS,
      target: {
        pending: () => (supervisor.alive() > 0 ? `${supervisor.alive()} worker(s)` : ''),
        aborted: () => supervisor.aborted(),
        graceful: async (deadline) => {
          const failed = await supervisor.stop(deadline);
          await metrics?.close();
          return failed;
        },
        abort: async () => {
          await supervisor.abort();
          await metrics?.close();
        },
      },
    });
    log.info(
      `starting ${count} worker${count === 1 ? '' : 's'} for ${spec.services.length} service(s) from ${file}${recycleAfter > 0 ? `, each recycled after ${recycleAfter} reloads` : ''}`,
      { workers: count, recycleAfter },
    );
    if (metrics) log.info(`metrics of all workers at ${metrics.url}`, { event: 'metrics', url: metrics.url });
    supervisor.start();
    return;
  }

  logConnectionState(log);
  let metrics: MetricsServer | undefined;
  if (metricsAt !== undefined && worker !== undefined)
    new Metrics().start(); // answers the primary's scrapes
  else if (metricsAt !== undefined) {
    metrics = await exposeMetrics(metricsAt);
    log.info(`metrics at ${metrics.url}`, { event: 'metrics', url: metrics.url });
  }
  const group = new ServiceGroup({
    services: spec.services.filter((s) => worker === undefined || workersOf(s) >= worker),
    ...(worker === undefined ? {} : { worker }),
    workersOf,
    configFor: (s) => configs.get(s)!,
    log,
    watch: watch && { ...watch },
    beacons: spec.beacons ?? false,
    recycleAfter: worker === undefined ? 0 : recycleAfter,
    onRecycle: (reloads) => tellPrimary({ hermod: 'recycle', reloads }),
  });
  const shutdown = handleShutdown({
    log,
    timeoutMs,
    ...(worker === undefined ? {} : { primaryRelaysSigint: () => process.connected }),
    target: {
      pending: () => group.pending(),
      aborted: () => group.aborted(),
      graceful: async (deadline) => {
        await group.stop();
        const aborted = await group.wait(deadline);
        await metrics?.close();
        return aborted;
      },
      abort: async () => {
        await group.abort();
        await metrics?.close();
      },
    },
  });
  if (worker !== undefined) onPrimaryStop((reason) => shutdown.stop(reason));
  // A connection that gave up (declares refused for flags a peer set while it was away, links a
  // router refuses after a reconnect) ends the services on it for good: stop, exit 2 or 5.
  diagnostics_channel.subscribe('hermod:connection:state', (e) => {
    const ev = e as ConnectionState;
    if (ev.state === 'failed') shutdown.stop('a connection gave up', failureStatus(ev.error));
  });
  await group.start();
  // The primary hands over to a recycled worker's replacement once this is said.
  if (worker !== undefined && !shutdown.stopping) tellPrimary(READY_MESSAGE);
}

async function main(): Promise<void> {
  const [name, ...argv] = process.argv.slice(2);
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const rows = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`);
    process.stdout.write(
      `Usage: hermod <command> [options]   (hermod <command> --help)\n\nCommands:\n${rows.join('\n')}\n\nOptions:\n  -V, --version  print hermod's version\n  -h, --help     this text\n`,
    );
    process.exit(name === undefined ? EXIT.usage : EXIT.ok);
  }
  if (name === '-V' || name === '--version') {
    process.stdout.write(`${HERMOD_VERSION}\n`);
    process.exit(EXIT.ok);
  }
  const command = COMMANDS[name];
  if (!command) {
    const guess = closeKey(name, Object.keys(COMMANDS));
    throw new UsageError(
      `unknown command '${name}'${guess ? `; did you mean '${guess}'?` : ''} (commands: ${Object.keys(COMMANDS).join(', ')})`,
    );
  }
  await command.main(argv);
}

main().catch(fatal);
