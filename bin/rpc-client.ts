#!/usr/bin/env node
import { Command } from 'commander';
import {
  getTransport, RPCClient, Target, HermodError, RemoteError, type Transport,
} from '../src/index.js';
import { cliConfig, fatal, parseKeyValues, CLI_DEFAULT_URL } from '../src/cli/common.js';
import { isRemote } from '../src/rpc/remote-errors.js';

/** Exit statuses, so scripts can tell failures apart. */
const EXIT = { ok: 0, remote: 1, usage: 2, timeout: 3, noSuchMethod: 4, connect: 5, other: 6 } as const;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function describe(err: unknown): { status: number; text: string } {
  const e = err as HermodError & { code?: string };
  if (err instanceof RemoteError) return { status: EXIT.remote, text: `remote error: ${err.excType}: ${err.value}` };
  switch (e?.code) {
    case 'HERMOD_ERR_TIMEOUT': return { status: EXIT.timeout, text: `timeout: ${e.message}` };
    // RabbitMQ returned it: no queue is bound, i.e. nobody serves the topic (or server).
    case 'HERMOD_ERR_UNDELIVERABLE': return { status: EXIT.timeout, text: `nobody serves it: ${e.message}` };
    case 'HERMOD_ERR_NO_SUCH_METHOD': return { status: EXIT.noSuchMethod, text: `no such method: ${e.message}` };
    case 'HERMOD_ERR_UNSUPPORTED_VERSION': return { status: EXIT.noSuchMethod, text: `unsupported version: ${e.message}` };
    case 'HERMOD_ERR_TRANSPORT': return { status: EXIT.connect, text: e.message };
    case 'HERMOD_ERR_CONFIG': case 'HERMOD_ERR_INVALID_TARGET': case 'HERMOD_ERR_INVALID_ARGUMENT':
      return { status: EXIT.usage, text: e.message };
    default:
      if (isRemote(err)) return { status: EXIT.remote, text: `remote error: ${(err as Error).name}: ${(err as Error).message}` };
      return { status: EXIT.other, text: err instanceof Error ? `${err.name}: ${err.message}` : String(err) };
  }
}

async function main(): Promise<void> {
  const { config, rest, urlFromConfig } = cliConfig(process.argv.slice(2));
  const program = new Command('rpc-client')
    .description('Call or cast an RPC method from the shell. Values parse as JSON when they can, else strings.')
    .argument('<topic>', 'topic to address')
    .argument('<method>', 'method to invoke')
    .argument('[args...]', 'arguments as key=value')
    .option('--server <server>', 'direct the call to one server')
    .option('--fanout', 'cast to every server on the topic')
    .option('--cast', 'do not wait for a result')
    .option('--exchange <exchange>', 'exchange')
    .option('--namespace <namespace>', 'namespace')
    .option('--version <version>', 'version (X.Y)')
    .option('--timeout <seconds>', 'call timeout in seconds', (v) => Number(v))
    .option('--monitor <seconds>', 'call-monitor timeout in seconds (server heartbeats keep long calls alive)', (v) => Number(v))
    .option('--repeat <n>', 'repeat and print count, rate and p50/p99 latency', (v) => Number(v), 1)
    .option('--context <key=value...>', 'context entries sent with the request')
    .option('--transport-url <url>', `transport URL (default ${CLI_DEFAULT_URL})`)
    .option('--json', 'print results as JSON')
    .addHelpText('after', `
Exit status: 0 ok, 1 remote error, 2 usage, 3 timeout, 4 no such method / version, 5 cannot connect.
Also: --config key=value | --config key value, --config-file file.json, --help-config`)
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT.usage))
    .parse(rest, { from: 'user' });
  const [topic, method, pairs] = program.args.length ? [program.args[0]!, program.args[1]!, program.args.slice(2)] : ['', '', []];
  const o = program.opts<{
    server?: string; fanout?: boolean; cast?: boolean; exchange?: string; namespace?: string; version?: string;
    timeout?: number; monitor?: number; repeat: number; context?: string[]; transportUrl?: string; json?: boolean;
  }>();
  if (o.fanout && !o.cast) o.cast = true;
  if (!Number.isInteger(o.repeat) || o.repeat < 1) throw new HermodError('--repeat needs a positive integer');
  if (o.timeout !== undefined && !(o.timeout > 0)) throw new HermodError('--timeout needs a positive number of seconds');
  const args = parseKeyValues(pairs);
  const ctx = parseKeyValues(o.context ?? []);
  const url = o.transportUrl ?? (urlFromConfig ? config.transportUrl : CLI_DEFAULT_URL);
  // A shell user wants to hear "cannot connect" promptly, not after the whole call timeout.
  const retry = process.env.HERMOD_RPC_RETRY !== undefined || rest.some((a) => a.includes('rpc.retry')) ? config.rpc.retry : 2;
  let transport: Transport | undefined;
  let status: number = EXIT.ok;
  try {
    transport = await getTransport(url, { config });
    const target = new Target({
      topic, ...(o.server ? { server: o.server } : {}), ...(o.fanout ? { fanout: true } : {}),
      ...(o.exchange ? { exchange: o.exchange } : {}), ...(o.namespace ? { namespace: o.namespace } : {}),
      ...(o.version ? { version: o.version } : {}),
    });
    const client = new RPCClient(transport, target, {
      retry,
      ...(o.timeout ? { timeout: o.timeout * 1000 } : {}),
      ...(o.monitor ? { callMonitorTimeout: o.monitor * 1000 } : {}),
    });
    const latencies: number[] = [];
    let failures = 0;
    const started = performance.now();
    for (let i = 0; i < o.repeat; i++) {
      const t0 = performance.now();
      try {
        if (o.cast) {
          await client.cast(ctx, method, args);
          if (o.repeat === 1) process.stdout.write(o.json ? `${JSON.stringify({ cast: true })}\n` : `cast sent${o.fanout ? ' (fanout)' : ''}\n`);
        } else {
          const result = await client.call(ctx, method, args);
          if (o.repeat === 1) process.stdout.write(`${o.json ? JSON.stringify(result) : typeof result === 'string' ? result : JSON.stringify(result, null, 2)}\n`);
        }
        latencies.push(performance.now() - t0);
      } catch (err) {
        failures++;
        const d = describe(err);
        status = d.status;
        if (o.repeat === 1 || d.status === EXIT.connect || failures === 1) process.stderr.write(`error: ${d.text}\n`);
        if (d.status === EXIT.connect || d.status === EXIT.usage) break;
      }
      if (o.repeat > 1 && (i + 1) % Math.max(1, Math.floor(o.repeat / 10)) === 0) {
        process.stderr.write(`\r${i + 1}/${o.repeat}`);
      }
    }
    if (o.repeat > 1) {
      const secs = (performance.now() - started) / 1000;
      const sorted = [...latencies].sort((a, b) => a - b);
      const summary = {
        count: o.repeat, ok: latencies.length, failed: failures, seconds: Number(secs.toFixed(3)),
        rate: Number((latencies.length / secs).toFixed(1)),
        p50ms: Number(percentile(sorted, 50).toFixed(3)), p99ms: Number(percentile(sorted, 99).toFixed(3)),
      };
      process.stderr.write('\n');
      process.stdout.write(o.json ? `${JSON.stringify(summary)}\n`
        : `${summary.count} ${o.cast ? 'casts' : 'calls'}, ${summary.ok} ok, ${summary.failed} failed in ${summary.seconds}s: ${summary.rate}/s, p50 ${summary.p50ms} ms, p99 ${summary.p99ms} ms\n`);
      if (failures === 0) status = EXIT.ok;
    }
  } finally {
    await transport?.close();
  }
  process.exit(status);
}

main().catch((err) => {
  const d = describe(err);
  if (d.status === EXIT.other) fatal(err);
  process.stderr.write(`error: ${d.text}\n`);
  process.exit(d.status);
});
