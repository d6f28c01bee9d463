import diagnostics_channel from 'node:diagnostics_channel';
import { Command } from 'commander';
import { CONFIG_HELP_LINE, cliConfig } from '../../src/cli/config-args.js';
import { CLI_DEFAULT_URL, CLI_DEFAULTS } from '../../src/cli/defaults.js';
import { exitOnUsage, failureStatus, fatal, fatalAsJsonLog, fatalAsJsonLogIfAsked, UsageError } from '../../src/cli/exit-codes.js';
import { captureConsole, lineBudget, logConnectionState, makeLogger, PEER_LINES_PER_SECOND } from '../../src/cli/log.js';
import { applyLogFlags, commonOptions, intAtLeast, type LogFlags, listOf } from '../../src/cli/program.js';
import { handleShutdown, parseShutdownTimeout } from '../../src/cli/shutdown.js';
import { escapeUnsafe } from '../../src/core/unsafe-text.js';
import {
  type ConnectionState,
  type Context,
  type DuplicateMessageEvent,
  getTransport,
  InvalidArgument,
  type InvalidMessageEvent,
  type NotificationEvent,
  NotificationFilter,
  NotificationListener,
  type NotificationMetadata,
  PRIORITIES,
  Target,
  type Transport,
} from '../../src/index.js';

async function main(): Promise<void> {
  // A bad --config or flag with --log-json is a JSON line too, before the log exists.
  fatalAsJsonLogIfAsked('notify-listen', process.argv.slice(2));
  const { config: loaded, rest } = cliConfig(process.argv.slice(2), CLI_DEFAULTS);
  const program = commonOptions(
    new Command('notify-listen')
      .description('Print notifications as they arrive: one line each, or JSON.')
      .option('--topic <topic>', 'topic; repeat it or separate with commas for several (default notifications.topics)', listOf)
      .option(
        '--priority <priority>',
        `priority to listen to; repeat it or separate with commas for several (default all: ${PRIORITIES.join(', ')})`,
        listOf,
      )
      .option('--exchange <exchange>', 'exchange (default the control exchange)')
      .option('--pool <name>', 'listener pool: listeners sharing a pool share its notifications (RabbitMQ and memory only)')
      .option(
        '--tap',
        "a queue of its own, deleted on exit: print a copy of every notification, take none from the topic's listeners (RabbitMQ and memory only; implied by --publisher-id/--event-type without --pool)",
      )
      .option('--publisher-id <regex>', 'only publisher ids matching (anchored at the start, as oslo)')
      .option('--event-type <regex>', 'only event types matching')
      .option('--count <n>', 'exit after n notifications', intAtLeast(1))
      .option('--json', 'one JSON object per line')
      .option(
        '--shutdown-timeout <seconds>',
        `on SIGTERM/SIGINT or --count, how long handling may finish (default rpc.stopTimeout, ${loaded.rpc.stopTimeout / 1000} s)`,
      )
      .option('--transport-url <url>', `transport URL (default ${CLI_DEFAULT_URL})`),
    ['Notifications go to stdout, logs to stderr.', CONFIG_HELP_LINE],
  )
    // Refused below with a hint: `--topic a b` was the way to give two topics before.
    .allowExcessArguments(true)
    .exitOverride(exitOnUsage)
    .parse(rest, { from: 'user' });
  if (program.args.length > 0) {
    throw new UsageError(
      `unexpected argument '${program.args[0]}': notify-listen takes none; several topics or priorities are --topic a --topic b or --topic a,b`,
    );
  }
  const o = program.opts<
    {
      topic?: string[];
      priority?: string[];
      exchange?: string;
      pool?: string;
      tap?: boolean;
      publisherId?: string;
      eventType?: string;
      count?: number;
      json?: boolean;
      transportUrl?: string;
      shutdownTimeout?: string;
    } & LogFlags
  >();
  const config = applyLogFlags(loaded, o);
  const timeoutMs = parseShutdownTimeout(o.shutdownTimeout, config.rpc.stopTimeout);
  // 'warning' as oslo's Notifier.warning() names WARN.
  const priorities = [...new Set((o.priority ?? [...PRIORITIES]).map((p) => (p.toLowerCase() === 'warning' ? 'warn' : p.toLowerCase())))];
  for (const p of priorities) {
    if (!(PRIORITIES as readonly string[]).includes(p))
      throw new UsageError(`unknown priority '${p}'; use one of ${PRIORITIES.join(', ')}`);
  }
  if (o.topic?.some((t) => t === '')) throw new UsageError('--topic: a topic cannot be empty');
  if (o.tap && o.pool) throw new UsageError('--tap has a queue of its own: it cannot be in --pool');
  // A filter on the topic's shared queue would take the notifications it skips from the
  // listeners they are for (acknowledged, never printed: lost to everyone), so it taps instead.
  const filtered = Boolean(o.publisherId || o.eventType);
  let tap = Boolean(o.tap || (filtered && !o.pool));
  const log = makeLogger(config, 'notify-listen', true);
  captureConsole(log);
  // A failure from here on is a line of this log: JSON with --log-json.
  fatalAsJsonLog(config.log.json ? 'notify-listen' : undefined);
  logConnectionState(log);
  logBadNotifications(log);
  const transport: Transport = await getTransport(o.transportUrl, { config });
  let seen = 0;
  let listener: NotificationListener | undefined;
  // Installed before start(): notifications already queued are handled inside start(), and a
  // signal (or --count) then must still stop the listener.
  const shutdown = handleShutdown({
    log,
    timeoutMs,
    target: {
      pending: () => {
        const n = listener?.stats().inFlight ?? 0;
        return n > 0 ? `${n} notification(s) being handled` : '';
      },
      aborted: () => listener?.stats().aborted ?? 0,
      graceful: async (deadline) => {
        await listener?.stop();
        const res = await listener?.wait(deadline);
        await transport.close();
        return res?.aborted ?? 0;
      },
      abort: async () => {
        await listener?.abort();
        await transport.close();
      },
    },
  });
  const endpoint: Record<string, unknown> = {};
  if (o.publisherId || o.eventType) {
    try {
      endpoint.filterRule = new NotificationFilter({
        ...(o.publisherId ? { publisherId: o.publisherId } : {}),
        ...(o.eventType ? { eventType: o.eventType } : {}),
      });
    } catch (err) {
      // Named by the flag the user typed, not the library's rule.
      throw new UsageError((err as Error).message.replace(/^publisherId:/, '--publisher-id:').replace(/^eventType:/, '--event-type:'));
    }
  }
  const topics = o.topic ?? config.notifications.topics;
  let announced = false;
  // Said once: after start(), or at the first notification when queued ones arrive inside start()
  // (and --count may be reached, and the stop begun, before start() returns).
  const announce = () => {
    if (announced) return;
    announced = true;
    log.info(
      `listening on ${topics.map((t) => `${t}.{${priorities.join(',')}}`).join(' ')}${o.pool ? ` in pool ${o.pool}` : tap ? ' through a tap (a queue of its own)' : ''}`,
    );
  };
  for (const p of priorities) {
    endpoint[p] = async (ctx: Context, publisherId: string, eventType: string, payload: unknown, metadata: NotificationMetadata) => {
      // Past --count before the stop begins: queued notifications come in a burst (the prefetch),
      // and each one after the count goes back to the queue for the next listener.
      if (shutdown.stopping || (o.count !== undefined && seen >= o.count)) return 'requeue';
      announce();
      // Counted before the line is out: the ones already on their way make the count.
      seen++;
      if (o.count !== undefined && seen >= o.count) setImmediate(() => shutdown.stop(`--count ${o.count} reached`));
      // Every field but the priority is the publisher's text: a newline in one forged a second
      // notification line, an ESC sequence recoloured or retitled the terminal. JSON.stringify
      // leaves C1 controls, bidi overrides and U+2028 raw, so its output is escaped too.
      const line = o.json
        ? JSON.stringify({ priority: p, publisher_id: publisherId, event_type: eventType, payload, context: ctx, ...metadata })
        : `${String(metadata.timestamp ?? '')} ${p.toUpperCase()} ${publisherId} ${eventType} ${JSON.stringify(payload)}`;
      // Acknowledged only once the line is out: handed to the reader (the pipe, the terminal, the
      // file). Returning at once acknowledged notifications whose lines waited in this process's
      // buffer behind a slow reader, and the exit after --count or a signal lost them. A stalled
      // reader holds the endpoints up, so the listener's concurrency (its prefetch) bounds what
      // waits here; past the stop deadline those still waiting are requeued.
      if (await printLine(`${escapeUnsafe(line)}\n`)) return 'handled';
      // Its reader went away (`| head`): the line was not read, so the notification goes back to
      // the queue instead of being acknowledged.
      seen--;
      return 'requeue';
    };
  }
  const listen = (asTap: boolean) =>
    new NotificationListener(
      transport,
      topics.map((topic) => new Target({ topic, ...(o.exchange ? { exchange: o.exchange } : {}) })),
      [endpoint],
      {
        ...(o.pool ? { pool: o.pool } : {}),
        ...(asTap ? { tap: true } : {}),
        allowRequeue: true,
        // Its endpoints only requeue to give back (past --count, or stopping): never drop one for
        // it. A limit would let a notification that bounces back before the consumer is cancelled
        // be acknowledged and lost.
        redeliveryLimit: Number.MAX_SAFE_INTEGER,
      },
    );
  listener = listen(tap);
  // A subscription that can never come back (declares refused for flags a peer set meanwhile,
  // links a router refuses after a reconnect): logged; stop, exit 2 or 5 as the error says.
  transport.on('state', (s: ConnectionState) => {
    if (s.state === 'failed') shutdown.stop('the connection gave up', failureStatus(s.error));
  });
  try {
    await listener.start();
  } catch (err) {
    if (!(tap && !o.tap && err instanceof InvalidArgument)) throw err;
    // AMQP 1.0: a router keeps no queue to copy into. Filtering on the shared subscription is
    // what oslo's listener does; said, since it takes notifications from the topic's others.
    log.warn(
      'AMQP 1.0 cannot tap: this listener shares the topic with its other listeners, and takes (without printing) the notifications the filter skips; filter the output (--json) to leave them be',
    );
    listener = listen(false);
    tap = false;
    await listener.start();
  }
  if (shutdown.stopping) return;
  announce();
}

/** The wait for stdout's 'drain' that the endpoints held up by a full buffer share. */
let drained: Promise<void> | undefined;

/**
 * Writes `line` to stdout; resolves true once it is written out (handed to the pipe, terminal or
 * file), false when stdout failed (its reader went away). Behind a full buffer it first waits for
 * 'drain', so a stalled reader holds up the callers instead of lines piling up in memory.
 */
async function printLine(line: string): Promise<boolean> {
  const out = process.stdout;
  // One wait shared by every endpoint held up (one listener each would pass Node's warning limit).
  while (out.writableNeedDrain && !out.errored && !out.destroyed) {
    drained ??= new Promise<void>((resolve) => {
      const done = () => {
        out.off('drain', done);
        out.off('error', done);
        out.off('close', done);
        drained = undefined;
        resolve();
      };
      out.on('drain', done);
      out.on('error', done);
      out.on('close', done);
    });
    await drained;
  }
  // A failed write marks stdout at once.
  if (out.errored || out.destroyed) return false;
  return new Promise<boolean>((resolve) => {
    // By this write's own outcome: a later line's EPIPE marks the stream errored before this
    // one's callback runs, and a line the reader got was given back and printed twice.
    out.write(line, (err) => resolve(!err));
  });
}

/**
 * Says what the listener settled without printing: it acknowledges malformed, duplicate and
 * dropped notifications so they cannot stall the queue, and without a line someone watching the output
 * could not tell an idle topic from one whose notifications all vanish. Budgeted: a publisher
 * can send such messages at will.
 */
function logBadNotifications(log: ReturnType<typeof makeLogger>): void {
  const budget = lineBudget(PEER_LINES_PER_SECOND, 1000, (n) =>
    log.warn(`${n} more invalid, duplicate or dropped notification(s) in the last second not logged`, {
      event: 'invalid-not-logged',
      skipped: n,
    }),
  );
  diagnostics_channel.subscribe('hermod:message:invalid', (e) => {
    if (budget()) log.warn(`dropped an invalid message: ${(e as InvalidMessageEvent).error.message}`);
  });
  diagnostics_channel.subscribe('hermod:message:duplicate', (e) => {
    if (budget()) log.warn(`ignoring duplicate message ${(e as DuplicateMessageEvent).uniqueId}`);
  });
  diagnostics_channel.subscribe('hermod:notify:listener', (e) => {
    const ev = e as NotificationEvent;
    if (!ev.error || ev.outcome === 'handled') return;
    // A requeue with a reason (a stop deadline, a connection lost under it) comes back: said, not
    // warned. An endpoint that threw is warned of whatever became of the notification.
    const warn = ev.outcome !== 'requeue' || ev.failed === true;
    if (!budget()) return;
    const what = `notification ${ev.eventType ?? '?'} (${ev.priority ?? '?'})`;
    const done = ev.outcome === 'requeue' ? 'gave back' : ev.outcome === 'error' ? 'acknowledged' : 'dropped';
    (warn ? log.warn : log.info)(
      `${done} ${what}: ${ev.failed && ev.outcome !== 'dropped' ? 'its endpoint threw: ' : ''}${ev.error.message}`,
    );
  });
}

main().catch(fatal);
