import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const FIXED = Symbol.for('hermod.rhea.sasl-pipelining');

/** What rhea's connection keeps of input its transport could not read yet. */
interface PendingInput {
  frame_size?: number;
  chunks?: Buffer[] | null;
  received_bytes?: number;
  previous_input?: Buffer | null;
  input(buffer: Buffer): void;
}
interface SaslServerProto {
  do_step(this: { transport: { read_complete: boolean }; connection: PendingInput }, challenge: unknown): void;
  [FIXED]?: boolean;
}

/**
 * A client may send its AMQP header and `open` right behind its sasl-init (AMQP 1.0 §5.3.2
 * allows it; qpid-proton can pipeline so). rhea's server decides the SASL outcome in a promise,
 * so while it reads the rest of that chunk it is still in SASL: it takes "AMQP" for the size of a
 * frame of 1.1 GB and waits for that many bytes. The client waits for the router's `open`, and
 * the login ended at the handshake timeout. Here, once the outcome lets the connection into AMQP,
 * what waited is read again by the AMQP layer. Installed once per process.
 */
export function installSaslPipelining(): void {
  const proto = (require('rhea/lib/sasl.js') as { Server: { prototype: SaslServerProto } }).Server.prototype;
  if (proto[FIXED]) return;
  const original = proto.do_step;
  proto.do_step = function (challenge) {
    original.call(this, challenge);
    if (!this.transport.read_complete) return;
    const c = this.connection;
    let pending: Buffer | undefined;
    if (c.frame_size && c.chunks) {
      pending = Buffer.concat(c.chunks, c.received_bytes);
      c.chunks = null;
      c.frame_size = undefined;
    } else if (c.previous_input) {
      pending = c.previous_input;
      c.previous_input = null;
    }
    if (pending && pending.length > 0) c.input(pending);
  };
  proto[FIXED] = true;
}
