#!/usr/bin/env node
import { Command } from 'commander';
import { cliConfig } from '../src/cli/config-args.js';
import { CLI_DEFAULT_URL, NOTIFY_SEND_DEFAULTS } from '../src/cli/defaults.js';
import { EXIT, exitOnUsage, fatal, UsageError } from '../src/cli/exit-codes.js';
import { parseJson, parseKeyValues } from '../src/cli/key-values.js';
import { getTransport, Notifier, PRIORITIES, type Priority, type Transport } from '../src/index.js';

async function main(): Promise<void> {
  const { config, rest } = cliConfig(process.argv.slice(2), NOTIFY_SEND_DEFAULTS);
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
    .exitOverride(exitOnUsage)
    .parse(rest, { from: 'user' });
  const [eventType, ...kv] = program.args;
  const o = program.opts<{
    priority: string;
    publisherId: string;
    topic?: string[];
    exchange?: string;
    payload?: string;
    context?: string[];
    driver?: string;
    transportUrl?: string;
  }>();
  if (!(PRIORITIES as readonly string[]).includes(o.priority.toLowerCase())) {
    throw new UsageError(`unknown priority '${o.priority}'; use one of ${PRIORITIES.join(', ')}`);
  }
  const payload = o.payload !== undefined ? parseJson(o.payload, '--payload') : parseKeyValues(kv);
  let transport: Transport | undefined;
  try {
    transport = await getTransport(o.transportUrl, { config });
    const notifier = new Notifier(transport, {
      publisherId: o.publisherId,
      ...(o.topic ? { topics: o.topic } : {}),
      ...(o.exchange ? { exchange: o.exchange } : {}),
      ...(o.driver ? { driver: o.driver } : {}),
    });
    await notifier.notify(parseKeyValues(o.context ?? []), eventType!, payload, o.priority.toLowerCase() as Priority);
    process.stdout.write(`sent ${o.priority.toLowerCase()} ${eventType}\n`);
  } finally {
    await transport?.close();
  }
}

main().catch((err) => {
  const code = (err as { code?: string }).code;
  if (code === 'HERMOD_ERR_TRANSPORT' || code === 'HERMOD_ERR_ACCESS_REFUSED') {
    process.stderr.write(`error: ${(err as Error).message}\n`);
    process.exit(EXIT.connect);
  }
  fatal(err);
});
