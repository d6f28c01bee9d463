#!/usr/bin/env node
import { Command } from 'commander';
import { cliConfig } from '../src/cli/config-args.js';
import { CLI_DEFAULT_URL, CLI_DEFAULTS } from '../src/cli/defaults.js';
import { exitOnUsage, fatal, UsageError } from '../src/cli/exit-codes.js';
import { logConnectionState, makeLogger } from '../src/cli/log.js';
import {
  type Context,
  getTransport,
  NotificationFilter,
  NotificationListener,
  type NotificationMetadata,
  PRIORITIES,
  Target,
  type Transport,
} from '../src/index.js';

async function main(): Promise<void> {
  const { config, rest } = cliConfig(process.argv.slice(2), CLI_DEFAULTS);
  const program = new Command('notify-listen')
    .description('Print notifications as they arrive: one line each, or JSON.')
    .option('--topic <topic...>', 'topics (default notifications.topics)')
    .option('--priority <priority...>', `priorities to listen to (default all: ${PRIORITIES.join(', ')})`)
    .option('--exchange <exchange>', 'exchange (default the control exchange)')
    .option('--pool <name>', 'listener pool: listeners sharing a pool share its notifications')
    .option('--publisher-id <regex>', 'only publisher ids matching (anchored at the start, as oslo)')
    .option('--event-type <regex>', 'only event types matching')
    .option('--count <n>', 'exit after n notifications', (v) => Number(v))
    .option('--json', 'one JSON object per line')
    .option('--transport-url <url>', `transport URL (default ${CLI_DEFAULT_URL})`)
    .exitOverride(exitOnUsage)
    .parse(rest, { from: 'user' });
  const o = program.opts<{
    topic?: string[];
    priority?: string[];
    exchange?: string;
    pool?: string;
    publisherId?: string;
    eventType?: string;
    count?: number;
    json?: boolean;
    transportUrl?: string;
  }>();
  const priorities = (o.priority ?? [...PRIORITIES]).map((p) => p.toLowerCase());
  for (const p of priorities) {
    if (!(PRIORITIES as readonly string[]).includes(p)) throw new UsageError(`unknown priority '${p}'`);
  }
  const log = makeLogger(config, 'notify-listen', true);
  logConnectionState(log);
  const transport: Transport = await getTransport(o.transportUrl, { config });
  let seen = 0;
  let listener: NotificationListener | undefined;
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    await listener?.stop();
    await listener?.wait(2000);
    await transport.close();
    // No process.exit(): ending with the event loop lets the last dispositions reach the broker.
    process.exitCode = code;
    process.removeAllListeners('SIGINT');
    process.removeAllListeners('SIGTERM');
  };
  const endpoint: Record<string, unknown> = {};
  if (o.publisherId || o.eventType) {
    endpoint.filterRule = new NotificationFilter({
      ...(o.publisherId ? { publisherId: o.publisherId } : {}),
      ...(o.eventType ? { eventType: o.eventType } : {}),
    });
  }
  for (const p of priorities) {
    endpoint[p] = (ctx: Context, publisherId: string, eventType: string, payload: unknown, metadata: NotificationMetadata) => {
      if (stopping) return 'requeue';
      const line = o.json
        ? JSON.stringify({ priority: p, publisher_id: publisherId, event_type: eventType, payload, context: ctx, ...metadata })
        : `${metadata.timestamp ?? ''} ${p.toUpperCase()} ${publisherId} ${eventType} ${JSON.stringify(payload)}`;
      process.stdout.write(`${line}\n`);
      seen++;
      if (o.count !== undefined && seen >= o.count) setImmediate(() => void stop(0));
      return 'handled';
    };
  }
  const topics = o.topic ?? config.notifications.topics;
  listener = new NotificationListener(
    transport,
    topics.map((topic) => new Target({ topic, ...(o.exchange ? { exchange: o.exchange } : {}) })),
    [endpoint],
    {
      ...(o.pool ? { pool: o.pool } : {}),
      allowRequeue: true,
    },
  );
  await listener.start();
  log.info(`listening on ${topics.map((t) => `${t}.{${priorities.join(',')}}`).join(' ')}${o.pool ? ` in pool ${o.pool}` : ''}`);
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
}

main().catch(fatal);
