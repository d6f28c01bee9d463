#!/usr/bin/env node
import diagnostics_channel from 'node:diagnostics_channel';
import { Command } from 'commander';
import { cliConfig } from '../src/cli/config-args.js';
import { CLI_DEFAULT_URL, CLI_DEFAULTS } from '../src/cli/defaults.js';
import { DemoEndpoints } from '../src/cli/demo-endpoints.js';
import { exitOnUsage, fatal } from '../src/cli/exit-codes.js';
import { logConnectionState, makeLogger } from '../src/cli/log.js';
import { handleShutdown, parseShutdownTimeout } from '../src/cli/shutdown.js';
import { getTransport, RPCServer, type ServerRequestEvent, Target } from '../src/index.js';
import { importModule } from '../src/ops/load-endpoints.js';
import { exposeMetrics } from '../src/ops/metrics.js';

async function loadEndpoints(specs: string[], ctx: { server: string; topic: string }): Promise<object[]> {
  const out: object[] = [];
  for (const spec of specs) {
    const mod = await importModule(spec);
    let value = mod.default ?? mod.endpoints;
    if (value === undefined) throw new Error(`${spec} exports neither a default nor 'endpoints'`);
    if (typeof value === 'function') {
      const fn = value as { prototype?: unknown } & ((c: typeof ctx) => unknown);
      value = /^class\s/.test(Function.prototype.toString.call(fn))
        ? new (fn as unknown as new (c: typeof ctx) => object)(ctx)
        : await fn(ctx);
    }
    for (const e of Array.isArray(value) ? value : [value]) {
      if (!e || typeof e !== 'object') throw new Error(`${spec}: endpoints must be objects`);
      out.push(e);
    }
  }
  return out;
}

async function main(): Promise<void> {
  const { config, rest } = cliConfig(process.argv.slice(2), CLI_DEFAULTS);
  const program = new Command('rpc-server')
    .description('Serve RPC endpoints on a topic (built-in demo endpoints: echo, add, sleep, fail, info)')
    .argument('<name>', "this server's name (Target.server)")
    .requiredOption('-t, --topic <topic>', 'topic to serve')
    .option('--exchange <exchange>', 'exchange (default: controlExchange, "openstack")')
    .option('--namespace <namespace>', 'namespace of the built-in endpoints')
    .option('--version <version>', 'version of the built-in endpoints (X.Y)', '1.0')
    .option('--endpoints <modules...>', 'ES modules whose default export is an endpoint, a list of them, a class or a factory')
    .option('--transport-url <url>', `transport URL (default ${CLI_DEFAULT_URL}, the embedded router)`)
    .option('--concurrency <n>', 'requests run at once', (v) => Number(v))
    .option('--metrics-port <[host:]port>', 'serve Prometheus metrics at http://host:port/metrics (host 127.0.0.1 unless given)')
    .option('--shutdown-timeout <seconds>', 'on SIGTERM/SIGINT, how long running requests may finish (default rpc.stopTimeout, 25 s)')
    .addHelpText('after', '\nAlso: --config key=value | --config key value, --config-file file.json, --help-config')
    .exitOverride(exitOnUsage)
    .parse(rest, { from: 'user' });
  const [name] = program.args as [string];
  const o = program.opts<{
    topic: string;
    exchange?: string;
    namespace?: string;
    version: string;
    endpoints?: string[];
    transportUrl?: string;
    concurrency?: number;
    shutdownTimeout?: string;
    metricsPort?: string;
  }>();
  const timeoutMs = parseShutdownTimeout(o.shutdownTimeout, config.rpc.stopTimeout);
  const log = makeLogger(config, `rpc-server ${name}`);
  logConnectionState(log);

  const target = new Target({ topic: o.topic, server: name, ...(o.exchange ? { exchange: o.exchange } : {}) });
  const endpoints = o.endpoints?.length
    ? await loadEndpoints(o.endpoints, { server: name, topic: o.topic })
    : [new DemoEndpoints(name, o.namespace, o.version)];
  const metrics = o.metricsPort === undefined ? undefined : await exposeMetrics(o.metricsPort);
  if (metrics) log.info(`metrics at ${metrics.url}`);
  const transport = await getTransport(o.transportUrl, { config });
  const server = new RPCServer(transport, target, endpoints, o.concurrency ? { concurrency: o.concurrency } : {});

  diagnostics_channel.subscribe('hermod:rpc:server:request', (e) => {
    const ev = e as ServerRequestEvent;
    const err = ev.error ? ` ${ev.error.name}: ${ev.error.message}` : '';
    log.info(`${ev.kind} ${ev.method} ${ev.outcome} ${ev.durationMs.toFixed(1)}ms${err}`, {
      method: ev.method,
      outcome: ev.outcome,
      durationMs: ev.durationMs,
    });
  });
  diagnostics_channel.subscribe('hermod:message:invalid', (e) => {
    const ev = e as { error: Error };
    log.warn(`dropped an invalid message: ${ev.error.message}`);
  });

  // Installed before start(): a signal while connecting stops at once instead of being lost.
  const shutdown = handleShutdown({
    log,
    timeoutMs,
    target: {
      pending: () => {
        const { inFlight, queued } = server.stats();
        return inFlight + queued > 0 ? `${inFlight} in-flight request(s)` : '';
      },
      aborted: () => server.stats().aborted,
      graceful: async (deadline) => {
        await server.stop();
        const res = await server.wait(deadline);
        await transport.close();
        await metrics?.close();
        return res.aborted;
      },
      // Their callers get ServerStopped; unacknowledged requests go back to the broker.
      abort: async () => {
        await server.abort();
        await transport.close();
        await metrics?.close();
      },
    },
  });

  await server.start();
  if (shutdown.stopping) return;
  log.info(
    `serving topic ${o.topic} as ${name} on ${transport.url} (exchange ${target.exchange ?? config.controlExchange}, ${endpoints.length} endpoint(s))`,
  );
}

main().catch(fatal);
