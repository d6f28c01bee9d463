import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { makePki, type TestPki } from './pki.js';

const run = promisify(execFile);
const SBIN = '/usr/lib/rabbitmq/bin';

/** Whether the Debian rabbitmq-server package is installed (CI installs it). */
export function rabbitAvailable(): boolean {
  return existsSync(`${SBIN}/rabbitmq-server`);
}

/** A free TCP port on loopback (closed again before returning). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

async function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Whether the AMQP server on `port` is the node named `shortName`: its `connection.start` carries
 * the cluster name, which for a node on its own is `<short name>@<host>`. A port taken from the
 * OS with {@link freePort} is free only until it is closed, and another process of a parallel
 * test run may listen on it first; then the node cannot bind it, while something else accepts
 * connections there.
 */
async function answersAs(port: number, shortName: string): Promise<boolean> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const s = net.connect({ port, host: '127.0.0.1' });
    const done = (v: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(got.includes(shortName)), 2000);
    s.once('connect', () => s.write(Buffer.from('AMQP\x00\x00\x09\x01', 'latin1')));
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      // The frame header (type, channel, size) and the frame end: the whole connection.start.
      if (got.length >= 7 && got.length >= 8 + got.readUInt32BE(3)) done(got.includes(shortName));
    });
    s.once('error', () => done(false));
    s.once('close', () => done(got.includes(shortName)));
  });
}

/**
 * Whether the TLS listener on `port` is the node's: a handshake that the node's own test CA
 * (made afresh for each node) vouches for. As with the AMQP port, another process of a parallel
 * run may take the port first: a test's TCP proxy to the run's shared node did, and the node's
 * "TLS port" then spoke plain AMQP for a whole suite.
 */
async function tlsAnswers(port: number, ca: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tls.connect({
      host: '127.0.0.1',
      port,
      ca: readFileSync(ca),
      rejectUnauthorized: true,
      checkServerIdentity: () => undefined,
    });
    const done = (v: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(false), 2000);
    s.once('secureConnect', () => done(true));
    s.once('error', () => done(false));
    s.once('close', () => done(false));
  });
}

/** The error of a node that could not listen on its ports (another process took one first). */
class PortsTaken extends Error {}

/**
 * Whether process `pid` still runs. A zombie does not: an orphaned process that exited waits for
 * PID 1 to reap it (1-2 s on some machines, never under a PID 1 that does not reap), and
 * `kill(pid, 0)` still succeeds on it.
 */
export const alive = (pid: number | undefined): boolean => {
  if (!pid) return false;
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    // No /proc entry: gone (or no /proc at all, where kill(pid, 0) is the test left).
    if (existsSync('/proc/self/stat')) return false;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Where a node lives; enough to reattach to a node another process started. */
export interface RabbitNodeInfo {
  nodename: string;
  port: number;
  distPort: number;
  dir: string;
  tlsPort?: number;
  /** With `management: true`: the HTTP API's port (loopback). */
  mgmtPort?: number;
}

/**
 * A throwaway RabbitMQ node from the Debian package: its own node name, ports, data, log and
 * cookie (private HOME), started by running the node script directly (the /usr/sbin wrappers
 * would switch to the rabbitmq user and its fixed directories) and stopped by pid.
 */
export class RabbitNode implements RabbitNodeInfo {
  private proc: ChildProcess | undefined;
  /** With `tls: true`: the TLS listener's port and the test PKI. */
  tlsPort?: number;
  pki?: TestPki;
  mgmtPort?: number;
  /** What its `connection.start` names as the cluster: its own short name, or that of the node it joined. */
  private clusterShortName: string;
  private constructor(
    readonly nodename: string,
    readonly port: number,
    readonly distPort: number,
    readonly dir: string,
    private readonly owned: boolean,
  ) {
    this.clusterShortName = nodename.split('@')[0]!;
  }

  /**
   * Starts a node and waits until it accepts AMQP connections (4–8 s). When another process took
   * one of its ports before it could listen, it starts again on new ones (three times at most).
   */
  static async start(opts: { name?: string; tls?: boolean; cookie?: string; management?: boolean } = {}): Promise<RabbitNode> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await RabbitNode.startOnce(opts);
      } catch (err) {
        if (!(err instanceof PortsTaken) || attempt === 3) throw err;
      }
    }
  }

  /**
   * Boots several nodes at once (on two cores, four together take less time than three one
   * after the other). If one fails, the ones that booted are stopped before the error is thrown,
   * so none outlives its suite.
   */
  static async startAll(opts: Array<{ name?: string; tls?: boolean; cookie?: string; management?: boolean }>): Promise<RabbitNode[]> {
    const started = await Promise.allSettled(opts.map((o) => RabbitNode.start(o)));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await Promise.all(started.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
      throw failed.reason;
    }
    return started.map((r) => (r as PromiseFulfilledResult<RabbitNode>).value);
  }

  private static async startOnce(opts: { name?: string; tls?: boolean; cookie?: string; management?: boolean }): Promise<RabbitNode> {
    if (!rabbitAvailable()) throw new Error('rabbitmq-server is not installed (.ci/run installs it)');
    const dir = mkdtempSync(path.join(tmpdir(), 'hermod-rabbit-'));
    const name = `${opts.name ?? 'hermod'}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    const node = new RabbitNode(`${name}@localhost`, await freePort(), await freePort(), dir, true);
    // The management plugin is the run's shared node's only: its HTTP API makes and deletes a
    // suite's vhost in milliseconds, where each rabbitmqctl call boots an Erlang VM (about 1 s
    // of CPU; three per suite). Nodes a suite starts for itself are rebooted often: no plugin.
    writeFileSync(path.join(dir, 'enabled_plugins'), opts.management ? '[rabbitmq_management].\n' : '[].\n');
    // Nodes that are to form a cluster need the same Erlang cookie (HOME is per node).
    if (opts.cookie) writeFileSync(path.join(dir, '.erlang.cookie'), opts.cookie, { mode: 0o400 });
    const conf: string[] = [];
    if (opts.management) {
      node.mgmtPort = await freePort();
      // No message rates: nothing reads them, and collecting them costs the node CPU.
      conf.push(`management.tcp.port = ${node.mgmtPort}`, 'management.tcp.ip = 127.0.0.1', 'management.rates_mode = none');
    }
    if (opts.tls) {
      node.pki = makePki(dir);
      node.tlsPort = await freePort();
      conf.push(
        `listeners.ssl.default = ${node.tlsPort}`,
        `ssl_options.cacertfile = ${node.pki.ca}`,
        `ssl_options.certfile = ${node.pki.cert}`,
        `ssl_options.keyfile = ${node.pki.key}`,
        // Client certificates are checked when offered, not required: both kinds of test run.
        'ssl_options.verify = verify_peer',
        'ssl_options.fail_if_no_peer_cert = false',
      );
    }
    if (conf.length) writeFileSync(path.join(dir, 'rabbitmq.conf'), `${conf.join('\n')}\n`);
    try {
      await node.boot();
    } catch (err) {
      await node.stop().catch(() => {});
      throw err;
    }
    return node;
  }

  /** Reattaches to a node started elsewhere (scripts/test.mjs shares one per test run). */
  static attach(info: RabbitNodeInfo): RabbitNode {
    const node = new RabbitNode(info.nodename, info.port, info.distPort, info.dir, false);
    node.mgmtPort = info.mgmtPort;
    return node;
  }

  /** Reattaches to the run's shared node when scripts/test.mjs started one, else starts one. */
  static async shared(): Promise<RabbitNode> {
    const info = process.env.RABBIT_TEST_NODE;
    if (info) return RabbitNode.attach(JSON.parse(info) as RabbitNodeInfo);
    return RabbitNode.start();
  }

  get info(): RabbitNodeInfo {
    return { nodename: this.nodename, port: this.port, distPort: this.distPort, dir: this.dir, mgmtPort: this.mgmtPort };
  }

  private env(): NodeJS.ProcessEnv {
    const d = this.dir;
    return {
      ...process.env,
      HOME: d,
      RABBITMQ_NODENAME: this.nodename,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(this.port),
      RABBITMQ_DIST_PORT: String(this.distPort),
      RABBITMQ_MNESIA_BASE: path.join(d, 'mnesia'),
      RABBITMQ_LOG_BASE: path.join(d, 'log'),
      RABBITMQ_PID_FILE: path.join(d, 'pid'),
      RABBITMQ_ENABLED_PLUGINS_FILE: path.join(d, 'enabled_plugins'),
      // A crashing node writes erl_crash.dump (and Mnesia core files) into its working
      // directory: keep both inside the node's own temp dir, never the project root.
      ERL_CRASH_DUMP: path.join(d, 'erl_crash.dump'),
      ...(this.tlsPort || this.mgmtPort ? { RABBITMQ_CONFIG_FILE: path.join(d, 'rabbitmq.conf') } : {}),
      // Erlang's schedulers spin before they sleep; on a shared 2-core machine that spinning is
      // CPU the suites beside the node do not get (RabbitMQ's docs advise this on shared hosts).
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '+sbwt none +sbwtdcpu none +sbwtdio none',
      // Each rabbitmqctl call boots an Erlang VM of its own; with one scheduler and no spinning
      // it used 0.97 s of CPU against 1.2 (four calls each way, same wall time on a quiet machine).
      RABBITMQ_CTL_ERL_ARGS: '+S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none',
    };
  }

  private async boot(): Promise<void> {
    const out = openSync(path.join(this.dir, 'server.out'), 'a');
    this.proc = spawn(`${SBIN}/rabbitmq-server`, [], { cwd: this.dir, env: this.env(), stdio: ['ignore', out, out] });
    closeSync(out);
    this.proc.on('error', () => {});
    const end = Date.now() + 60000;
    const shortName = this.clusterShortName;
    // Something that accepts connections on the node's port is not yet the node: see answersAs.
    let foreign = false;
    let tlsSince: number | undefined;
    for (;;) {
      if (await accepts(this.port)) {
        if (await answersAs(this.port, shortName)) {
          const tlsUp = this.tlsPort === undefined || (await tlsAnswers(this.tlsPort, this.pki!.ca));
          if (tlsUp && (this.mgmtPort === undefined || (await accepts(this.mgmtPort)))) return;
          // The node listens on TLS right after AMQP; long after, the port is someone else's.
          tlsSince ??= Date.now();
          if (!tlsUp && Date.now() - tlsSince > 15_000) {
            throw new PortsTaken(
              `rabbitmq-server answers on ${this.port} but not with its TLS certificate on ${this.tlsPort}:\n${this.tail()}`,
            );
          }
        } else foreign = true;
      }
      if (this.proc.exitCode !== null) {
        const out = this.tail();
        const why = `rabbitmq-server exited (${this.proc.exitCode})${foreign ? `, and another server answers on its port ${this.port}` : ''}:\n${out}`;
        throw foreign || /eaddrinuse/i.test(out) ? new PortsTaken(why) : new Error(why);
      }
      if (Date.now() > end) {
        const why = `rabbitmq-server did not accept connections in 60 s${foreign ? ` (another server answers on its port ${this.port})` : ''}:\n${this.tail()}`;
        throw foreign ? new PortsTaken(why) : new Error(why);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private tail(): string {
    try {
      return readFileSync(path.join(this.dir, 'server.out'), 'utf8').slice(-3000);
    } catch {
      return '';
    }
  }

  /** The beam process id (from the node's pid file). */
  pid(): number | undefined {
    try {
      return Number(readFileSync(path.join(this.dir, 'pid'), 'utf8').trim()) || undefined;
    } catch {
      return undefined;
    }
  }

  /** `rabbit://user:pass@127.0.0.1:<port>/<vhost>` */
  url(vhost = '', user = 'guest', password = 'guest'): string {
    return `rabbit://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${this.port}/${encodeURIComponent(vhost)}`;
  }

  /** Runs `rabbitmqctl -n <node> ...args` against this node. */
  async ctl(...args: string[]): Promise<string> {
    const { stdout } = await run(`${SBIN}/rabbitmqctl`, ['-n', this.nodename, ...args], { cwd: this.dir, env: this.env(), timeout: 60000 });
    return stdout;
  }

  /** One call to the management HTTP API (nodes started with `management: true`). */
  private async api(method: string, p: string, body?: object): Promise<void> {
    const res = await fetch(`http://127.0.0.1:${this.mgmtPort}${p}`, {
      method,
      headers: { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`RabbitMQ management API: ${method} ${p} → ${res.status} ${text}`);
  }

  /** Joins `other`'s cluster (both nodes must share a cookie): stop_app, join_cluster, start_app. */
  async joinCluster(other: RabbitNode): Promise<void> {
    await this.ctl('stop_app');
    await this.ctl('join_cluster', other.nodename);
    this.clusterShortName = other.clusterShortName;
    await this.ctl('start_app');
    const end = Date.now() + 30000;
    while (!(await accepts(this.port))) {
      if (Date.now() > end) throw new Error(`${this.nodename} did not come back after joining the cluster`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Creates a vhost with full permissions for guest: the isolation unit of a test suite. */
  async addVhost(name: string): Promise<string> {
    if (this.mgmtPort !== undefined) {
      const v = encodeURIComponent(name);
      await this.api('PUT', `/api/vhosts/${v}`);
      await this.api('PUT', `/api/permissions/${v}/guest`, { configure: '.*', write: '.*', read: '.*' });
      return name;
    }
    await this.ctl('add_vhost', name);
    await this.ctl('set_permissions', '-p', name, 'guest', '.*', '.*', '.*');
    return name;
  }

  async deleteVhost(name: string): Promise<void> {
    if (this.mgmtPort !== undefined) {
      await this.api('DELETE', `/api/vhosts/${encodeURIComponent(name)}`).catch(() => {});
      return;
    }
    await this.ctl('delete_vhost', name).catch(() => {});
  }

  /** Adds a user with `password` and full permissions on `vhost` (the management API when the node has it). */
  async addUser(user: string, password: string, vhost: string): Promise<void> {
    if (this.mgmtPort !== undefined) {
      const u = encodeURIComponent(user);
      await this.api('PUT', `/api/users/${u}`, { password, tags: '' });
      await this.api('PUT', `/api/permissions/${encodeURIComponent(vhost)}/${u}`, { configure: '.*', write: '.*', read: '.*' });
      return;
    }
    await this.ctl('add_user', user, password);
    await this.ctl('set_permissions', '-p', vhost, user, '.*', '.*', '.*');
  }

  /** Deletes a user; the broker closes its connections (asynchronously: watch the client for it). */
  async deleteUser(user: string): Promise<void> {
    if (this.mgmtPort !== undefined) {
      await this.api('DELETE', `/api/users/${encodeURIComponent(user)}`);
      return;
    }
    await this.ctl('delete_user', user);
  }

  /**
   * Names and counts of the queues of a vhost. From rabbitmqctl, not the management API: the
   * API's counts come from statistics refreshed every few seconds.
   */
  async queues(
    vhost: string,
  ): Promise<Map<string, { messages: number; consumers: number; arguments: string; durable: boolean; autoDelete: boolean }>> {
    const out = await this.ctl(
      'list_queues',
      '-p',
      vhost,
      '--quiet',
      '--no-table-headers',
      'name',
      'messages',
      'consumers',
      'durable',
      'auto_delete',
      'arguments',
    );
    const m = new Map();
    for (const line of out.split('\n')) {
      const [name, messages, consumers, durable, autoDelete, ...args] = line.split('\t');
      if (!name) continue;
      m.set(name, {
        messages: Number(messages),
        consumers: Number(consumers),
        durable: durable === 'true',
        autoDelete: autoDelete === 'true',
        arguments: args.join('\t'),
      });
    }
    return m;
  }

  /** Kills the node with SIGKILL (a crash), waiting until it is gone. */
  async kill9(): Promise<void> {
    const pid = this.pid();
    if (pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await this.waitGone(pid);
  }

  /** Starts the node again on the same ports and data directory. */
  async restart(): Promise<void> {
    await this.boot();
  }

  private async waitGone(pid: number | undefined): Promise<void> {
    const end = Date.now() + 30000;
    while ((pid && alive(pid)) || (this.proc && this.proc.exitCode === null && this.proc.signalCode === null)) {
      if (Date.now() > end) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Ends a suite's use of the node: stops it only if this process started it (not the run's shared one). */
  async release(): Promise<void> {
    if (this.owned) await this.stop();
  }

  /** Stops the node (SIGTERM to beam, SIGKILL after 15 s) and, if this process made it, deletes its files. */
  async stop(): Promise<void> {
    const pid = this.pid();
    if (pid) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        /* gone */
      }
    }
    const timer = setTimeout(() => {
      if (pid) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }, 15000);
    await this.waitGone(pid);
    clearTimeout(timer);
    if (this.owned) rmSync(this.dir, { recursive: true, force: true });
  }
}

// `npm run rabbit`: a throwaway node for trying hermod against RabbitMQ by hand (README
// "RabbitMQ"), on free ports, gone with its data when this process is stopped.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const extra = process.argv.slice(2);
  if (extra.length > 0) {
    // It takes no options: `--help` started a node (and left it for Ctrl-C) instead of saying so.
    const help = extra.every((a) => a === '--help' || a === '-h');
    (help ? process.stdout : process.stderr).write(
      `${help ? '' : `unknown argument(s): ${extra.join(' ')}\n`}Usage: npm run rabbit\n\nStarts a throwaway RabbitMQ node on free loopback ports, prints its rabbit:// URL, and on Ctrl-C\n(SIGINT, SIGTERM, SIGHUP) stops it and deletes its data. Takes no options.\n`,
    );
    process.exit(help ? 0 : 2);
  }
  if (!rabbitAvailable()) {
    process.stderr.write('rabbitmq-server is not installed (Debian: apt-get install rabbitmq-server)\n');
    process.exit(1);
  }
  const node = await RabbitNode.start();
  process.stdout.write(`${node.url()}\n`);
  process.stderr.write(
    `RabbitMQ ${node.nodename} (pid ${node.pid()}, data in ${node.dir}) on 127.0.0.1:${node.port}; Ctrl-C stops it and deletes its data\n`,
  );
  // Every signal handled, the stop run once: a second Ctrl-C during it must not end this process
  // before the node and its data are gone.
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void node.stop().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  // Closing the terminal sends SIGHUP: without this the node outlived the script, orphaned.
  process.on('SIGHUP', stop);
  // A node that dies on its own (killed, crashed) takes this script with it, and its data.
  const pid = node.pid();
  const watch = setInterval(() => {
    if (stopping || !pid) return;
    try {
      process.kill(pid, 0);
    } catch {
      clearInterval(watch);
      stopping = true;
      process.stderr.write(`RabbitMQ ${node.nodename} (pid ${pid}) exited on its own; its data is deleted\n`);
      void node.stop().then(() => process.exit(1));
    }
  }, 1000);
}
