import { UNSAFE_CHARS } from '../../core/unsafe-text.js';
import type { PresenceRow } from './view.js';

/** Said under every view: the table shows beaconing hermod servers only. */
export const UNKNOWN_PEERS = 'unknown peers may exist (oslo servers and servers without beacons do not show)';

const COLUMNS: Array<[string, (r: PresenceRow) => string]> = [
  ['TOPIC', (r) => r.topic],
  ['NAME', (r) => r.name],
  ['HOST', (r) => r.host],
  ['PID', (r) => String(r.pid)],
  ['VERSION', (r) => r.version || '-'],
  ['RATE/s', (r) => r.rate.toFixed(1)],
  ['IN FLIGHT', (r) => String(r.inFlight)],
  ['SERVED', (r) => String(r.served)],
  ['ERRORS', (r) => String(r.failed)],
  ['LAST SEEN', (r) => `${(r.lastSeenMs / 1000).toFixed(1)}s ago`],
  ['STATUS', (r) => r.status],
];

/** The servers as a text table, with the unknown-peers note. */
export function renderTable(rows: readonly PresenceRow[], topics: readonly string[]): string {
  const where = topics.length ? `topic ${topics.join(', ')}` : 'all topics';
  if (rows.length === 0) return `no hermod server beaconing on ${where}\n${UNKNOWN_PEERS}\n`;
  // Peer-given text is shown verbatim but never as terminal control sequences, bidi overrides
  // or invisible characters (the same set log lines escape).
  const cells = rows.map((r) => COLUMNS.map(([, f]) => f(r).replace(UNSAFE_CHARS, '?')));
  const widths = COLUMNS.map(([h], i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) =>
    c
      .map((v, i) => v.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return `${[line(COLUMNS.map(([h]) => h)), ...cells.map(line)].join('\n')}\n${UNKNOWN_PEERS}\n`;
}
