import net from 'node:net';

/** A TCP proxy that holds each connection before it passes bytes on: TCP is up at once, the peer's protocol answer comes late. */
export interface SlowProxy {
  /** `amqp://127.0.0.1:<proxy port>/`. */
  url: string;
  /**
   * Drops every connection open now, as a network failure would; new ones are still taken, and
   * held `holdMs` from now on (a peer that stays unreachable for a while).
   */
  cut(holdMs?: number): void;
  close(): Promise<void>;
}

/** Starts a proxy on a port of the OS's choosing to `upstream` (a URL with host and port), holding each connection `holdMs`. */
export async function slowProxy(upstream: string, holdMs: number): Promise<SlowProxy> {
  let hold = holdMs;
  const to = new URL(upstream);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.pause();
    const timer = setTimeout(() => {
      const up = net.connect(Number(to.port), to.hostname, () => {
        client.pipe(up).pipe(client);
        client.resume();
      });
      sockets.add(up);
      up.on('error', () => client.destroy());
      client.on('close', () => up.destroy());
    }, hold);
    client.on('error', () => undefined);
    client.on('close', () => clearTimeout(timer));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `${to.protocol}//127.0.0.1:${(server.address() as net.AddressInfo).port}/`,
    cut(holdNext = hold) {
      hold = holdNext;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A TCP proxy that drops a connection when its client sends bytes holding `match`, the first `times` times. */
export interface CuttingProxy {
  /** `amqp://127.0.0.1:<proxy port>/`. */
  url: string;
  /** How many connections it has dropped. */
  readonly cuts: number;
  /** How many chunks its clients sent holding `match`, the dropped ones included: writes, seen from the wire. */
  readonly seen: number;
  close(): Promise<void>;
}

/**
 * Starts a proxy to `upstream` that drops the whole connection, both ways, the moment a client
 * sends a chunk holding `match` (a queue's name in its Queue.Declare, say), for the first `times`
 * such chunks: a connection lost in the middle of a setup.
 */
export async function cuttingProxy(upstream: string, match: Buffer, times: number): Promise<CuttingProxy> {
  const to = new URL(upstream);
  const needle = match;
  const sockets = new Set<net.Socket>();
  let cuts = 0;
  let seen = 0;
  const server = net.createServer((client) => {
    sockets.add(client);
    const up = net.connect(Number(to.port), to.hostname);
    sockets.add(up);
    const drop = () => {
      client.destroy();
      up.destroy();
    };
    client.on('data', (chunk: Buffer) => {
      const holds = chunk.includes(needle);
      if (holds) seen++;
      if (cuts < times && holds) {
        cuts++;
        drop();
      } else up.write(chunk);
    });
    up.pipe(client);
    for (const s of [client, up]) {
      s.on('error', drop);
      s.on('close', () => {
        sockets.delete(s);
        drop();
      });
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `${to.protocol}//127.0.0.1:${(server.address() as net.AddressInfo).port}/`,
    get cuts() {
      return cuts;
    },
    get seen() {
      return seen;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** The bytes that open an AMQP 0-9-1 Queue.Declare of `queue` (class 50, method 10, reserved short, the name): found in no other frame. */
export function queueDeclareBytes(queue: string): Buffer {
  const name = Buffer.from(queue);
  return Buffer.concat([Buffer.from([0, 50, 0, 10, 0, 0, name.length]), name]);
}

/** A TCP server on loopback that takes every connection and never sends a byte: a peer that does not answer. */
export interface SilentPeer {
  readonly port: number;
  close(): Promise<void>;
}

/** Starts a {@link SilentPeer} on a port of the OS's choosing. */
export async function silentPeer(): Promise<SilentPeer> {
  const held = new Set<net.Socket>();
  const server = net.createServer((s) => {
    held.add(s);
    s.on('error', () => {});
    s.on('close', () => held.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    async close() {
      for (const s of held) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
