import type { Connection, Message } from 'rhea';
import rhea from 'rhea';
import { scanMessage } from './message-scan.js';

// Symbol.for: two copies of hermod in one process share the patch (see the hermodRaw flag).
const RAW = Symbol.for('hermod.rhea.raw');
const SCAN = Symbol.for('hermod.rhea.scan');

interface MessageModule {
  decode: ((buffer: Buffer) => object) & { hermodRaw?: boolean };
}

/** Shared by every copy of hermod in the process, like the patch: the scan depth while a scanning connection reads. */
const shared = globalThis as Record<symbol, { scanDepth: number } | undefined>;
shared[SCAN] ??= { scanDepth: 0 };
const state = shared[SCAN];

/**
 * Makes rhea keep the encoded bytes of every message it decodes, for {@link rawBytes}, so a
 * router can forward the exact bytes a sender sent (properties, annotations and their AMQP
 * types intact) instead of re-encoding rhea's decoded view of them. rhea's session decodes a
 * transfer by calling `message.decode(data)` through its shared message module (the object
 * rhea's default container exposes as `message`), so replacing that property reaches every
 * connection of the process. Installed once; later calls do nothing. Messages decoded before
 * still decode as usual; the wrapper only adds a non-enumerable symbol property.
 *
 * On a connection given to {@link scanInsteadOfDecode}, a message is not decoded at all: it is
 * checked by {@link scanMessage} and stands as an object with only its `to`.
 */
export function installRawDecode(): void {
  const mod = (rhea as unknown as { message: MessageModule }).message;
  const original = mod.decode;
  if (original.hermodRaw) return;
  const decode = (buffer: Buffer) => {
    let m: object;
    if (state.scanDepth > 0) {
      const scanned = scanMessage(buffer, state.scanDepth);
      // Valid, nested no deeper than the limit, but `to` is in a form only rhea reads: decode it.
      m = scanned.odd ? original(buffer) : scanned;
    } else {
      m = original(buffer);
    }
    Object.defineProperty(m, RAW, { value: buffer, enumerable: false });
    return m;
  };
  decode.hermodRaw = true;
  mod.decode = decode;
}

/**
 * The messages `conn` receives are scanned, not decoded (see {@link installRawDecode}): for a
 * router, which forwards the bytes and reads only `to`. rhea decodes inside the connection's
 * `on_transfer`, synchronously, so the mode is on exactly while that runs; a value nested deeper
 * than `maxDepth` fails the frame as a decode error would.
 */
export function scanInsteadOfDecode(conn: Connection, maxDepth: number): void {
  const c = conn as unknown as { on_transfer(frame: unknown): void };
  const original = c.on_transfer;
  c.on_transfer = function (this: unknown, frame: unknown) {
    const before = state.scanDepth;
    state.scanDepth = maxDepth;
    try {
      original.call(this, frame);
    } finally {
      state.scanDepth = before;
    }
  };
}

/** The bytes `message` was decoded from, when {@link installRawDecode} was in place. */
export function rawBytes(message: Message | object): Buffer | undefined {
  return (message as Record<symbol, Buffer | undefined>)[RAW];
}
