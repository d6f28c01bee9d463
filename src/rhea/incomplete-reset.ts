import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const FIXED = Symbol.for('hermod.rhea.incomplete-reset');

interface LinkProto {
  _reconnect(this: LinkLike): void;
  [FIXED]?: boolean;
}
interface LinkLike {
  _incomplete?: { settled: boolean };
}

/**
 * Works around a rhea 3.0.5 fault: a receiving link keeps the delivery whose transfers were
 * still coming (`_incomplete`, frames with `more=true`) across a reconnect. `_reconnect` resets
 * the link's handle, credit and delivery count, but not that; the first transfer on the new
 * connection (delivery ids start again) then failed as "frame sequence error: delivery 1 not
 * complete, got 0", which closed it, and every connection after it, for as long as the process
 * ran: a router that died in the middle of a large message left the client or server deaf for
 * good. The half-received delivery went with its connection, as a peer's unsettled ones do (its
 * sender resends it); it is dropped here, as rhea drops one whose link is detached.
 */
export function installIncompleteReset(): void {
  const { Receiver } = require('rhea/lib/link.js') as { Receiver: { prototype: object } };
  const proto = Object.getPrototypeOf(Receiver.prototype) as LinkProto;
  if (proto[FIXED]) return;
  proto[FIXED] = true;
  const reconnect = proto._reconnect;
  proto._reconnect = function (this: LinkLike) {
    if (this._incomplete) {
      this._incomplete.settled = true;
      this._incomplete = undefined;
    }
    reconnect.call(this);
  };
}
