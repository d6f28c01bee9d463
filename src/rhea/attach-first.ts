import { createRequire } from 'node:module';

import { predecessors } from './link-names.js';

const require = createRequire(import.meta.url);
const FIXED = Symbol.for('hermod.rhea.attach-first');

interface EndpointStateLike {
  need_open(): boolean;
  open_requests: number;
  close_requests: number;
}
interface LinkLike {
  state: EndpointStateLike;
  local: { attach: unknown };
  is_sender(): boolean;
  is_closed(): boolean;
  dispatch(event: string, ctx: unknown): void;
  _context(): unknown;
}
interface SessionLike {
  links: Record<string, LinkLike>;
  state: EndpointStateLike;
  local: { begin: unknown };
  output(frame: unknown): void;
}
interface SessionProto {
  _process(this: SessionLike): void;
  [FIXED]?: boolean;
}

/**
 * Works around rhea 3.0.5 writing a session's queued transfers before the attaches of links
 * opened since its last write pass (`Session._process`: outgoing deliveries, then each link's
 * attach). A message sent on a link the moment it opens then goes out on a handle the peer does
 * not know yet, and the peer fails the connection with "Invalid handle". The router did this
 * whenever a receiver's attach (with its credit) and a message for its address from another
 * connection were read in one turn of the event loop (hermod's write pass runs once per turn):
 * `hermod status` failed so about one run in ten. Here each pass writes the session's begin and
 * every pending attach first; rhea counts them (`need_open`), so none is written twice.
 * Installed once per process; later calls do nothing.
 */
export function installAttachFirst(): void {
  const Session = require('rhea/lib/session.js') as { prototype: SessionProto };
  const proto = Session.prototype;
  if (proto[FIXED]) return;
  const original = proto._process;
  proto._process = function () {
    if (this.state.need_open()) this.output(this.local.begin);
    let held: LinkLike[] | undefined;
    for (const k in this.links) {
      const link = this.links[k]!;
      // Only a plain pending open: a link also closed (or closed and reopened) since the last
      // pass keeps rhea's order, attach, detach, attach.
      const s = link.state;
      // A link reopened under the name of one whose detach is not written yet: the peer takes
      // an attach under the name of a link still open to it for a protocol error.
      const pred = predecessors.get(link);
      if (pred) {
        // Its detach first, in rhea's order (the old link comes first in the table and its
        // queued transfers go before its detach). The new link sends nothing meanwhile
        // (attachPending), since rhea writes transfers before attaches.
        if (pred.state.close_requests > 0) {
          if (held) held.push(link);
          else held = [link];
          continue;
        }
        // Written: the entry goes (it kept the whole chain of replaced links alive). A link held
        // back until now (its predecessor's detach went out in an earlier pass) is released
        // below too: its credit's sendable event came while it was held.
        if (s.open_requests > 0) {
          if (held) held.push(link);
          else held = [link];
        }
        predecessors.delete(link);
      }
      if (s.open_requests === 1 && s.close_requests === 0 && s.need_open()) this.output(link.local.attach);
    }
    original.call(this);
    // Written now: a sender held back by attachPending may send, and hears so as it hears of
    // credit (a turn later, outside rhea's write pass).
    for (const link of held ?? []) {
      if (link.state.open_requests > 0 || !link.is_sender()) continue;
      setImmediate(() => {
        if (!link.is_closed()) link.dispatch('sendable', link._context());
      });
    }
  };
  proto[FIXED] = true;
}

/**
 * Whether `link` must not send yet: it replaced a link of its name whose detach is still to be
 * written, so its own attach is not written either, and a transfer on it would go out first
 * ("Invalid handle" at the peer). It gets a `sendable` event once its attach is written.
 */
export function attachPending(link: object): boolean {
  return predecessors.has(link) && (link as LinkLike).state.open_requests > 0;
}
