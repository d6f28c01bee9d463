import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const FIXED = Symbol.for('hermod.rhea.link-names');

interface LinkLike {
  name: string;
  is_receiver(): boolean;
  on_attach(frame: unknown): void;
  remote: { attach?: unknown; handle?: number };
  local: { handle: number };
}
interface SessionLike {
  links: Record<string, LinkLike>;
  remote: { handles: Record<number, LinkLike> };
  local: { handles: Record<number, LinkLike | undefined> };
  create_sender(name: string): LinkLike;
  create_receiver(name: string): LinkLike;
}
interface SessionProto {
  create_link(
    this: SessionLike,
    name: string,
    ctor: new (s: SessionLike, name: string, handle: number, opts: unknown) => LinkLike,
    opts: unknown,
  ): LinkLike;
  on_attach(this: SessionLike, frame: { performative: { name: string; role: boolean; handle: number } }): void;
  remove_link(this: SessionLike, link: LinkLike): void;
  [FIXED]?: boolean;
}

const key = (name: string, receiver: boolean) => `${receiver ? 'r' : 's'}:${name}`;

/**
 * Works around two rhea 3.0.5 faults in a session's link table. First, it keeps links by name
 * alone. In AMQP 1.0 a link is named per direction, so a peer may attach a sender and a receiver
 * under one name (qpid-proton's BlockingConnection names both `<container>-<address>`); rhea then
 * finds the first link for the second attach and fails the connection with "Attach already
 * received". This keys the table by role and name: our role is the opposite of the peer's
 * (`role` true means the peer receives). Second, a link never learnt its remote handle, so
 * removing it left its entry behind; and removing a closed link could drop a newer link that
 * took over its handle or name. Installed once per process; later calls do nothing.
 */
export function installLinkNameFix(): void {
  const Session = require('rhea/lib/session.js') as { prototype: SessionProto };
  const proto = Session.prototype;
  if (proto[FIXED]) return;
  proto.create_link = function (name, ctor, opts) {
    let i = 0;
    while (this.local.handles[i]) i++;
    const l = new ctor(this, name, i, opts);
    this.links[key(name, l.is_receiver())] = l;
    this.local.handles[i] = l;
    return l;
  };
  proto.on_attach = function (frame) {
    const { name, role, handle } = frame.performative;
    const ours = !role;
    let link = this.links[key(name, ours)];
    if (!link) link = role ? this.create_sender(name) : this.create_receiver(name);
    this.remote.handles[handle] = link;
    // Before on_attach, whose open events may remove the link at once; again after, as rhea
    // overwrites it there (with undefined) when it is 0.
    link.remote.handle = handle;
    link.on_attach(frame);
    link.remote.attach = frame.performative;
    // rhea reads the handle from `frame.handle` (undefined; it is on the performative), so a
    // link never knew its remote handle and its removal left its entry behind: a peer
    // attaching and detaching under ever new handles grew the table (and kept every dead
    // link) without bound.
    link.remote.handle = handle;
  };
  // rhea removes a closed link two ticks after the peer's detach, by handle and name. By then a
  // frame read in the same chunk may have attached a new link under the same remote handle (the
  // peer may reuse it as soon as both detaches have crossed) or the same name, and an
  // unconditional delete drops the new link: its next transfer or flow fails the connection
  // with "Invalid handle". Only entries that still point at this link go.
  proto.remove_link = function (link) {
    const remote = link.remote.handle;
    if (remote !== undefined && this.remote.handles[remote] === link) delete this.remote.handles[remote];
    if (this.local.handles[link.local.handle] === link) delete this.local.handles[link.local.handle];
    const k = key(link.name, link.is_receiver());
    if (this.links[k] === link) delete this.links[k];
  };
  proto[FIXED] = true;
}
