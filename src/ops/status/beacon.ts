import os from 'node:os';
import { Target } from '../../core/target.js';
import type { RPCServer } from '../../rpc/server.js';

/** The reserved topic beacons are sent to (as a fanout cast of method `beacon`). */
export const PRESENCE_TOPIC = 'hermod.presence';

/** What a server says about itself every interval. All counters are since it started. */
export interface Beacon {
  name: string;
  host: string;
  pid: number;
  topic: string;
  exchange: string;
  version: string;
  served: number;
  failed: number;
  inFlight: number;
  /** Requests finished per second over the last interval. */
  rate: number;
  intervalMs: number;
  /** `stopped` is the goodbye of a server stopping cleanly. */
  state: 'up' | 'stopped';
}

/** Options of {@link PresenceBeacon}. */
export interface PresenceBeaconOptions {
  /** Every how long. @default 5000 */
  intervalMs?: number;
  /** Shown in the VERSION column (the application's version). @default '' */
  version?: string;
  /** Topic beacons go to. @default {@link PRESENCE_TOPIC} */
  presenceTopic?: string;
}

/**
 * Opt-in presence beacons of one RPC server: every `intervalMs` a fanout cast of `beacon`
 * (name, host, pid, topic, version, counters, rate) to `hermod.presence`, read by
 * `hermod status`. A fanout cast, not a notification: oslo's notifier declares a shared
 * queue that would pile up beacons while no status view runs, whereas a fanout reaches only
 * the views running now and is dropped otherwise. Beacons are best effort: one that cannot be
 * sent is counted in {@link failures} and the next one is tried on time.
 *
 * `start()` sends one at once, `stop()` sends a goodbye (state `stopped`) and ends the timer,
 * `abort()` ends it silently (what a crash looks like to the view). No handle is left.
 */
/** How long a stop waits for the beacon in flight and for its goodbye: the status view gets it at once or not at all. */
const GOODBYE_MS = 300;

export class PresenceBeacon {
  /** Beacons that could not be sent. */
  failures = 0;
  /** Beacons sent. */
  sent = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly intervalMs: number;
  private readonly target: Target;
  private last = { at: 0, served: 0 };
  private sending: Promise<void> | undefined;

  constructor(
    private readonly server: RPCServer,
    private readonly options: PresenceBeaconOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 5000;
    if (!Number.isFinite(this.intervalMs) || this.intervalMs < 50)
      throw new RangeError(`beacon interval must be at least 50 ms, got ${this.intervalMs}`);
    const exchange = server.target.exchange;
    this.target = new Target({ topic: options.presenceTopic ?? PRESENCE_TOPIC, fanout: true, ...(exchange ? { exchange } : {}) });
  }

  start(): void {
    if (this.timer) return;
    this.last = { at: performance.now(), served: this.server.stats().served };
    this.timer = setInterval(() => void this.send('up'), this.intervalMs);
    // Beacons alone must not keep a process alive.
    this.timer.unref();
    void this.send('up');
  }

  /** Ends the beacons with a goodbye, so the status view drops this server at once. */
  async stop(): Promise<void> {
    if (!this.timer) return;
    this.abort();
    // Bounded: with no status view listening, a router releases a fanout cast and the driver
    // retries it until its timeout, which added a whole interval (5 s) to every stop.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.sending, new Promise((r) => (timer = setTimeout(r, GOODBYE_MS)))]);
    clearTimeout(timer);
    await this.send('stopped', GOODBYE_MS);
  }

  /** Ends the beacons without a word. */
  abort(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The beacon as it would be sent now. */
  beacon(state: Beacon['state'] = 'up'): Beacon {
    const s = this.server.stats();
    const now = performance.now();
    const seconds = (now - this.last.at) / 1000;
    const rate = seconds > 0 ? (s.served - this.last.served) / seconds : 0;
    this.last = { at: now, served: s.served };
    const t = this.server.target;
    return {
      name: t.server!,
      host: os.hostname(),
      pid: process.pid,
      topic: t.topic!,
      exchange: t.exchange ?? this.server.transport.config.controlExchange,
      version: this.options.version ?? '',
      served: s.served,
      failed: s.failed,
      inFlight: s.inFlight,
      rate: Math.round(rate * 100) / 100,
      intervalMs: this.intervalMs,
      state,
    };
  }

  private send(state: Beacon['state'], timeoutMs = this.intervalMs): Promise<void> {
    const beacon = this.beacon(state);
    const sending = this.server.transport.driver
      .send(this.target, {}, { method: 'beacon', args: { beacon } }, { waitForReply: false, timeout: timeoutMs, retry: 0 })
      .then(
        () => {
          this.sent++;
        },
        () => {
          this.failures++;
        },
      );
    this.sending = sending;
    return sending;
  }
}
