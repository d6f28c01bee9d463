import type { Connection } from 'rhea';

/**
 * Clears the timers rhea keeps per connection (heartbeats, idle abort, reconnect). rhea clears
 * them only when it sees the socket end; a socket we destroy ourselves emits just `close`, and
 * the leftover idle-timeout timers would keep the process alive for minutes.
 */
export function clearRheaTimers(conn: Connection): void {
  const c = conn as unknown as Record<string, NodeJS.Timeout | undefined>;
  for (const k of ['heartbeat_in', 'heartbeat_out', 'abort_idle', 'scheduled_reconnect']) {
    const t = c[k];
    if (t) {
      clearTimeout(t);
      c[k] = undefined;
    }
  }
}
