#!/usr/bin/env node
import { Command } from 'commander';
import {
  getTransport, NotificationListener, NotificationFilter, PRIORITIES, Target, type Transport, type Context, type NotificationMetadata,
} from '../src/index.js';
import { cliConfig, fatal, makeLogger, logConnectionState, CLI_DEFAULT_URL } from '../src/cli/common.js';

async function main(): Promise<void> {
  const { config, rest, urlFromConfig } = cliConfig(process.argv.slice(2));
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
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .parse(rest, { from: 'user' });
  const o = program.opts<{ topic?: string[]; priority?: string[]; exchange?: string; pool?: string; publisherId?: string; eventType?: string; count?: number; json?: boolean; transportUrl?: string }>();
  const priorities = (o.priority ?? [...PRIORITIES]).map((p) => p.toLowerCase());
  for (const p of priorities) {
    if (!(PRIORITIES as readonly string[]).includes(p)) { process.stderr.write(`error: unknown priority '${p}'\n`); process.exit(2); }
  }
  const log = makeLogger(config, 'notify-listen', true);
  logConnectionState(log);
  const url = o.transportUrl ?? (urlFromConfig ? config.transportUrl : CLI_DEFAULT_URL);
  const transport: Transport = await getTransport(url, { config });
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
    endpoint.filterRule = new NotificationFilter({ ...(o.publisherId ? { publisherId: o.publisherId } : {}), ...(o.eventType ? { eventType: o.eventType } : {}) });
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
  listener = new NotificationListener(transport, topics.map((topic) => new Target({ topic, ...(o.exchange ? { exchange: o.exchange } : {}) })), [endpoint], {
    ...(o.pool ? { pool: o.pool } : {}),
    allowRequeue: true,
  });
  await listener.start();
  log.info(`listening on ${topics.map((t) => `${t}.{${priorities.join(',')}}`).join(' ')}${o.pool ? ` in pool ${o.pool}` : ''}`);
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
}

main().catch((err) => fatal(err));
