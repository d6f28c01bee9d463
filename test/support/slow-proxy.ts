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
