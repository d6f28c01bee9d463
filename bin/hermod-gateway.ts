#!/usr/bin/env node
// First: it must run before the other modules load (see the module).
import '../src/cli/young-gen.js';
import { Command } from 'commander';
import { describeConfig, parseConfigArgs } from '../src/cli/config-args.js';
import { CLI_DEFAULT_URL, CLI_DEFAULTS } from '../src/cli/defaults.js';
import { EXIT, exitOnUsage, fatal } from '../src/cli/exit-codes.js';
import { logConnectionState, makeLogger } from '../src/cli/log.js';
import { applyLogFlags, commonOptions, type LogFlags } from '../src/cli/program.js';
import { hermodSection, readGatewayConfig } from '../src/gateway/config.js';
import { createGateway, type GatewayConfig } from '../src/gateway/index.js';
import { getTransport, loadConfig } from '../src/index.js';

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
  const o = program.opts<{ host?: string; port?: number; transportUrl?: string; shutdownTimeout: number } & LogFlags>();

  let gw: GatewayConfig = {};
  const hermod: Record<string, unknown> = {};
  for (const file of files) {
    const { hermod: section, ...part } = readGatewayConfig(file);
    Object.assign(hermod, hermodSection(section, `file ${file}, section hermod`));
    gw = { ...gw, ...part };
  }
  gw.listen = { ...gw.listen, ...(o.host !== undefined ? { host: o.host } : {}), ...(o.port !== undefined ? { port: o.port } : {}) };
  const config = applyLogFlags(loadConfig({ defaults: { ...CLI_DEFAULTS, ...hermod }, overrides }), o);
  const log = makeLogger(config, 'hermod-gateway');
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
  const addr = await gateway.start();
  log.info(
    `listening on ${addr.url} (transport ${transport.url}, ${gateway.config.routes.length} route(s), policy ${gateway.config.mappingPolicy})`,
  );
}

main().catch(fatal);
