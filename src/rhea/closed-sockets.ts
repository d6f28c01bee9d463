import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const FIXED = Symbol.for('hermod.rhea.no-output-after-close');

interface ConnectionProto {
  output(this: { socket?: { destroyed?: boolean; writable?: boolean } }): void;
  [FIXED]?: boolean;
}

/**
 * Makes rhea write nothing, and arm no timer, once its socket can no longer be written. rhea
 * 3.0.5 marks a connection's socket not ready only when the socket ends while the connection is
 * still open: after a clean close (both close frames exchanged, then the socket ends) it stays
 * "ready", and any later pass that produces a frame (a message forwarded to a link of a client
 * that just left, a disposition, a heartbeat) runs `output`, which writes to the dead socket and
 * arms a new idle timer (`heartbeat_in`, twice the idle timeout) that nothing clears. A router
 * kept that 32 s timer alive after its stop, and the test process with it.
 */
export function installNoOutputAfterClose(): void {
  const Connection = require('rhea/lib/connection.js') as { prototype: ConnectionProto };
  const proto = Connection.prototype;
  if (proto[FIXED]) return;
  const original = proto.output;
  proto.output = function () {
    const socket = this.socket;
    if (socket && (socket.destroyed || socket.writable === false)) return;
    original.call(this);
  };
  proto[FIXED] = true;
}
