#!/usr/bin/env node
import { Command } from 'commander';
import { cliConfig } from '../src/cli/config-args.js';
import { coerceArgs, fetchContract, needsContract, usage } from '../src/cli/contract-args.js';
import { CLI_DEFAULT_URL, RPC_CLIENT_DEFAULTS } from '../src/cli/defaults.js';
import { describeFailure, EXIT, type ExitStatus, exitOnUsage, fatal, UsageError } from '../src/cli/exit-codes.js';
import { jobCommand, startJob } from '../src/cli/jobs-command.js';
import { parseKeyValues } from '../src/cli/key-values.js';
import { getTransport, RPCClient, Target, type Transport } from '../src/index.js';

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function main(): Promise<void> {
  const { config, rest } = cliConfig(process.argv.slice(2), RPC_CLIENT_DEFAULTS);
  if (rest[0] === 'job') process.exit(await jobCommand(rest.slice(1), config));
  const program = new Command('rpc-client')
    .description('Call or cast an RPC method from the shell. Values parse as JSON when they can, else strings.')
    .argument('<topic>', 'topic to address')
    .argument('<method>', 'method to invoke')
    .argument('[args...]', 'arguments as key=value')
    .option('--server <server>', 'direct the call to one server')
    .option('--fanout', 'cast to every server on the topic')
    .option('--cast', 'do not wait for a result')
    .option('--start', 'start the method as a job and print its token (then: rpc-client job <token> [--wait])')
    .option('--exchange <exchange>', 'exchange')
    .option('--namespace <namespace>', 'namespace')
    .option('--version <version>', 'version (X.Y)')
    .option('--timeout <seconds>', 'call timeout in seconds', (v) => Number(v))
    .option('--monitor <seconds>', 'call-monitor timeout in seconds (server heartbeats keep long calls alive)', (v) => Number(v))
    .option('--repeat <n>', 'repeat and print count, rate and p50/p99 latency', (v) => Number(v), 1)
    .option('--context <key=value...>', 'context entries sent with the request')
    .option('--transport-url <url>', `transport URL (default ${CLI_DEFAULT_URL})`)
    .option('--json', 'print results as JSON')
    .option('--describe', "print the method's usage from its published contract, and call nothing")
    .addHelpText(
      'after',
      `
Exit status: 0 ok, 1 remote error, 2 usage, 3 timeout, 4 no such method / version, 5 cannot connect.
Also: --config key=value | --config key value, --config-file file.json, --help-config`,
    )
    .exitOverride(exitOnUsage)
    .parse(rest, { from: 'user' });
  const [topic, method, pairs] = program.args.length ? [program.args[0]!, program.args[1]!, program.args.slice(2)] : ['', '', []];
  const o = program.opts<{
    server?: string;
    fanout?: boolean;
    cast?: boolean;
    start?: boolean;
    exchange?: string;
    namespace?: string;
    version?: string;
    timeout?: number;
    monitor?: number;
    repeat: number;
    context?: string[];
    transportUrl?: string;
    json?: boolean;
    describe?: boolean;
  }>();
  if (o.fanout && !o.cast) o.cast = true;
  if (!Number.isInteger(o.repeat) || o.repeat < 1) throw new UsageError('--repeat needs a positive integer');
  if (o.timeout !== undefined && !(o.timeout > 0)) throw new UsageError('--timeout needs a positive number of seconds');
  let args = parseKeyValues(pairs);
  const ctx = parseKeyValues(o.context ?? []);
  let transport: Transport | undefined;
  let status: ExitStatus = EXIT.ok;
  try {
    transport = await getTransport(o.transportUrl, { config });
    const target = new Target({
      topic,
      ...(o.server ? { server: o.server } : {}),
      ...(o.fanout ? { fanout: true } : {}),
      ...(o.exchange ? { exchange: o.exchange } : {}),
      ...(o.namespace ? { namespace: o.namespace } : {}),
      ...(o.version ? { version: o.version } : {}),
    });
    const client = new RPCClient(transport, target, {
      ...(o.timeout ? { timeout: o.timeout * 1000 } : {}),
      ...(o.monitor ? { callMonitorTimeout: o.monitor * 1000 } : {}),
    });
    // Values are coerced by the published contract (a=1 stays "1" where it says string).
    const contract =
      o.describe || needsContract(pairs)
        ? await fetchContract(client, method, Math.min(1000, o.timeout ? o.timeout * 1000 : 1000))
        : undefined;
    if (o.describe) return void process.stdout.write(usage(topic, method, contract));
    args = coerceArgs(pairs, contract);
    const latencies: number[] = [];
    let failures = 0;
    const started = performance.now();
    for (let i = 0; i < o.repeat; i++) {
      const t0 = performance.now();
      try {
        if (o.cast) {
          await client.cast(ctx, method, args);
          if (o.repeat === 1)
            process.stdout.write(o.json ? `${JSON.stringify({ cast: true })}\n` : `cast sent${o.fanout ? ' (fanout)' : ''}\n`);
        } else if (o.start) {
          await startJob(client, ctx, method, args, false, !!o.json);
        } else {
          const result = await client.call(ctx, method, args);
          if (o.repeat === 1)
            process.stdout.write(
              `${o.json ? JSON.stringify(result) : typeof result === 'string' ? result : JSON.stringify(result, null, 2)}\n`,
            );
        }
        latencies.push(performance.now() - t0);
      } catch (err) {
        failures++;
        const d = describeFailure(err);
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
        count: o.repeat,
        ok: latencies.length,
        failed: failures,
        seconds: Number(secs.toFixed(3)),
        rate: Number((latencies.length / secs).toFixed(1)),
        p50ms: Number(percentile(sorted, 50).toFixed(3)),
        p99ms: Number(percentile(sorted, 99).toFixed(3)),
      };
      process.stderr.write('\n');
      process.stdout.write(
        o.json
          ? `${JSON.stringify(summary)}\n`
          : `${summary.count} ${o.cast ? 'casts' : 'calls'}, ${summary.ok} ok, ${summary.failed} failed in ${summary.seconds}s: ${summary.rate}/s, p50 ${summary.p50ms} ms, p99 ${summary.p99ms} ms\n`,
      );
      if (failures === 0) status = EXIT.ok;
    }
  } finally {
    await transport?.close();
  }
  process.exit(status);
}

main().catch((err) => {
  const d = describeFailure(err);
  if (d.status === EXIT.other) fatal(err);
  process.stderr.write(`error: ${d.text}\n`);
  process.exit(d.status);
});
