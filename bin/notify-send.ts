#!/usr/bin/env node
import { Command } from 'commander';
import { getTransport, Notifier, PRIORITIES, type Transport, type Priority } from '../src/index.js';
import { cliConfig, fatal, parseKeyValues, CLI_DEFAULT_URL } from '../src/cli/common.js';

async function main(): Promise<void> {
  const { config, rest, urlFromConfig } = cliConfig(process.argv.slice(2));
  const program = new Command('notify-send')
    .description('Send one notification (oslo Notifier format) from the shell.')
    .argument('<event-type>', 'event type, e.g. compute.instance.create.end')
    .argument('[payload...]', 'payload as key=value (JSON values parse), or one JSON document with --payload')
    .option('--priority <priority>', `one of ${PRIORITIES.join(', ')}`, 'info')
    .option('--publisher-id <id>', 'publisher id', 'hermod.cli')
    .option('--topic <topic...>', 'topics (default notifications.topics)')
    .option('--exchange <exchange>', 'exchange (default the control exchange)')
    .option('--payload <json>', 'the whole payload as JSON')
    .option('--context <key=value...>', 'context entries (oslo keeps only its safe keys)')
    .option('--driver <driver>', 'messagingv2 (default), messaging (1.0 bodies), log')
    .option('--transport-url <url>', `transport URL (default ${CLI_DEFAULT_URL})`)
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .parse(rest, { from: 'user' });
  const [eventType, ...kv] = program.args;
  const o = program.opts<{ priority: string; publisherId: string; topic?: string[]; exchange?: string; payload?: string; context?: string[]; driver?: string; transportUrl?: string }>();
  if (!(PRIORITIES as readonly string[]).includes(o.priority.toLowerCase())) {
    process.stderr.write(`error: unknown priority '${o.priority}'; use one of ${PRIORITIES.join(', ')}\n`);
    process.exit(2);
  }
  const payload = o.payload !== undefined ? JSON.parse(o.payload) : parseKeyValues(kv);
  const url = o.transportUrl ?? (urlFromConfig ? config.transportUrl : CLI_DEFAULT_URL);
  let transport: Transport | undefined;
  try {
    transport = await getTransport(url, { config });
    const notifier = new Notifier(transport, {
      publisherId: o.publisherId,
      ...(o.topic ? { topics: o.topic } : {}),
      ...(o.exchange ? { exchange: o.exchange } : {}),
      ...(o.driver ? { driver: o.driver } : {}),
      retry: 2,
    });
    await notifier.notify(parseKeyValues(o.context ?? []), eventType!, payload, o.priority.toLowerCase() as Priority);
    process.stdout.write(`sent ${o.priority.toLowerCase()} ${eventType}\n`);
  } finally {
    await transport?.close();
  }
}

main().catch((err) => {
  const code = (err as { code?: string }).code;
  if (code === 'HERMOD_ERR_TRANSPORT') { process.stderr.write(`error: ${(err as Error).message}\n`); process.exit(5); }
  fatal(err);
});
