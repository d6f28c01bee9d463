#!/usr/bin/env node
import { Command } from 'commander';
import { EXIT, exitOnUsage, fatal } from '../src/cli/exit-codes.js';
import { handleShutdown, parseShutdownTimeout } from '../src/cli/shutdown.js';
import { Router } from '../src/router/router.js';

const program = new Command('hermod-router')
  .description('An AMQP 1.0 message router for hermod and oslo.messaging (amqp1 driver). Not a broker: nothing is stored.')
  .option('--host <host>', 'interface to listen on', '127.0.0.1')
  .option('--port <port>', 'TCP port (0 = any free port)', (v) => Number(v), 5672)
  .option('--quiet', 'print only the listening line and errors')
  .option('--shutdown-timeout <seconds>', 'on SIGTERM/SIGINT, how long closing the connections may take', '5')
  .exitOverride(exitOnUsage)
  .parse();
const o = program.opts<{ host: string; port: number; quiet?: boolean; shutdownTimeout: string }>();
const stamp = () => new Date().toISOString();
const router = new Router({
  host: o.host,
  port: o.port,
  log: (line) => {
    if (!o.quiet || line.startsWith('router listening')) process.stdout.write(`${stamp()} INFO  ${line}\n`);
  },
});
let timeoutMs = 0;
try {
  timeoutMs = parseShutdownTimeout(o.shutdownTimeout, 5000);
} catch (err) {
  fatal(err);
}
const line = (level: string) => (m: string) => process.stdout.write(`${stamp()} ${level.padEnd(5)} ${m}\n`);
// Installed before start(): a signal while binding stops too. The router holds no work of its own:
// stopping tells every client to reconnect elsewhere and closes their connections.
handleShutdown({
  log: { debug: () => {}, info: line('INFO'), warn: line('WARN'), error: line('ERROR') },
  timeoutMs,
  target: {
    pending: () => {
      const n = router.stats().connections;
      return n > 0 ? `${n} connection(s) to close` : '';
    },
    aborted: () => 0,
    graceful: async () => {
      await router.stop();
      return 0;
    },
    abort: () => router.stop(),
  },
});
router.start().catch((err: Error) => {
  process.stderr.write(`error: cannot listen on ${o.host}:${o.port}: ${err.message}\n`);
  process.exit(EXIT.failed);
});
