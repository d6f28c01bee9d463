import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { CONFIG_HELP_LINE, cliConfig, parseConfigArgs } from '../../src/cli/config-args.js';
import { releaseStartupSignals } from '../../src/cli/early-signals.js';
import { EXIT, exitOnUsage, fatal, fatalAsJsonLog, fatalAsJsonLogIfAsked, UsageError } from '../../src/cli/exit-codes.js';
import { captureConsole, makeLogger } from '../../src/cli/log.js';
import { applyLogFlags, commonOptions, intAtLeast, type LogFlags, plainNumber } from '../../src/cli/program.js';
import { handleShutdown, parseShutdownTimeout } from '../../src/cli/shutdown.js';
import { MAX_TIMER_MS } from '../../src/core/errors.js';
import { Router } from '../../src/router/router.js';
import { setPassword } from '../../src/router/users.js';

if (process.argv[2] === 'passwd') {
  // It installs no handlers: Ctrl-C must end it while it waits for a password.
  releaseStartupSignals();
  await passwd();
}

/** A commander parser: seconds (decimals allowed) ≥ 0, or > 0 without `zero`, into ms. */
const seconds =
  (zero: boolean) =>
  (v: string): number => {
    const n = plainNumber(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < 0 || (!zero && n === 0) || n * 1000 > MAX_TIMER_MS)
      throw new InvalidArgumentError(`needs a number of seconds ${zero ? '≥' : '>'} 0 and at most ${Math.floor(MAX_TIMER_MS / 1000)}.`);
    return Math.round(n * 1000);
  };
const port = (v: string) => {
  if (!/^\d{1,5}$/.test(v) || Number(v) > 65535) throw new InvalidArgumentError('expected a TCP port, 0-65535.');
  return Number(v);
};
/** The router's own settings are its flags; of hermod's configuration it reads log.* only. */
function routerConfig(argv: string[]): ReturnType<typeof cliConfig> {
  try {
    const misplaced = Object.keys(parseConfigArgs(argv).overrides).find((k) => !k.startsWith('log.'));
    if (misplaced)
      throw new UsageError(`hermod-router takes only log.* keys with --config (got '${misplaced}'); its own settings are flags (--help)`);
    return cliConfig(argv, {});
  } catch (err) {
    fatal(err);
  }
}
// A bad --config or flag with --log-json is a JSON line too, before the log exists.
fatalAsJsonLogIfAsked('hermod-router', process.argv.slice(2));
const loaded = routerConfig(process.argv.slice(2));
const program = commonOptions(
  new Command('hermod-router')
    .description('An AMQP 1.0 message router for hermod and oslo.messaging (amqp1 driver). Not a broker: nothing is stored.')
    .option('--host <host>', 'interface to listen on', '127.0.0.1')
    .option('--port <port>', 'TCP port (0 = any free port)', port, 5672)
    .option('--users <file>', 'users file: SASL PLAIN logins and per-user address rules (see `hermod-router passwd`)')
    .option(
      '--allow-anonymous',
      'offer SASL ANONYMOUS (the default only without --users/--tls-ca; needed to listen beyond loopback without them)',
    )
    .option('--tls-cert <file>', 'listen with TLS (amqps): certificate (PEM)')
    .option('--tls-key <file>', 'TLS private key (PEM)')
    .option('--tls-ca <file>', 'CA of client certificates: clients may log in with one (SASL EXTERNAL, user = its CN)')
    .option('--max-connections <n>', 'open connections at most', intAtLeast(1), 1000)
    .option(
      '--max-handshakes-per-address <n>',
      'connections from one client address still logging in (before AMQP open) at most',
      intAtLeast(1),
      64,
    )
    .option('--max-sessions <n>', 'sessions per connection at most', intAtLeast(1), 64)
    .option('--max-login-checks <n>', 'password checks (scrypt) run at once; other logins wait', intAtLeast(1), 2)
    .option('--max-logins-waiting <n>', 'logins waiting for a password check at most; past it they are told to retry', intAtLeast(1), 64)
    .option(
      '--max-logins-per-address <n>',
      'logins from one client address being checked or waiting at most; past it they are told to retry',
      intAtLeast(1),
      32,
    )
    .option('--max-links <n>', 'links per connection at most', intAtLeast(1), 1000)
    .option('--max-message-size <bytes>', 'largest message accepted', intAtLeast(1), 16 * 1024 * 1024)
    .option(
      '--max-held-bytes <bytes>',
      'bytes held for receivers without credit, all together; past it, messages that would wait are released',
      intAtLeast(1),
      512 * 1024 * 1024,
    )
    // Defaults applied below, not here: commander would print them in ms beside "<seconds>".
    .option('--handshake-timeout <seconds>', 'time from connect to AMQP open (TLS and SASL included; default 5 s)', seconds(false))
    .option(
      '--idle-timeout <seconds>',
      'idle timeout advertised to peers (0 = none; default 16 s); silent peers are closed after twice that',
      seconds(true),
    )
    .option('--shutdown-timeout <seconds>', 'on SIGTERM/SIGINT, how long closing the connections may take (default 5 s)'),
  [
    'hermod-router passwd <file> <user>   sets a password in a users file (read from stdin, or prompted)',
    '--quiet still prints the listening line. Connections opening and closing are logged at info.',
    `${CONFIG_HELP_LINE}; of these, the router reads only log.* (its own settings are the flags above)`,
  ],
)
  .exitOverride(exitOnUsage)
  .parse(loaded.rest, { from: 'user' });
const o = program.opts<
  {
    host: string;
    port: number;
    users?: string;
    allowAnonymous?: boolean;
    tlsCert?: string;
    tlsKey?: string;
    tlsCa?: string;
    maxConnections: number;
    maxHandshakesPerAddress: number;
    maxSessions: number;
    maxLoginChecks: number;
    maxLoginsWaiting: number;
    maxLoginsPerAddress: number;
    maxLinks: number;
    maxMessageSize: number;
    maxHeldBytes: number;
    handshakeTimeout?: number;
    idleTimeout?: number;
    shutdownTimeout?: string;
  } & LogFlags
>();
const logConfig = applyLogFlags(loaded.config, o);
const log = makeLogger(logConfig, 'hermod-router');
captureConsole(log);
// A failure from here on is a line of this log: JSON with --log-json.
fatalAsJsonLog(logConfig.log.json ? 'hermod-router' : undefined);
if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) {
  fatal(new UsageError('--tls-cert and --tls-key go together'));
}
// Client certificates exist only on a TLS listener: without one the CA was dropped and the router
// listened in clear, anonymous (or refused a public --host with advice to add the --tls-ca it had).
if (o.tlsCa !== undefined && o.tlsCert === undefined) {
  fatal(new UsageError('--tls-ca needs --tls-cert and --tls-key (client certificates are checked on a TLS listener)'));
}
// Read now, as --users is: a missing file is the command line's mistake (2, naming the flag), not
// a failure to listen (1).
for (const [flag, file] of [
  ['--tls-cert', o.tlsCert],
  ['--tls-key', o.tlsKey],
  ['--tls-ca', o.tlsCa],
] as const) {
  if (file === undefined) continue;
  try {
    readFileSync(file);
  } catch (err) {
    fatal(new UsageError(`cannot read ${flag} file ${file}: ${(err as Error).message}`));
  }
}
let router: Router;
try {
  router = new Router({
    host: o.host,
    port: o.port,
    log: (line) => {
      if (line.startsWith('WARNING')) log.warn(line.replace(/^WARNING: /, ''));
      else if (line.startsWith('router listening')) log.announce(line);
      else log.info(line);
    },
    ...(o.users ? { users: o.users } : {}),
    ...(o.allowAnonymous ? { allowAnonymous: true } : {}),
    ...(o.tlsCert !== undefined && o.tlsKey !== undefined
      ? { tls: { cert: o.tlsCert, key: o.tlsKey, ...(o.tlsCa ? { ca: o.tlsCa } : {}) } }
      : {}),
    maxConnections: o.maxConnections,
    maxHandshakesPerAddress: o.maxHandshakesPerAddress,
    maxSessions: o.maxSessions,
    maxLoginChecks: o.maxLoginChecks,
    maxLoginsWaiting: o.maxLoginsWaiting,
    maxLoginsPerAddress: o.maxLoginsPerAddress,
    maxLinks: o.maxLinks,
    maxMessageSize: o.maxMessageSize,
    maxHeldBytes: o.maxHeldBytes,
    handshakeTimeout: o.handshakeTimeout ?? 5000,
    idleTimeout: o.idleTimeout ?? 16_000,
  });
} catch (err) {
  fatal(new UsageError((err as Error).message));
}
let timeoutMs = 0;
try {
  timeoutMs = parseShutdownTimeout(o.shutdownTimeout, 5000);
} catch (err) {
  fatal(err);
}
// Installed before start(): a signal while binding stops too. The router holds no work of its own:
// stopping tells every client to reconnect elsewhere and closes their connections.
handleShutdown({
  log,
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
router.start().catch((err: NodeJS.ErrnoException) => {
  // Status 1, as before: a failure to listen, not the command line's.
  fatal(new Error(listenFailure(err, o.host, o.port)));
});

/** One line saying why the router cannot listen, with what to do about it. */
function listenFailure(err: NodeJS.ErrnoException, host: string, port: number): string {
  switch (err.code) {
    case 'EADDRINUSE':
      // 5672/5671 are AMQP's ports: what usually holds them is a RabbitMQ node.
      return `port ${port} is in use — ${port === 5672 || port === 5671 ? 'is RabbitMQ running? ' : ''}use --port <n> to pick another (0 = any free port)`;
    case 'EACCES':
      return `not allowed to listen on port ${port} (ports below 1024 need privileges); use --port`;
    case 'EADDRNOTAVAIL':
      return `cannot listen on ${host}: no such local address; use --host`;
    default:
      return `cannot listen on ${host}:${port}: ${err.message}`;
  }
}

/** `hermod-router passwd <file> <user>`: the password from stdin (first line), or prompted twice on a terminal. */
async function passwd(): Promise<never> {
  const [file, user] = process.argv.slice(3);
  const usageLine = 'usage: hermod-router passwd <file> <user>   (password on stdin, or prompted)\n';
  if (file === '--help' || file === '-h') {
    process.stdout.write(usageLine);
    process.exit(EXIT.ok);
  }
  if (!file || !user || process.argv.length > 5) {
    process.stderr.write(usageLine);
    process.exit(EXIT.usage);
  }
  const password = process.stdin.isTTY ? await promptTwice() : (await readStdin()).split(/\r?\n/)[0]!;
  if (!password) {
    process.stderr.write('error: empty password\n');
    process.exit(EXIT.usage);
  }
  try {
    await setPassword(file, user, password);
  } catch (err) {
    process.stderr.write(`error: ${(err as Error).message}\n`);
    process.exit(EXIT.failed);
  }
  process.stdout.write(`password of ${user} set in ${file}\n`);
  process.exit(EXIT.ok);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Reads a line from the terminal without echoing it. */
function prompt(question: string): Promise<string> {
  return new Promise((resolve) => {
    process.stderr.write(question);
    const stdin = process.stdin;
    stdin.setRawMode(true);
    stdin.resume();
    let line = '';
    const onData = (b: Buffer) => {
      for (const ch of b.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          stdin.off('data', onData);
          stdin.setRawMode(false);
          stdin.pause();
          process.stderr.write('\n');
          resolve(line);
          return;
        }
        if (ch === '\u0003') process.exit(130);
        if (ch === '\u007f') line = line.slice(0, -1);
        else line += ch;
      }
    };
    stdin.on('data', onData);
  });
}

async function promptTwice(): Promise<string> {
  const a = await prompt('password: ');
  const b = await prompt('again: ');
  if (a !== b) {
    process.stderr.write('error: the passwords differ\n');
    process.exit(EXIT.usage);
  }
  return a;
}
