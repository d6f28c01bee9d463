import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const FIXED = Symbol.for('hermod.rhea.heartbeats');

/** The shortest idle timeout of a peer's heartbeats are written for. */
export const MIN_PEER_IDLE_TIMEOUT_MS = 500;
/**
 * The longest: rhea writes a heartbeat every half of it with `setTimeout`, whose delays above
 * 2^31 - 1 ms overflow to 1 ms.
 */
export const MAX_PEER_IDLE_TIMEOUT_MS = 2 * (2 ** 31 - 1);
/** AMQP 1.0's MIN-MAX-FRAME-SIZE (§2.7.1): no peer may ask for smaller frames. */
export const MIN_MAX_FRAME_SIZE = 512;

interface ConnectionProto {
  on_open(this: { remote: { open?: { idle_time_out?: unknown } } }, frame: unknown): void;
  [FIXED]?: boolean;
}

const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** 32;

/**
 * Checks what a peer's `open` sets for the life of the connection before rhea takes it:
 *
 * - idle-time-out: rhea writes a heartbeat every half of it, with no floor: peers asking for 1 ms
 *   and never reading held a router at 22 % CPU with 20 of them and 54 % with 200 (a hostile
 *   broker can do the same to a client). A timeout below {@link MIN_PEER_IDLE_TIMEOUT_MS} is read
 *   as that floor (a heartbeat every 250 ms still keeps alive a peer that closes after twice its
 *   timeout of 125 ms or more; below that the peer may time us out, which is its choice, but no
 *   longer sets our write rate), one above {@link MAX_PEER_IDLE_TIMEOUT_MS} as that ceiling
 *   (0xffffffff overflowed Node's timer to a heartbeat every millisecond).
 * - max-frame-size below 512 (or negative, a timestamp -1): rhea splits a message into frames of
 *   that size less 50 bytes, and at 50 or less its loop never ended: one small message took a
 *   router to 4 GB and out of memory.
 *
 * A field that is not a uint (rhea decodes a signed type as given) is a protocol error: rhea
 * closes the connection on a ProtocolError thrown while it reads. Installed once per process.
 */
export function installOpenChecks(): void {
  const proto = (require('rhea/lib/connection.js') as { prototype: ConnectionProto }).prototype;
  if (proto[FIXED]) return;
  const { ProtocolError } = require('rhea/lib/errors.js') as { ProtocolError: new (message: string) => Error };
  const original = proto.on_open;
  proto.on_open = function (frame) {
    const open = (frame as { performative?: { idle_time_out?: unknown; max_frame_size?: unknown } }).performative;
    if (open) {
      for (const field of ['idle_time_out', 'max_frame_size'] as const) {
        const v = open[field];
        if (v !== undefined && v !== null && !isUint(v)) {
          throw new ProtocolError(`open with ${field.replaceAll('_', '-')} ${String(v).slice(0, 40)}, which is not a uint`);
        }
      }
      const mfs = open.max_frame_size;
      if (typeof mfs === 'number' && mfs < MIN_MAX_FRAME_SIZE) {
        throw new ProtocolError(`open with max-frame-size ${mfs}, below AMQP's minimum of ${MIN_MAX_FRAME_SIZE}`);
      }
      const t = open.idle_time_out;
      if (typeof t === 'number' && t > 0) {
        open.idle_time_out = Math.min(MAX_PEER_IDLE_TIMEOUT_MS, Math.max(MIN_PEER_IDLE_TIMEOUT_MS, t));
      }
    }
    original.call(this, frame);
  };
  proto[FIXED] = true;
}
