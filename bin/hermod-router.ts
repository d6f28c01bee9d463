#!/usr/bin/env node
import { Command } from 'commander';
import { EXIT, exitOnUsage } from '../src/cli/exit-codes.js';
import { Router } from '../src/router/router.js';

const program = new Command('hermod-router')
  .description('An AMQP 1.0 message router for hermod and oslo.messaging (amqp1 driver). Not a broker: nothing is stored.')
  .option('--host <host>', 'interface to listen on', '127.0.0.1')
  .option('--port <port>', 'TCP port (0 = any free port)', (v) => Number(v), 5672)
  .option('--quiet', 'print only the listening line and errors')
  .exitOverride(exitOnUsage)
  .parse();
const o = program.opts<{ host: string; port: number; quiet?: boolean }>();
const stamp = () => new Date().toISOString();
const router = new Router({
  host: o.host,
  port: o.port,
  log: (line) => {
    if (!o.quiet || line.startsWith('router listening')) process.stdout.write(`${stamp()} INFO  ${line}\n`);
  },
});
router.start().then(
  () => {
    const stop = async (signal: string) => {
      process.stdout.write(`${stamp()} INFO  ${signal}: stopping (${JSON.stringify(router.stats())})\n`);
      await router.stop();
      process.exit(0);
    };
    process.on('SIGINT', () => void stop('SIGINT'));
    process.on('SIGTERM', () => void stop('SIGTERM'));
  },
  (err: Error) => {
    process.stderr.write(`error: cannot listen on ${o.host}:${o.port}: ${err.message}\n`);
    process.exit(EXIT.failed);
  },
);
