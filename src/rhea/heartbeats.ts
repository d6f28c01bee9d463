import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const FIXED = Symbol.for('hermod.rhea.heartbeats');

/** The shortest idle timeout of a peer's heartbeats are written for. */
export const MIN_PEER_IDLE_TIMEOUT_MS = 500;

interface ConnectionProto {
  on_open(this: { remote: { open?: { idle_time_out?: unknown } } }, frame: unknown): void;
  [FIXED]?: boolean;
}

/**
 * rhea writes a heartbeat every half of the idle timeout the peer's `open` asks for, with no
 * floor: peers asking for 1 ms and never reading held a router at 22 % CPU with 20 of them and
 * 54 % with 200 (a hostile broker can do the same to a client). A peer's idle timeout below
 * {@link MIN_PEER_IDLE_TIMEOUT_MS} is read as that floor: a heartbeat every 250 ms still keeps
 * alive a peer that closes after twice its timeout of 125 ms or more; below that the peer may
 * time us out, which is its choice, but no longer sets our write rate. Installed once per process.
 */
export function installHeartbeatFloor(): void {
  const proto = (require('rhea/lib/connection.js') as { prototype: ConnectionProto }).prototype;
  if (proto[FIXED]) return;
  const original = proto.on_open;
  proto.on_open = function (frame) {
    const open = (frame as { performative?: { idle_time_out?: unknown } }).performative;
    const t = open?.idle_time_out;
    if (open && typeof t === 'number' && t > 0 && t < MIN_PEER_IDLE_TIMEOUT_MS) open.idle_time_out = MIN_PEER_IDLE_TIMEOUT_MS;
    original.call(this, frame);
  };
  proto[FIXED] = true;
}
