/**
 * `hermod <command>`: the operations commands. Each subcommand is one row of {@link COMMANDS}
 * (its one-line summary and its main function, loaded when chosen).
 */
import diagnostics_channel from 'node:diagnostics_channel';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { CONFIG_HELP_LINE, cliConfig, describeConfig, parseConfigArgs } from '../../src/cli/config-args.js';
import { CLI_DEFAULTS } from '../../src/cli/defaults.js';
import { quitOnStopWhile, releaseStartupSignals } from '../../src/cli/early-signals.js';
import {
  EXIT,
  EXIT_TABLE,
  exitOnUsage,
  failureStatus,
  fatal,
  fatalAsJsonLog,
  fatalAsJsonLogIfAsked,
  UsageError,
} from '../../src/cli/exit-codes.js';
import { captureConsole, lineBudget, logConnectionState, makeLogger, PEER_LINES_PER_SECOND } from '../../src/cli/log.js';
import { applyLogFlags, commonOptions, HERMOD_VERSION, type LogFlags, plainNumber, positiveSeconds } from '../../src/cli/program.js';
import { closeBeforeExit, exitWhenOutputCloses, handleShutdown, onOutputClosed, parseShutdownTimeout } from '../../src/cli/shutdown.js';
import { type ConfigValues, closeKey, type HermodConfig, loadConfig } from '../../src/config/index.js';
import type { ConnectionState } from '../../src/core/diagnostics.js';
import { ConfigError, TransportError } from '../../src/core/errors.js';
import { modulePathProblem } from '../../src/core/module-paths.js';
import { escapeUnsafe } from '../../src/core/unsafe-text.js';
import { lingerPastDeadline } from '../../src/jobs/runner.js';
import { exposeMetrics, Metrics, type MetricsServer, parseMetricsAddress, serveClusterMetrics } from '../../src/ops/metrics.js';
import {
  checkServerQueues,
  checkWatchInterval,
  DEFAULT_RECYCLE_AFTER,
  DEFAULT_RUN_FILES,
  parseRecycleAfter,
  parseWorkers,
  type RunSpec,
  type RunWatch,
  readRunFile,
  type ServiceSpec,
} from '../../src/ops/run/config.js';
import { RunFileWatch } from '../../src/ops/run/reloader.js';
import { ServiceGroup } from '../../src/ops/run/services.js';
import {
  OUTPUT_CLOSED_MESSAGE,
  onPrimaryStop,
  READY_MESSAGE,
  specFromPrimary,
  tellPrimary,
  WorkerSupervisor,
  workerNumber,
} from '../../src/ops/run/workers.js';
import { PRESENCE_TOPIC, PresenceView } from '../../src/ops/status/index.js';
import { renderTable, UNKNOWN_PEERS } from '../../src/ops/status/table.js';
import { getTransport } from '../../src/transport.js';

/** The subcommands: name → summary and main (argv after the name). */
const COMMANDS: Record<string, { summary: string; main: (argv: string[]) => Promise<void> }> = {
  run: { summary: 'run the services a hermod.config.json declares (workers, hot reload)', main: runCommand },
  status: { summary: 'a live table of the servers on topics, from their presence beacons', main: statusCommand },
};

// `hermod status [topic…]`: the command line of the presence view (src/ops/status), in seconds as
// the other bins' durations, with every bin's flags.
/** A commander parser for a value: `--presence-topic --transport-url x` took the next flag as the topic. */
function notAnOption(v: string): string {
  if (v.startsWith('-')) throw new InvalidArgumentError(`needs a value, got the option ${v}.`);
  return v;
}

/**
 * Runs `hermod status` with `argv` (after the subcommand's name) over `config` (the bin's
 * configuration flags, already taken out). Prints a live table (or JSON) every `--refresh`
 * seconds until SIGINT/SIGTERM; with `--once`, what `--wait` seconds of listening saw. Resolves
 * with the exit status; throws what the bins' `fatal` reports (a broker `--once` cannot reach
 * within `--wait`: exit 5).
 */
async function runStatusCommand(argv: string[], config: HermodConfig): Promise<number> {
  const program = commonOptions(
    new Command('hermod status')
      .description('Show the hermod servers that send presence beacons, live (servers started with beacons on)')
      .argument('[topics...]', 'topics to show (default: all)')
      .option('--transport-url <url>', 'transport URL (default: the transportUrl config option)', notAnOption)
      .option('--exchange <exchange>', 'exchange of the presence topic (default: controlExchange)', notAnOption)
      .option('--presence-topic <topic>', 'topic beacons are sent to', notAnOption, PRESENCE_TOPIC)
      .option('--refresh <seconds>', 'refresh every this many seconds', positiveSeconds, 1)
      .option('--once', 'listen for --wait seconds, print once and exit (5 if the broker cannot be reached by then)')
      .option('--wait <seconds>', 'with --once: how long to listen', positiveSeconds, 6)
      .option('--json', 'print JSON (one object per refresh) instead of a table'),
    [CONFIG_HELP_LINE],
  )
    .exitOverride(exitOnUsage)
    .parse(argv, { from: 'user' });
  const topics = program.args;
  const o = program.opts<
    {
      transportUrl?: string;
      exchange?: string;
      presenceTopic: string;
      refresh: number;
      once?: boolean;
      wait: number;
      json?: boolean;
    } & LogFlags
  >();
  const settings = applyLogFlags(config, o);
  fatalAsJsonLog(settings.log.json ? 'hermod status' : undefined);
  // Reconnects on stderr, or an unreachable broker is a silent wait.
  const log = makeLogger(settings, 'hermod status', true);
  logConnectionState(log);
  // Warnings (a URL option overriding --config) and rhea's console output as lines of this log,
  // as every other command has them: they were plain text among --log-json's lines.
  captureConsole(log);
  const transport = closeBeforeExit(await getTransport(o.transportUrl, { config: settings }));
  const view = new PresenceView(transport, { presenceTopic: o.presenceTopic, ...(o.exchange ? { exchange: o.exchange } : {}) });
  const tty = process.stdout.isTTY && !o.json;
  const print = () => {
    const rows = view.rows(topics);
    // The rows are peers' text: JSON leaves C1 controls, bidi overrides and U+2028 raw.
    if (o.json)
      process.stdout.write(
        `${escapeUnsafe(JSON.stringify({ time: new Date().toISOString(), topics, servers: rows, note: UNKNOWN_PEERS }))}\n`,
      );
    else process.stdout.write(`${tty && !o.once ? '\x1b[H\x1b[2J' : ''}${renderTable(rows, topics)}`);
  };
  try {
    if (o.once) {
      // One deadline for connecting and listening: --once is for scripts, which must not wait
      // for the connect's own budget (rpc.responseTimeout) when they asked for a few seconds.
      const deadline = Date.now() + o.wait * 1000;
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((r) => {
        timer = setTimeout(() => r('late'), o.wait * 1000);
      });
      try {
        if ((await Promise.race([view.start(), late])) === 'late') {
          const s = transport.state;
          const why = s.state === 'reconnecting' && s.reason ? `: ${s.reason}` : '';
          throw new TransportError(`cannot connect to ${transport.url} within --wait (${o.wait} s)${why}`);
        }
        await new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())));
      } finally {
        clearTimeout(timer);
      }
      print();
      return 0;
    }
    await view.start();
    await new Promise<void>((resolve) => {
      const timer = setInterval(print, o.refresh * 1000);
      const end = () => {
        clearInterval(timer);
        process.off('SIGINT', end);
        process.off('SIGTERM', end);
        resolve();
      };
      process.on('SIGINT', end);
      process.on('SIGTERM', end);
      print();
    });
    return 0;
  } finally {
    await view.stop();
    await transport.close();
  }
}

async function statusCommand(argv: string[]): Promise<void> {
  // Its failures (cannot connect within --wait, a bad flag) are lines of its log, JSON when asked.
  fatalAsJsonLogIfAsked('hermod status', argv);
  exitWhenOutputCloses();
  const { config, rest } = cliConfig(argv, CLI_DEFAULTS);
  process.exitCode = await runStatusCommand(rest, config);
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
  // Its log is JSON by default: so is a failure before the configuration is read (a bad
  // --config, an unknown flag, --workers), as one of the run file's was already.
  const worker = workerNumber();
  const logName = worker === undefined ? 'hermod run' : `hermod run worker ${worker}`;
  fatalAsJsonLog(logName);
  const { overrides, files, rest } = parseConfigArgs(argv);
  const program = commonOptions(
    new Command('hermod run')
      .description(
        'Run the services of a deployment file (default ./hermod.config.json, .js, .mjs, .cjs or .ts): one RPC server per service',
      )
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
      ),
    [CONFIG_HELP_LINE],
  )
    .exitOverride(exitOnUsage)
    .parse(rest, { from: 'user' });
  const o = program.opts<
    {
      workers?: string;
      watch?: boolean;
      watchPolling?: string | true;
      recycleAfter?: string;
      shutdownTimeout?: string;
      metricsPort?: string;
    } & LogFlags
  >();
  const cliWorkers = o.workers === undefined ? undefined : parseWorkers(o.workers, '--workers');
  // A failure before the configuration is read (the run file, a missing module) is a line of
  // the run's default log, JSON; once read, of the log it configures.
  // Workers serve the run file and the configuration (its sections, --config-file files, the
  // environment) as the primary read them (see SPEC_REQUEST), however often they restart.
  const fromPrimary =
    worker === undefined ? undefined : ((await specFromPrimary()) as { spec: RunSpec; base: HermodConfig; configs: HermodConfig[] });
  const spec = fromPrimary?.spec ?? (await readRunFileOrQuit(runFileOf(program.args[0] as string | undefined)));
  const file = spec.file;
  // A module that is not there fails every worker alike, at every restart: said once, here.
  for (const s of spec.services) {
    for (const m of s.endpoints) {
      const problem = modulePathProblem(m);
      if (problem) throw new ConfigError(`${file}: services.${s.name}.endpoints: ${problem}`, { key: `services.${s.name}.endpoints` });
    }
  }

  // The run file's sections are named layers, so a bad value there is reported from its section,
  // and one from --config, a --config-file or the environment from its own source.
  const top = { source: `${file}: config`, values: spec.config };
  const configOf = (s?: ServiceSpec): HermodConfig =>
    applyLogFlags(
      loadConfig({
        defaults: RUN_DEFAULTS,
        layers: s ? [top, { source: `${file}: services.${s.name}.config`, values: s.config }] : [top],
        files,
        overrides,
      }),
      o,
    );
  const base = fromPrimary?.base ?? configOf();
  const configs = new Map(spec.services.map((s, i) => [s, fromPrimary?.configs[i] ?? configOf(s)]));
  const workersOf = (s: ServiceSpec) => cliWorkers ?? s.workers ?? spec.workers ?? 1;
  if (worker === undefined) checkServerQueues(spec, { workersOf, configOf: (s) => configs.get(s)! });
  let watch: RunWatch | false = spec.watch ?? false;
  if (o.watch || o.watchPolling !== undefined) watch = { ...(watch || {}) };
  if (o.watchPolling !== undefined && watch) {
    watch.usePolling = true;
    if (o.watchPolling !== true) {
      const ms = plainNumber(String(o.watchPolling));
      if (!Number.isInteger(ms) || ms < 1 || ms > 2 ** 31 - 1)
        throw new UsageError(`--watch-polling takes an interval in ms from 1 to ${2 ** 31 - 1}, got '${o.watchPolling}'`);
      watch.interval = ms;
    }
  }
  checkWatchInterval(watch, file);
  if (o.recycleAfter !== undefined && !watch)
    throw new UsageError('--recycle-after applies to a watched run (--watch, or watch in the run file)');
  const recycleAfter = !watch
    ? 0
    : o.recycleAfter !== undefined
      ? parseRecycleAfter(o.recycleAfter, '--recycle-after')
      : (watch.recycleAfter ?? DEFAULT_RECYCLE_AFTER);
  const timeoutMs = parseShutdownTimeout(o.shutdownTimeout, base.rpc.stopTimeout);
  // Each service is an RPC server: jobs cancelled at the deadline are still polled for a while.
  const overrunMs = Math.max(0, ...spec.services.map((s) => lingerPastDeadline(configs.get(s)!.jobs)));
  fatalAsJsonLog(base.log.json ? logName : undefined);
  const log = makeLogger(base, logName);
  captureConsole(log);
  const count = Math.max(...spec.services.map(workersOf));
  const metricsAt = o.metricsPort ?? spec.metricsPort;
  if (metricsAt !== undefined) parseMetricsAddress(metricsAt);

  // A recycled run serves from a cluster worker even with one worker: ES modules re-imported on
  // each reload are never unloaded, so the process holding them must be replaced now and then,
  // and a worker can be handed over to a fresh one while the run itself (its pid for the
  // service manager, its signals, its metrics port) stays.
  // The primary (or the single process) of a watched run says when the run file is edited.
  const runFileWatch = watch && worker === undefined ? new RunFileWatch(path.resolve(file), log, watch) : undefined;
  if (worker === undefined && (count > 1 || recycleAfter > 0)) {
    // One scrape for the whole run: the primary sums what every worker's Metrics counted.
    const metrics = metricsAt === undefined ? undefined : await serveClusterMetrics(parseMetricsAddress(metricsAt));
    // A worker that exits 2 or 5 before any worker served met what every worker meets: a
    // mistake (a module that does not load, a bad value: 2) or a broker that refused it for good
    // (credentials, vhost: 5; a broker that is down is retried, not given up on): the run ends
    // with its status, as a single process does, instead of restarting workers forever while a
    // service manager sees it active. Under --watch a 2 restarts (the module may be fixed
    // meanwhile); nothing watched fixes a 5, since the configuration is read once.
    const supervisor = new WorkerSupervisor({
      count,
      log,
      spec: { spec, base, configs: spec.services.map((s) => configs.get(s)!) },
      ...(watch && watch.handOverTimeoutMs !== undefined ? { handOverTimeoutMs: watch.handOverTimeoutMs } : {}),
      // A worker's loop blocked well past what a load or reload may take is wedged, not busy. A
      // serving worker is watched only where it reloads by itself (a save); elsewhere a long
      // synchronous call is its service's own business, as in a single process.
      ...(watch && watch.reloadTimeoutMs !== undefined ? { unresponsiveMs: watch.reloadTimeoutMs + 15_000 } : {}),
      watchServing: Boolean(watch),
      abandonGraceMs: timeoutMs + overrunMs + PRIMARY_MARGIN_MS,
      onOutputClosed: (n) => shutdown.stop(`worker ${n}'s stdout closed`),
      onEarlyDeath: ({ worker: n, pid, code, signal }) => {
        if (!(code === EXIT.connect || (code === EXIT.usage && !watch))) return false;
        if (shutdown.stopping) return true;
        log.error(`worker ${n} (pid ${pid}) exited (${signal ?? `status ${code}`}) before any worker served; stopping`, {
          worker: n,
          code,
          signal,
        });
        shutdown.stop('a worker failed to start', code ? code : EXIT.failed);
        return true;
      },
    });
    const shutdown = handleShutdown({
      log,
      timeoutMs: timeoutMs + overrunMs + PRIMARY_MARGIN_MS,
      reload: () => {
        const what = supervisor.reload();
        if (what === 'started')
          log.info('SIGHUP: handing every worker over to a fresh one that loads the endpoint modules again, one at a time', {
            event: 'reload',
          });
        else if (what === 'queued')
          log.info('SIGHUP: a reload is under way; every worker is handed over again once it ends, loading the files as they are then', {
            event: 'reload',
          });
        else if (what === 'pending')
          log.info('SIGHUP: a reload is under way and another is queued already, which loads the files as they are then');
      },
      target: supervisor.shutdownTarget({
        close: async () => {
          await runFileWatch?.close();
          await metrics?.close();
        },
      }),
    });
    log.info(
      `starting ${count} worker${count === 1 ? '' : 's'} for ${spec.services.length} service(s) from ${file}${recycleAfter > 0 ? `, each recycled after ${recycleAfter} reloads` : ''}`,
      { workers: count, recycleAfter },
    );
    if (metrics) log.announce(`metrics of all workers at ${metrics.url}`, { event: 'metrics', url: metrics.url });
    supervisor.start();
    return;
  }

  logConnectionState(log);
  let metrics: MetricsServer | undefined;
  if (metricsAt !== undefined && worker !== undefined)
    new Metrics().start(); // answers the primary's scrapes
  else if (metricsAt !== undefined) {
    metrics = await exposeMetrics(metricsAt);
    log.announce(`metrics at ${metrics.url}`, { event: 'metrics', url: metrics.url });
  }
  const group = new ServiceGroup({
    services: spec.services.filter((s) => worker === undefined || workersOf(s) >= worker),
    ...(worker === undefined ? {} : { worker }),
    workersOf,
    configFor: (s) => configs.get(s)!,
    log,
    watch: watch && { ...watch },
    beacons: spec.beacons ?? false,
    // Failed requests are a peer's to cause: past rpc-server's budget, a line a second counts them.
    failureLines: lineBudget(PEER_LINES_PER_SECOND, 1000, (n) =>
      log.warn(`${n} more failed request(s) in the last second not logged`, { event: 'failures-not-logged', skipped: n }),
    ),
    recycleAfter: worker === undefined ? 0 : recycleAfter,
    onRecycle: (reloads) => tellPrimary({ hermod: 'recycle', reloads }),
  });
  const shutdown = handleShutdown({
    log,
    timeoutMs,
    overrunMs,
    ...(worker === undefined ? {} : { primaryRelaysSigint: () => process.connected, primaryRelaysSigterm: () => process.connected }),
    reload: () => {
      // The primary hands this worker over to a fresh process: one SIGHUP to the whole group
      // (a closed terminal) reloads once.
      if (worker !== undefined && process.connected) {
        log.debug('SIGHUP: left to the primary, which hands the workers over to fresh ones');
        return;
      }
      const { state, done } = group.reload();
      if (state === 'pending') {
        log.info('SIGHUP: a reload is under way and another is queued already, which imports the files as they are then');
        return;
      }
      log.info(
        state !== 'started'
          ? 'SIGHUP: a reload is under way; the endpoint modules are imported again once it ends'
          : group.starting
            ? 'SIGHUP: the services are still starting; the endpoint modules of every service are imported again once all of them serve'
            : 'SIGHUP: importing the endpoint modules of every service again',
        { event: 'reload' },
      );
      void done.then((r) => {
        // The services' own lines say what failed and why; this one says how the reload ended.
        if (r.failed === 0) log.info('reload: every service serves the new code', { event: 'reload-done', failed: 0 });
        else
          log.error(
            `reload: ${r.failed} of ${r.failed + r.took} service(s) failed to load and still serve the old code (see the reload-failed lines)`,
            { event: 'reload-done', failed: r.failed },
          );
      });
    },
    target: {
      pending: () => group.pending(),
      aborted: () => group.aborted(),
      lingering: () => group.lingering(),
      graceful: async (deadline) => {
        // The deadline counts from the signal: the backstop does, and it ends the process 0.5 s after.
        const t0 = Date.now();
        await group.stop();
        const aborted = await group.wait(Math.max(0, deadline - (Date.now() - t0)));
        await runFileWatch?.close();
        await metrics?.close();
        return aborted;
      },
      abort: async () => {
        await group.abort();
        await runFileWatch?.close();
        await metrics?.close();
      },
    },
  });
  if (worker !== undefined) {
    onPrimaryStop(
      (reason) => shutdown.stop(reason),
      (reason) => shutdown.abort(reason),
    );
    // Its graceful stop (handleShutdown's own) would look like a crash to the primary.
    onOutputClosed(() => tellPrimary(OUTPUT_CLOSED_MESSAGE));
  }
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

/** The run file named, or the first default one here. */
function runFileOf(named: string | undefined): string {
  const file = named ?? DEFAULT_RUN_FILES.find((f) => existsSync(f));
  if (!file) throw new UsageError(`no run file named and none of ${DEFAULT_RUN_FILES.join(', ')} here`);
  return file;
}

async function main(): Promise<void> {
  const [name, ...argv] = process.argv.slice(2);
  // Only `run` takes the held signals over (handleShutdown); every other command has Node's defaults.
  if (name !== 'run') releaseStartupSignals();
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const rows = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`);
    process.stdout.write(
      `Usage: hermod <command> [options]   (hermod <command> --help)\n\nCommands:\n${rows.join('\n')}\n\nOptions:\n  -V, --version  print hermod's version\n  -h, --help     this text\n\n${EXIT_TABLE}\n`,
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

/**
 * Reads the run file; one in JavaScript or TypeScript is a module of the user's, which may take
 * long to load, and a stop signal meanwhile ends the run at once (nothing serves yet).
 */
async function readRunFileOrQuit(file: string): Promise<RunSpec> {
  if (file.endsWith('.json')) return readRunFile(file);
  return quitOnStopWhile(readRunFile(file), (signal) => {
    // No log yet: the run file configures it.
    process.stderr.write(`hermod run: ${signal} while loading the run file: nothing serves yet; stopped\n`);
    process.exit(0);
  });
}
