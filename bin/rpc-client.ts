#!/usr/bin/env node
import { Command } from 'commander';
import { CONFIG_HELP_LINE, cliConfig } from '../src/cli/config-args.js';
import { coerceArgs, fetchContract, needsContract, usage } from '../src/cli/contract-args.js';
import { CLI_DEFAULT_URL, RPC_CLIENT_DEFAULTS } from '../src/cli/defaults.js';
import { EXIT, type ExitStatus, exitOnUsage, exitWhenWritten, failureStatus, fatal, printFailure } from '../src/cli/exit-codes.js';
import { callWithin, describeJobFailure, jobCommand, startJob } from '../src/cli/jobs-command.js';
import { checkKeys, parseKeyValues } from '../src/cli/key-values.js';
import { captureConsole, logConnectionState, makeLogger } from '../src/cli/log.js';
import { applyLogFlags, commonOptions, eachOf, intAtLeast, type LogFlags, positiveSeconds } from '../src/cli/program.js';
import { type RepeatStats, summaryJson, summaryText } from '../src/cli/repeat.js';
import { closeBeforeExit, exitWhenOutputCloses } from '../src/cli/shutdown.js';
import { escapeUnsafeKeepLines } from '../src/core/unsafe-text.js';
import { getTransport, RPCClient, Target, type Transport, type TransportState } from '../src/index.js';

/** The options of `rpc-client job` (src/cli/jobs-command.ts, commonOptions): those taking a value, and flags. */
const JOB_VALUE_OPTIONS = new Set(['--timeout', '--transport-url', '--log-level']);
const JOB_FLAGS = new Set(['--wait', '--cancel', '--json', '--quiet', '--log-json', '-V', '--version', '-h', '--help']);

/**
 * Where the word `job` of `rpc-client job <token>` is: first, or after options of the job command
 * only (`rpc-client --transport-url U job <token>`, which made a call to a topic named job with
 * the token as its method). -1 when the command is a call: any other option before it is a call's
 * (`--server job` names a server).
 */
function jobWordAt(args: readonly string[]): number {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === 'job') return i;
    const name = a.split('=', 1)[0]!;
    if (JOB_VALUE_OPTIONS.has(name)) {
      if (name === a) i++;
    } else if (!JOB_FLAGS.has(a)) return -1;
  }
  return -1;
}

async function main(): Promise<void> {
  // A reader that went away (`| head`) ends the command quietly, as it would a Unix tool.
  exitWhenOutputCloses();
  const { config: loaded, rest: given } = cliConfig(process.argv.slice(2), RPC_CLIENT_DEFAULTS);
  // `rpc-client help` and `rpc-client help job`, as git and npm take them. Only these two forms:
  // `rpc-client help <method>` stays a call to a topic named help.
  const rest = given.length === 1 && given[0] === 'help' ? ['--help'] : given.join(' ') === 'help job' ? ['job', '--help'] : given;
  const job = jobWordAt(rest);
  if (job >= 0) return exitWhenWritten(await jobCommand([...rest.slice(0, job), ...rest.slice(job + 1)], loaded));
  const program = commonOptions(
    new Command('rpc-client')
      .description('Call or cast an RPC method from the shell. Values parse as JSON when they can, else strings.')
      .argument('<topic>', 'topic to address')
      .argument('<method>', 'method to invoke')
      .argument('[args...]', 'arguments as key=value')
      .option('--server <server>', 'direct the call to one server')
      .option('--fanout', 'cast to every server on the topic')
      .option('--cast', 'do not wait for a result')
      .option('--start', 'start the method as a job and print its token (then: rpc-client job <token> [--wait])')
      .option('--wait', 'with --start: then follow the job, progress on stderr, and print its result (exit status as for a call)')
      .option('--exchange <exchange>', 'exchange (default controlExchange, "openstack")')
      .option('--namespace <namespace>', 'namespace')
      .option('--target-version <version>', 'version the call asks for (X.Y)')
      .option(
        '--timeout <seconds>',
        `call timeout in seconds, a job the call becomes included (default rpc.responseTimeout, ${loaded.rpc.responseTimeout / 1000} s)`,
        positiveSeconds,
      )
      .option('--monitor <seconds>', 'call-monitor timeout in seconds (server heartbeats keep long calls alive)', positiveSeconds)
      .option(
        '--wait-for-server <seconds>',
        'first wait up to this long for a server of the target to answer (one starting, or the broker), then call',
        positiveSeconds,
      )
      .option('--repeat <n>', 'repeat and print calls attempted, rate and p50/p99 latency', intAtLeast(1), 1)
      .option('--keep-going', 'with --repeat: go on after a timeout (by default the first timeout stops the run)')
      .option('--context <key=value>', 'a context entry sent with the request; repeat it for several', eachOf)
      .option('--transport-url <url>', `transport URL (default ${CLI_DEFAULT_URL})`)
      .option('--json', 'print results, the --repeat summary and errors as JSON')
      .option('--describe', "print the method's usage from its published contract, and call nothing")
      .option('--no-contract', 'read key=value values as JSON, without first asking the servers for the contract'),
    [
      'Jobs: rpc-client job <token> [--wait [--timeout s] | --cancel] shows, follows or cancels a job --start began (rpc-client job --help)',
      CONFIG_HELP_LINE,
    ],
  )
    .configureOutput({
      // Commander's own usage errors: as JSON with --json, like every other error.
      outputError: (text, write) =>
        write(
          JSON_ERRORS
            ? `${JSON.stringify({ error: { status: EXIT.usage, code: 'HERMOD_ERR_USAGE', message: text.replace(/^error: /, '').trim() } })}\n`
            : text,
        ),
    })
    .exitOverride(exitOnUsage)
    .parse(rest, { from: 'user' });
  const [topic, method, pairs] = [program.args[0]!, program.args[1]!, program.args.slice(2)];
  const o = program.opts<
    {
      server?: string;
      fanout?: boolean;
      cast?: boolean;
      exchange?: string;
      namespace?: string;
      targetVersion?: string;
      timeout?: number;
      monitor?: number;
      waitForServer?: number;
      repeat: number;
      keepGoing?: boolean;
      context?: string[];
      transportUrl?: string;
      json?: boolean;
      start?: boolean;
      wait?: boolean;
      describe?: boolean;
      contract: boolean;
    } & LogFlags
  >();
  const config = applyLogFlags(loaded, o);
  // stdout is the result: logs (connection progress) go to stderr.
  const log = makeLogger(config, 'rpc-client', true);
  captureConsole(log);
  // One call gives up past rpc.retry; --repeat's calls go on trying, each within the budget.
  // With --wait-for-server, as with --repeat, a connect attempt that runs out of rpc.retry is not the
  // command's last: the wait makes another ("no more tries" while it went on was wrong).
  logConnectionState(log, o.repeat === 1 && !o.waitForServer ? { retry: config.rpc.retry, key: 'rpc.retry' } : undefined);
  if (o.wait && !o.start) program.error('error: --wait goes with --start (or: rpc-client job <token> --wait)');
  // A cast has no answer, so no token to print: it would silently be a plain cast.
  if (o.start && (o.cast || o.fanout))
    program.error('error: --start makes a call that answers with a job token; not with --cast or --fanout');
  if (o.describe && !o.contract) program.error('error: --describe prints the contract; not with --no-contract');
  if (o.fanout && !o.cast) o.cast = true;
  // The words' shape and repeated keys are usage errors before connecting; their values are read
  // by the method's contract once it is known (where it says string, 12345678901234567890 is text).
  checkKeys(pairs);
  let args: Record<string, unknown>;
  const ctx = parseKeyValues(o.context ?? []);
  const printError = (d: { status: ExitStatus; text: string }, err: unknown) => printFailure(d, err, !!o.json);
  const stats: RepeatStats = {
    requested: o.repeat,
    latencies: [],
    failed: 0,
    started: performance.now(),
    kind: o.cast ? 'casts' : 'calls',
  };
  const printSummary = (interrupted: boolean) => {
    const end = { ...stats, interrupted, ended: performance.now() };
    process.stdout.write(o.json ? `${JSON.stringify(summaryJson(end))}\n` : `${summaryText(end)}\n`);
  };
  // A progress counter is for a person at a terminal: never into a file or a pipe.
  const progress = o.repeat > 1 && process.stderr.isTTY === true;
  if (o.repeat > 1) {
    // Ctrl-C during a run (connecting included): what was measured so far, then the usual status of an interrupt.
    process.once('SIGINT', () => {
      if (progress) process.stderr.write('\n');
      printSummary(true);
      process.exit(130);
    });
  }
  let transport: Transport | undefined;
  let status: ExitStatus = EXIT.ok;
  try {
    transport = closeBeforeExit(await getTransport(o.transportUrl, { config }));
    const target = new Target({
      topic,
      ...(o.server ? { server: o.server } : {}),
      ...(o.fanout ? { fanout: true } : {}),
      ...(o.exchange ? { exchange: o.exchange } : {}),
      ...(o.namespace ? { namespace: o.namespace } : {}),
      ...(o.targetVersion ? { version: o.targetVersion } : {}),
    });
    const client = new RPCClient(transport, target, {
      ...(o.timeout ? { timeout: o.timeout * 1000 } : {}),
      ...(o.monitor ? { callMonitorTimeout: o.monitor * 1000 } : {}),
    });
    if (o.waitForServer) {
      // A target the command cannot use is its usage error at once, not after the wait.
      if (o.cast) target.assertCastable();
      else target.assertCallable();
      // Not part of --timeout's budget: a deployment's start order is what it waits out.
      // A fanout cast reaches every server of the topic: any one of them is one to wait for.
      const found = await (o.fanout ? client.prepare({ fanout: null }) : client).waitForServer({ timeout: o.waitForServer * 1000 });
      log.info(`${found.server ? `server ${found.server}` : 'a server'} of ${topic} answered after ${Math.round(found.waitedMs)} ms`);
    }
    // --timeout bounds the whole command: the contract lookup spends from the first call's budget
    // (it was given a whole --timeout again, so a slow first connect took twice as long).
    const lookupStarted = performance.now();
    const lookup = o.describe === true || (o.contract && needsContract(pairs));
    // Connect attempts that failed during the lookup, since the last success.
    let failedInLookup = 0;
    const countFailures = (s: TransportState) => {
      if (s.state === 'connected') failedInLookup = 0;
      else if (s.state === 'reconnecting' && typeof s.attempt === 'number') failedInLookup = Math.max(failedInLookup, s.attempt);
    };
    if (lookup) transport.on('state', countFailures);
    // Values are coerced by the published contract (a=1 stays "1" where it says string).
    const contract = lookup
      ? await fetchContract(
          client,
          method,
          Math.min(1000, o.timeout ? o.timeout * 1000 : 1000),
          o.timeout ? o.timeout * 1000 : config.rpc.responseTimeout,
          { requireMethod: o.describe === true },
        )
      : undefined;
    transport.off('state', countFailures);
    // The descriptions are the server's text.
    if (o.describe) return void process.stdout.write(escapeUnsafeKeepLines(usage(topic, method, contract)));
    args = coerceArgs(pairs, contract);
    // The lookup and the first send are one command with one rpc.retry. Each send counts the
    // connect attempts that fail while it waits (oslo's max_retries per send), so a send after a
    // lookup that spent some on a broker still down got the whole budget again: "attempt 4
    // failed, no more tries" after "attempt 3 failed, no more tries", twice as long.
    const retry = config.rpc.retry;
    const first =
      retry >= 0 && failedInLookup > 0 && transport.state.state !== 'connected'
        ? client.prepare({ retry: Math.max(0, retry - failedInLookup + 1) })
        : client;
    stats.started = performance.now();
    for (let i = 0; i < o.repeat; i++) {
      const t0 = performance.now();
      try {
        const sender = i === 0 ? first : client;
        if (o.cast) {
          await sender.cast(ctx, method, args);
          if (o.repeat === 1)
            process.stdout.write(o.json ? `${JSON.stringify({ cast: true })}\n` : `cast sent${o.fanout ? ' (fanout)' : ''}\n`);
        } else if (o.start) {
          await startJob(sender, ctx, method, args, !!o.wait, !!o.json, o.timeout === undefined ? undefined : o.timeout * 1000);
        } else {
          const budget = i === 0 && o.timeout && lookup ? o.timeout * 1000 - (performance.now() - lookupStarted) : undefined;
          // --timeout bounds the call whole, a job the server made of it included (that wait was
          // bounded by jobs.jobTimeout alone, by default nothing).
          const bound = budget ?? (o.timeout ? o.timeout * 1000 : undefined);
          const result = await callWithin(
            sender,
            ctx,
            method,
            args,
            budget === undefined ? {} : { timeout: Math.max(1, budget) },
            bound,
            o.timeout,
          ).catch((err: Error & { code?: string }) => {
            // Named by what the user gave, not by what the lookup left of it, whichever stage
            // ran out: the connect ("timed out after 1.9 s") or the reply ("… after 1952 ms").
            if (budget !== undefined && typeof err.message === 'string')
              err.message = err.message.replace(/\bafter [\d.]+ m?s\b/, `after ${o.timeout} s (--timeout, the contract lookup included)`);
            throw err;
          });
          // The server's text: an ESC sequence in a string result retitled or recoloured the
          // caller's terminal, and JSON leaves C1 controls, bidi overrides and U+2028 raw.
          if (o.repeat === 1)
            process.stdout.write(
              `${escapeUnsafeKeepLines(o.json ? JSON.stringify(result) : typeof result === 'string' ? result : JSON.stringify(result, null, 2))}\n`,
            );
        }
        stats.latencies.push(performance.now() - t0);
      } catch (err) {
        stats.failed++;
        // Counted as the command's attempts, not the send's share of them (see `first`).
        if (i === 0 && first !== client && err instanceof Error)
          err.message = err.message.replace(
            /\(gave up after (\d+) attempts?, retry=\d+\)/,
            (_m, n: string) => `(gave up after ${Number(n) + failedInLookup - 1} attempts, retry=${retry})`,
          );
        // A plain call of a long method follows its job too: JobTimeout and ServerUnavailable are timeouts (3).
        const d = describeJobFailure(err, method);
        status = d.status;
        if (stats.failed === 1 || d.status === EXIT.connect) {
          if (progress) process.stderr.write('\n');
          printError(d, err);
        }
        // Nothing to gain from going on: the broker is gone, the command line is wrong, or (unless
        // --keep-going) nobody answers, and each further call would wait its whole timeout.
        if (d.status === EXIT.connect || d.status === EXIT.usage) break;
        if (d.status === EXIT.timeout && !o.keepGoing && o.repeat > 1) {
          log.warn(`stopping at the first timeout (call ${i + 1} of ${o.repeat}); --keep-going goes on`);
          break;
        }
      }
      if (progress && (i + 1) % Math.max(1, Math.floor(o.repeat / 10)) === 0) process.stderr.write(`\r${i + 1}/${o.repeat}`);
    }
    if (o.repeat > 1) {
      if (progress) process.stderr.write('\n');
      printSummary(false);
      if (stats.failed === 0) status = EXIT.ok;
    }
  } catch (err) {
    const d = describeJobFailure(err, method);
    if (d.status === EXIT.other) throw err;
    printError(d, err);
    status = d.status;
  } finally {
    await transport?.close();
  }
  return exitWhenWritten(status);
}

/** `--json` anywhere on the command line: errors of every kind (usage, configuration) are JSON too. */
const JSON_ERRORS = process.argv.slice(2).includes('--json');

main().catch((err: unknown) => {
  if (!JSON_ERRORS) fatal(err);
  const status = failureStatus(err);
  printFailure({ status, text: err instanceof Error ? err.message : String(err) }, err, true);
  return exitWhenWritten(status);
});
