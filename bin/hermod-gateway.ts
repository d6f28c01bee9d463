#!/usr/bin/env node
// First: it must run before the other modules load (see the module).
import '../src/cli/young-gen.js';
import { Command } from 'commander';
import { describeConfig, parseConfigArgs } from '../src/cli/config-args.js';
import { CLI_DEFAULT_URL, CLI_DEFAULTS } from '../src/cli/defaults.js';
import { EXIT, exitOnUsage, fatal } from '../src/cli/exit-codes.js';
import { logConnectionState, makeLogger } from '../src/cli/log.js';
import { applyLogFlags, commonOptions, type LogFlags } from '../src/cli/program.js';
import { handleShutdown } from '../src/cli/shutdown.js';
import { hermodSection, readGatewayConfig, resolveGatewayConfig } from '../src/gateway/config.js';
import { createGateway, type GatewayConfig } from '../src/gateway/index.js';
import { getTransport, loadConfig } from '../src/index.js';
import { parseWorkers } from '../src/ops/run/config.js';
import { onPrimaryStop, READY_MESSAGE, tellPrimary, WorkerSupervisor, workerNumber } from '../src/ops/run/workers.js';

/** Past the workers' deadline, how long the primary waits for them to exit before it kills them. */
const PRIMARY_MARGIN_MS = 1500;

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
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
      .option('--port <port>', 'TCP port, 0 = any free port (default: listen.port, 8080)', (v) => Number(v))
      .option('--transport-url <url>', `transport URL (default ${CLI_DEFAULT_URL}, the embedded router)`)
      .option(
        '--workers <n|max>',
        'worker processes (node:cluster) answering on the one port, each with its own connection; max = one per core (default 1: this process answers)',
      )
      .option(
        '--shutdown-timeout <ms>',
        'on SIGTERM/SIGINT, how long running calls may finish (default 10000 ms)',
        (v) => Number(v),
        10_000,
      ),
    [
      'Configuration: --config-file gw.json (the gateway file, hermod options under "hermod"; repeatable, later wins), --config key=value | --config key value, --help-config (every key)',
    ],
  )
    .exitOverride(exitOnUsage)
    .parse(rest, { from: 'user' });
  const o = program.opts<{ host?: string; port?: number; transportUrl?: string; shutdownTimeout: number; workers?: string } & LogFlags>();
  const count = o.workers === undefined ? 1 : parseWorkers(o.workers, '--workers');
  const worker = workerNumber();

  let gw: GatewayConfig = {};
  const hermod: Record<string, unknown> = {};
  for (const file of files) {
    const { hermod: section, ...part } = readGatewayConfig(file);
    Object.assign(hermod, hermodSection(section, `file ${file}, section hermod`));
    gw = { ...gw, ...part };
  }
  gw.listen = { ...gw.listen, ...(o.host !== undefined ? { host: o.host } : {}), ...(o.port !== undefined ? { port: o.port } : {}) };
  const config = applyLogFlags(loadConfig({ defaults: { ...CLI_DEFAULTS, ...hermod }, overrides }), o);
  const log = makeLogger(config, worker === undefined ? 'hermod-gateway' : `hermod-gateway worker ${worker}`);

  // The primary answers nothing itself: node:cluster hands each accepted connection to a worker
  // in turn, and a connection stays with its worker. Workers that die are restarted; on
  // SIGTERM/SIGINT each drains as a single gateway does.
  if (worker === undefined && count > 1) {
    // A bad gateway file fails here, once, instead of in every worker and every restart.
    resolveGatewayConfig(gw);
    const supervisor = new WorkerSupervisor({ count, log });
    handleShutdown({
      log,
      timeoutMs: o.shutdownTimeout + PRIMARY_MARGIN_MS,
      target: {
        pending: () => (supervisor.alive() > 0 ? `${supervisor.alive()} worker(s)` : ''),
        aborted: () => supervisor.aborted(),
        graceful: (deadline) => supervisor.stop(deadline),
        abort: () => supervisor.abort(),
      },
    });
    log.info(`starting ${count} workers`, { workers: count });
    supervisor.start();
    return;
  }
  logConnectionState(log);

  const transport = await getTransport(o.transportUrl, { config });
  const gateway = createGateway(transport, gw);
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: no new requests; finishing running calls (up to ${o.shutdownTimeout} ms)`);
    const { aborted } = await gateway.stop(o.shutdownTimeout);
    await transport.close();
    if (aborted) log.warn(`closed ${aborted} call(s) still running at the deadline`);
    log.info('stopped');
    process.exit(aborted ? EXIT.aborted : EXIT.ok);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  if (worker !== undefined) onPrimaryStop((reason) => void shutdown(reason));
  const addr = await gateway.start();
  log.info(
    `listening on ${addr.url} (transport ${transport.url}, ${gateway.config.routes.length} route(s), policy ${gateway.config.mappingPolicy})`,
  );
  tellPrimary(READY_MESSAGE);
}

main().catch(fatal);
