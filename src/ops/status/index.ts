/// <reference types="node" preserve="true" />
// A package entry point: its .d.ts use Node's types (EventEmitter, Buffer, NodeJS.*), and from
// TypeScript 6 on an app loads no @types package it is not told about (`types` defaults to []);
// `preserve` keeps this line in the emitted .d.ts (TypeScript 5.5+ drops it otherwise).
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { defaultConfig } from '../../config/index.js';
import type { HermodConfig } from '../../config/schema.js';
import { MAX_TIMER_MS } from '../../core/errors.js';
import { getTransport } from '../../transport.js';
import { PRESENCE_TOPIC } from './beacon.js';
import { renderTable, UNKNOWN_PEERS } from './table.js';
import { PresenceView } from './view.js';

export { type Beacon, PRESENCE_TOPIC, PresenceBeacon, type PresenceBeaconOptions } from './beacon.js';
export { type PresenceRow, PresenceView, type PresenceViewOptions } from './view.js';

/**
 * `hermod status [topic…]`: a live table of the hermod servers that beacon on these topics
 * (all when none given), refreshed every `--refresh` ms until SIGINT/SIGTERM; `--once` prints
 * what `--wait` ms of listening saw and exits; `--json` prints one JSON object per refresh.
 * `config` comes from the bin's config arguments. Resolves with the exit status.
 */
/** A commander parser for a value: `--presence-topic --transport-url x` took the next flag as the topic. */
function notAnOption(v: string): string {
  if (v.startsWith('-')) throw new InvalidArgumentError(`needs a value, got the option ${v}.`);
  return v;
}

export async function runStatus(argv: string[], config: HermodConfig = defaultConfig()): Promise<number> {
  const program = new Command('hermod status')
    .description('Show the hermod servers that send presence beacons, live')
    .argument('[topics...]', 'topics to show (default: all)')
    .option('--transport-url <url>', 'transport URL (default: the transportUrl config option)', notAnOption)
    .option('--exchange <exchange>', 'exchange of the presence topic (default: controlExchange)', notAnOption)
    .option('--presence-topic <topic>', 'topic beacons are sent to', notAnOption, PRESENCE_TOPIC)
    .option('--refresh <ms>', 'refresh every (ms)', (v) => positive('--refresh', v), 1000)
    .option('--once', 'listen for --wait ms, print once and exit')
    .option('--wait <ms>', 'with --once: how long to listen (ms)', (v) => positive('--wait', v), 6000)
    .option('--json', 'print JSON (one object per refresh) instead of a table')
    .addHelpText('after', '\nAlso: --config key=value | --config key value, --config-file file.json, --help-config')
    .exitOverride();
  try {
    program.parse(argv, { from: 'user' });
  } catch (err) {
    // commander has printed the help or the mistake already.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    throw err;
  }
  const topics = program.args;
  const o = program.opts<{
    transportUrl?: string;
    exchange?: string;
    presenceTopic: string;
    refresh: number;
    once?: boolean;
    wait: number;
    json?: boolean;
  }>();
  const transport = await getTransport(o.transportUrl, { config });
  const view = new PresenceView(transport, { presenceTopic: o.presenceTopic, ...(o.exchange ? { exchange: o.exchange } : {}) });
  const tty = process.stdout.isTTY && !o.json;
  const print = () => {
    const rows = view.rows(topics);
    if (o.json) process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), topics, servers: rows, note: UNKNOWN_PEERS })}\n`);
    else process.stdout.write(`${tty && !o.once ? '\x1b[H\x1b[2J' : ''}${renderTable(rows, topics)}`);
  };
  try {
    await view.start();
    if (o.once) {
      await new Promise((r) => setTimeout(r, o.wait));
      print();
      return 0;
    }
    await new Promise<void>((resolve) => {
      const timer = setInterval(print, o.refresh);
      const end = () => {
        clearInterval(timer);
        process.off('SIGINT', end);
        process.off('SIGTERM', end);
        resolve();
      };
      process.on('SIGINT', end);
      process.on('SIGTERM', end);
      print();
    });
    return 0;
  } finally {
    await view.stop();
    await transport.close();
  }
}

function positive(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > MAX_TIMER_MS)
    throw new InvalidArgumentError(`${name} wants a positive number of milliseconds (at most ${MAX_TIMER_MS}), got ${JSON.stringify(v)}`);
  return n;
}
