import type { Message } from 'rhea';
import rhea from 'rhea';

// Symbol.for: two copies of hermod in one process share the patch (see the hermodRaw flag).
const RAW = Symbol.for('hermod.rhea.raw');

interface MessageModule {
  decode: ((buffer: Buffer) => object) & { hermodRaw?: boolean };
}

/**
 * Makes rhea keep the encoded bytes of every message it decodes, for {@link rawBytes}, so a
 * router can forward the exact bytes a sender sent (properties, annotations and their AMQP
 * types intact) instead of re-encoding rhea's decoded view of them. rhea's session decodes a
 * transfer by calling `message.decode(data)` through its shared message module (the object
 * rhea's default container exposes as `message`), so replacing that property reaches every
 * connection of the process. Installed once; later calls do nothing. Messages decoded before
 * still decode as usual; the wrapper only adds a non-enumerable symbol property.
 */
export function installRawDecode(): void {
  const mod = (rhea as unknown as { message: MessageModule }).message;
  const original = mod.decode;
  if (original.hermodRaw) return;
  const decode = (buffer: Buffer) => {
    const m = original(buffer);
    Object.defineProperty(m, RAW, { value: buffer, enumerable: false });
    return m;
  };
  decode.hermodRaw = true;
  mod.decode = decode;
}

/** The bytes `message` was decoded from, when {@link installRawDecode} was in place. */
export function rawBytes(message: Message | object): Buffer | undefined {
  return (message as Record<symbol, Buffer | undefined>)[RAW];
}
