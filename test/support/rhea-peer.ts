import type { Connection, EventContext } from 'rhea';
import rhea from 'rhea';
import { clearRheaTimers } from '../../src/rhea/index.js';

/** A plain rhea client connection (a peer hermod did not write) to the router under test. */
export async function rheaConnect(port: number): Promise<Connection> {
  const c = rhea.create_container();
  c.on('error', () => {});
  const conn = c.connect({ port, host: '127.0.0.1', reconnect: false } as never);
  await new Promise<void>((resolve, reject) => {
    conn.once('connection_open', () => resolve());
    conn.once('disconnected', (ctx: EventContext) => reject((ctx as unknown as { error?: Error }).error ?? new Error('disconnected')));
  });
  return conn;
}

/** Closes a rhea connection and waits for the socket to go. */
export async function rheaClose(conn: Connection): Promise<void> {
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, 300);
    conn.once('connection_close', () => {
      clearTimeout(t);
      resolve();
    });
    conn.once('disconnected', () => {
      clearTimeout(t);
      resolve();
    });
    conn.close();
  });
  (conn as unknown as { socket?: { destroy(): void } }).socket?.destroy();
  // The router advertises an idle timeout, so rhea keeps heartbeat timers on this connection; a
  // socket destroyed here never tells rhea it ended, and those timers would hold the process.
  clearRheaTimers(conn);
}

/** Drops a rhea connection's socket without a close frame (a peer that vanishes), leaving no rhea timers behind. */
export async function rheaDrop(conn: Connection): Promise<void> {
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, 300);
    conn.once('disconnected', () => {
      clearTimeout(t);
      resolve();
    });
    (conn as unknown as { socket: { destroy(): void } }).socket.destroy();
  });
  clearRheaTimers(conn);
}
