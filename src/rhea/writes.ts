import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const FIXED = Symbol.for('hermod.rhea.corked-writes');

interface ConnectionProto {
  _process(this: { socket?: { cork?(): void; uncork?(): void; writable?: boolean } }): void;
  [FIXED]?: boolean;
}

/**
 * Makes rhea write the frames of one processing pass in one system call. rhea 3.0.5 writes each
 * frame to the socket as it is produced (`_write_frame` → `output` → `socket.write`), so 20
 * calls sent in one turn of the event loop, or a router forwarding a burst, cost 20 writes and
 * 20 TCP segments. Corking the socket for the pass (`Connection._process`, which rhea runs once
 * per tick for everything queued) lets Node hand them to the kernel in one `writev`.
 * Installed once per process.
 */
export function installCorkedWrites(): void {
  const Connection = require('rhea/lib/connection.js') as { prototype: ConnectionProto };
  const proto = Connection.prototype;
  if (proto[FIXED]) return;
  const original = proto._process;
  proto._process = function () {
    const socket = this.socket;
    if (typeof socket?.cork !== 'function') return original.call(this);
    socket.cork();
    try {
      original.call(this);
    } finally {
      socket.uncork?.();
    }
  };
  proto[FIXED] = true;
}
