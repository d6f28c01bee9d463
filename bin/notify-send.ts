#!/usr/bin/env node
import { Command } from 'commander';
import { CONFIG_HELP_LINE, cliConfig } from '../src/cli/config-args.js';
import { CLI_DEFAULT_URL, NOTIFY_SEND_DEFAULTS } from '../src/cli/defaults.js';
import { describeFailure, EXIT, exitOnUsage, exitWhenWritten, fatal, printFailure, UsageError } from '../src/cli/exit-codes.js';
import { parseJson, parseKeyValues } from '../src/cli/key-values.js';
import { captureConsole, logConnectionState, makeLogger } from '../src/cli/log.js';
import { applyLogFlags, commonOptions, eachOf, type LogFlags, listOf, positiveSeconds } from '../src/cli/program.js';
import { closeBeforeExit, exitWhenOutputCloses } from '../src/cli/shutdown.js';
import { CLOSE_GRACE_MS, within } from '../src/driver/driver-base.js';
import { getTransport, NOTIFICATION_DRIVERS, Notifier, PRIORITIES, type Priority, type Transport } from '../src/index.js';

/** Default `--timeout`: a notification through a router waits for a listener; a shell user should not wait a minute to learn there is none. */
const DEFAULT_TIMEOUT_S = 10;

async function main(): Promise<void> {
  // A reader that went away (`| head`) ends the command quietly, as it would a Unix tool.
  exitWhenOutputCloses();
  const { config: loaded, rest } = cliConfig(process.argv.slice(2), NOTIFY_SEND_DEFAULTS);
  const program = commonOptions(
    new Command('notify-send')
      .description('Send one notification (oslo Notifier format) from the shell.')
      .argument('<event-type>', 'event type, e.g. compute.instance.create.end')
      .argument('[payload...]', 'payload as key=value (JSON values parse), or one JSON document with --payload')
      .option('--priority <priority>', `one of ${PRIORITIES.join(', ')}`, 'info')
      .option('--publisher-id <id>', 'publisher id', 'hermod.cli')
      .option('--topic <topic>', 'topic; repeat it or separate with commas for several (default notifications.topics)', listOf)
      .option('--exchange <exchange>', 'exchange (default the control exchange)')
      .option('--payload <json>', 'the whole payload as JSON')
      .option('--context <key=value>', 'a context entry (oslo keeps only its safe keys); repeat it for several', eachOf)
      .option('--driver <driver>', 'messagingv2 (default), messaging (1.0 bodies), log, noop, routing (notifications.routingConfig)')
      .option('--transport-url <url>', `transport URL (default ${CLI_DEFAULT_URL})`)
      .option(
        '--timeout <seconds>',
        `give up (exit 3) when the broker has not taken it by then; through a router, a listener must take it (default ${DEFAULT_TIMEOUT_S} s)`,
        positiveSeconds,
      ),
    [CONFIG_HELP_LINE],
  )
    .exitOverride(exitOnUsage)
    .parse(rest, { from: 'user' });
  const [eventType, ...kv] = program.args;
  const o = program.opts<
    {
      priority: string;
      publisherId: string;
      topic?: string[];
      exchange?: string;
      payload?: string;
      context?: string[];
      driver?: string;
      transportUrl?: string;
      timeout?: number;
    } & LogFlags
  >();
  const config = applyLogFlags(loaded, o);
  // stdout says what was sent; logs (connection progress) go to stderr.
  const log = makeLogger(config, 'notify-send', true);
  captureConsole(log);
  logConnectionState(log, { retry: config.notifications.retry, key: 'notifications.retry' });
  // oslo's Notifier.warning() sends WARN: the name is taken here too.
  const priority = o.priority.toLowerCase() === 'warning' ? 'warn' : o.priority.toLowerCase();
  if (!(PRIORITIES as readonly string[]).includes(priority)) {
    throw new UsageError(`unknown priority '${o.priority}'; use one of ${PRIORITIES.join(', ')}`);
  }
  // Checked here so that the message names the flag the user typed, not the library's option.
  if (o.driver !== undefined && !(NOTIFICATION_DRIVERS as readonly string[]).includes(o.driver))
    throw new UsageError(`--driver: unknown notification driver '${o.driver}'; use one of ${NOTIFICATION_DRIVERS.join(', ')}`);
  if (o.topic?.some((t) => t.trim() === '')) throw new UsageError('--topic: a topic cannot be empty');
  if (o.payload !== undefined && kv.length > 0)
    throw new UsageError(`key=value arguments (${kv.join(' ')}) and --payload are two payloads: give one`);
  const payload = o.payload !== undefined ? parseJson(o.payload, '--payload') : parseKeyValues(kv);
  let transport: Transport | undefined;
  // Past --timeout the command is over: close() would wait up to 5 s more for a first connect
  // still under way, to flush what was sent (--timeout 1 took 6.2 s against a silent peer).
  let gaveUp = false;
  let connectedOnce = false;
  try {
    transport = closeBeforeExit(await getTransport(o.transportUrl, { config }));
    transport.on('state', (s: { state: string }) => {
      if (s.state === 'connected') connectedOnce = true;
    });
    const notifier = new Notifier(transport, {
      publisherId: o.publisherId,
      ...(o.topic ? { topics: o.topic } : {}),
      ...(o.exchange ? { exchange: o.exchange } : {}),
      ...(o.driver ? { driver: o.driver } : {}),
    });
    const sent = notifier.notify(parseKeyValues(o.context ?? []), eventType!, payload, priority as Priority);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), (o.timeout ?? DEFAULT_TIMEOUT_S) * 1000);
    });
    // Said once a second has passed connected: while it is not, the reconnect lines say why it waits.
    const waiting = setInterval(() => {
      if (transport!.state.state !== 'connected') return;
      clearInterval(waiting);
      log.info(`waiting for the broker to take it${/^amqps?$/.test(transport!.url.scheme) ? ' (through a router: for a listener)' : ''}…`);
    }, 1000);
    let outcome: 'timeout' | undefined;
    try {
      outcome = (await Promise.race([sent, timedOut]).finally(() => {
        clearTimeout(timer);
        clearInterval(waiting);
      })) as 'timeout' | undefined;
    } catch (err) {
      // Its own deadline (rpc.responseTimeout shorter than --timeout) or nobody taking it (AMQP 1.0)
      // is the timeout --timeout would have been: 3, as the table says, not 1.
      const d = describeFailure(err);
      printFailure(d, err, false);
      process.exitCode = d.status;
      return;
    }
    if (outcome === 'timeout') {
      sent.catch(() => {});
      gaveUp = true;
      const queues = (o.topic ?? config.notifications.topics).map((t) => `${t}.${priority}`).join(', ');
      // Never connected: no listener or broker is to blame yet (a peer that took the TCP
      // connection and never answered was told "nobody listening on …").
      const st = transport.state;
      const why =
        st.state === 'idle' || (st.state === 'reconnecting' && !connectedOnce)
          ? `not connected to ${'host' in st ? st.host : transport.url.hosts.map((h) => `${h.hostname}:${h.port}`).join(', ')} yet${'reason' in st && st.reason ? `: ${st.reason}` : ''}`
          : /^amqps?$/.test(transport.url.scheme)
            ? `nobody listening on ${queues}?`
            : 'the broker did not confirm it: blocked or unreachable?';
      process.stderr.write(`error: timeout: not taken within ${o.timeout ?? DEFAULT_TIMEOUT_S} s (${why})\n`);
      process.exitCode = EXIT.timeout;
      return;
    }
    // The noop driver sends nothing, nor does a routing config with no rule for this event: not "sent".
    const drivers = notifier.driversFor(eventType!, priority as Priority).filter((d) => d !== 'noop');
    const configured = o.driver ?? config.notifications.driver.join(',');
    process.stdout.write(
      drivers.length > 0
        ? `sent ${priority} ${eventType}\n`
        : notifier.isEnabled()
          ? `not sent: no rule of the routing config (${config.notifications.routingConfig}) selects a driver for ${eventType} at ${priority}\n`
          : `not sent: no driver sends it (${configured})\n`,
    );
  } finally {
    if (gaveUp && transport) await within(transport.close(), CLOSE_GRACE_MS);
    else await transport?.close();
  }
}

main().then(() => exitWhenWritten(Number(process.exitCode ?? EXIT.ok)), fatal);
