import { Target } from '../../core/target.js';
import { RPCServer } from '../../rpc/server.js';
import type { Transport } from '../../transport.js';
import { type Beacon, PRESENCE_TOPIC } from './beacon.js';

/** A server as the status view shows it. */
export interface PresenceRow extends Beacon {
  /** `up`, `stale` (beacons late), or `stopped` (said goodbye). */
  status: 'up' | 'stale' | 'stopped';
  /** Milliseconds since its last beacon. */
  lastSeenMs: number;
}

/** Options of {@link PresenceView}. */
export interface PresenceViewOptions {
  presenceTopic?: string;
  exchange?: string;
  /**
   * Servers kept at most; when full, a new server's beacon takes the place of the server heard
   * from longest ago. @default 10 000
   */
  maxServers?: number;
}

/** A beacon is late after this many of its intervals, and forgotten after {@link GONE_AFTER}. */
export const STALE_AFTER = 2.5;
export const GONE_AFTER = 6;
/**
 * The longest interval the view believes when it ages a row: the interval is the peer's claim,
 * and a day (6 days kept) let anyone who can cast to the presence topic hold rows for days.
 */
export const MAX_TRUSTED_INTERVAL_MS = 60_000;

const MAX_TEXT = 256;

/**
 * Listens to presence beacons (as a server of the presence topic) and keeps the servers seen:
 * up, stale when their beacons are late, forgotten later; a goodbye shows `stopped` for one
 * interval. Beacons come from peers: fields are checked and bounded, and so is the number of
 * servers kept.
 */
export class PresenceView {
  private readonly seen = new Map<string, { beacon: Beacon; at: number }>();
  private readonly server: RPCServer;
  private readonly maxServers: number;

  constructor(transport: Transport, options: PresenceViewOptions = {}) {
    this.maxServers = options.maxServers ?? 10_000;
    const target = new Target({
      topic: options.presenceTopic ?? PRESENCE_TOPIC,
      server: 'status',
      ...(options.exchange ? { exchange: options.exchange } : {}),
    });
    const view = this;
    this.server = new RPCServer(transport, target, [
      {
        async beacon(_ctx: unknown, args: { beacon?: unknown }) {
          view.add(args.beacon);
        },
      },
    ]);
  }

  start(): Promise<void> {
    return this.server.start();
  }

  async stop(): Promise<void> {
    await this.server.stop();
    await this.server.wait(1000);
  }

  /** Takes one beacon; ignores what is not one. */
  add(raw: unknown, now = Date.now()): void {
    const b = parseBeacon(raw);
    if (!b) return;
    const key = `${b.host}\0${b.pid}\0${b.exchange}\0${b.topic}\0${b.name}`;
    // Re-inserted, so the map is in the order servers were last heard from.
    if (!this.seen.delete(key) && this.seen.size >= this.maxServers) {
      // Full: the server heard from longest ago gives way. Ignoring newcomers instead let a peer
      // casting made-up beacons keep every real server out of the view.
      const stalest = this.seen.keys().next().value;
      if (stalest !== undefined) this.seen.delete(stalest);
    }
    this.seen.set(key, { beacon: b, at: now });
  }

  /** The servers now, for `topics` (all when empty), sorted by topic then name; forgets the gone. */
  rows(topics: readonly string[] = [], now = Date.now()): PresenceRow[] {
    const out: PresenceRow[] = [];
    for (const [key, { beacon, at }] of this.seen) {
      const age = now - at;
      const interval = Math.min(beacon.intervalMs, MAX_TRUSTED_INTERVAL_MS);
      const gone = beacon.state === 'stopped' ? interval : interval * GONE_AFTER;
      if (age > gone) {
        this.seen.delete(key);
        continue;
      }
      if (topics.length > 0 && !topics.includes(beacon.topic)) continue;
      const status = beacon.state === 'stopped' ? 'stopped' : age > interval * STALE_AFTER ? 'stale' : 'up';
      out.push({ ...beacon, status, lastSeenMs: age });
    }
    return out.sort((a, b) => a.topic.localeCompare(b.topic) || a.name.localeCompare(b.name) || a.pid - b.pid);
  }
}

function text(v: unknown): string | undefined {
  return typeof v === 'string' && v.length <= MAX_TEXT ? v : undefined;
}
function count(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined;
}

/** A checked beacon, or undefined. */
export function parseBeacon(raw: unknown): Beacon | undefined {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return undefined;
  const r = raw as Record<string, unknown>;
  const b = {
    name: text(r.name),
    host: text(r.host),
    pid: count(r.pid),
    topic: text(r.topic),
    exchange: text(r.exchange),
    version: text(r.version) ?? '',
    served: count(r.served),
    failed: count(r.failed),
    inFlight: count(r.inFlight) ?? 0,
    rate: count(r.rate) ?? 0,
    intervalMs: count(r.intervalMs),
    state: r.state === 'stopped' ? ('stopped' as const) : ('up' as const),
  };
  if (b.name === undefined || b.host === undefined || b.pid === undefined || b.topic === undefined || b.exchange === undefined) {
    return undefined;
  }
  if (b.served === undefined || b.failed === undefined || b.intervalMs === undefined || b.intervalMs < 50) return undefined;
  // Shown as claimed up to a day; rows age by at most MAX_TRUSTED_INTERVAL_MS.
  return { ...(b as Beacon), intervalMs: Math.min(b.intervalMs, 86_400_000) };
}
