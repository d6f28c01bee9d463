import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const FIXED = Symbol.for('hermod.rhea.link-names');

interface LinkLike {
  name: string;
  is_receiver(): boolean;
  on_attach(frame: unknown): void;
  remote: { attach?: unknown; detach?: unknown; handle?: number };
  local: { handle: number; attach?: unknown; detach?: unknown };
  state: {
    need_open(): boolean;
    need_close(): boolean;
    initialised: boolean;
    local_open: boolean;
    remote_open: boolean;
    close_requests: number;
    open_requests: number;
    remote_opened(): boolean;
  };
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
  _process(this: SessionLike): void;
  [FIXED]?: boolean;
}

/** Table keys of links replaced by a newer link of the same name while still closing. */
const retiredKeys = new WeakMap<LinkLike, string>();
/** Per session, such replaced links by their name's key, oldest first. */
const retired = new WeakMap<object, Map<string, LinkLike[]>>();
/** A link we attached whose answer has not come yet. */
const awaiting = (l: LinkLike) => l.state.initialised && l.remote.attach === undefined && l.remote.detach === undefined;
/** A link we attached and detached before the peer answered the attach. */
const withdrawn = (l: LinkLike) => l.state.initialised && !l.state.local_open && l.remote.attach === undefined;
/**
 * A new link's closing predecessor of the same name, whose detach must be written before the
 * new link's attach (see installAttachFirst).
 */
export const predecessors = new WeakMap<object, { state: { close_requests: number } }>();

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
    const k = key(name, l.is_receiver());
    const old = this.links[k];
    if (old) {
      // A link closed and opened again under its name at once (before the peer's detach came
      // back): rhea overwrote the old entry, and since it writes frames by walking this table
      // the old link's detach was never sent, so the peer saw a second attach for a link still
      // open to it and failed the connection. The old link stays in the table, under a key of
      // its own and ahead of the new one, so its detach goes first, until it is removed.
      delete this.links[k];
      const rk = `${k}#${old.local.handle}`;
      this.links[rk] = old;
      retiredKeys.set(old, rk);
      predecessors.set(l, old);
      let byKey = retired.get(this);
      if (!byKey) {
        byKey = new Map();
        retired.set(this, byKey);
      }
      const list = byKey.get(k);
      if (list) list.push(old);
      else byKey.set(k, [old]);
    }
    this.links[k] = l;
    this.local.handles[i] = l;
    return l;
  };
  proto.on_attach = function (frame) {
    const { name, role, handle } = frame.performative;
    const k = key(name, !role);
    // The peer answers our attaches in order: the oldest link of this name still waiting for
    // its answer gets it, even one retired since (closed and replaced under its name).
    let link = retired.get(this)?.get(k)?.find(awaiting) ?? this.links[k];
    // A link the peer has detached is gone for the peer, even while our detach is still on its
    // way (rhea sends it a tick later): an attach under its name in the same read is a new link.
    // rhea took it for the old one and failed the connection with "Attach already received".
    // qpid-proton likewise skips links detached on both sides when it looks up an attach's name.
    if (!link || (link.remote.detach !== undefined && !link.state.remote_open)) {
      link = role ? this.create_sender(name) : this.create_receiver(name);
    }
    this.remote.handles[handle] = link;
    // Before on_attach, whose open events may remove the link at once; again after, as rhea
    // overwrites it there (with undefined) when it is 0.
    link.remote.handle = handle;
    if (withdrawn(link)) {
      // The answer to an attach we have since detached: rhea's on_attach opens the link again
      // and writes a second attach, the peer answers it with an attach and (to our detach) a
      // detach, and the two sides ping-pong attaches for a link opened and closed in one tick,
      // as fast as the loopback carries them. Only recorded: our detach is on its way.
      link.state.remote_opened();
      link.remote.attach = frame.performative;
      return;
    }
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
  const removeNow = (session: SessionLike, link: LinkLike) => {
    const remote = link.remote.handle;
    if (remote !== undefined && session.remote.handles[remote] === link) delete session.remote.handles[remote];
    if (session.local.handles[link.local.handle] === link) delete session.local.handles[link.local.handle];
    const rk = retiredKeys.get(link);
    const k = rk ?? key(link.name, link.is_receiver());
    if (session.links[k] === link) delete session.links[k];
    if (rk !== undefined) {
      const byKey = retired.get(session);
      const base = key(link.name, link.is_receiver());
      const list = byKey?.get(base)?.filter((l) => l !== link);
      if (list?.length) byKey!.set(base, list);
      else byKey?.delete(base);
    }
  };
  // rhea closes a link the peer detached one tick after the detach and removes it the tick
  // after that, counting on its write pass (queued by the close on process.nextTick) to have
  // written our detach in between. With batchWrites the pass runs at setImmediate, after the
  // removal, and a pass writes only the links still in the table: the router never answered a
  // peer's detach, so the peer kept the link (qpid-proton's BlockingReceiver.close() waits for
  // that answer). A link with frames still to write is removed after the pass that writes them.
  const pending = new WeakMap<SessionLike, Set<LinkLike>>();
  proto.remove_link = function (link) {
    const st = link.state;
    if (st.close_requests > 0 || st.open_requests > 0) {
      let set = pending.get(this);
      if (!set) {
        set = new Set();
        pending.set(this, set);
      }
      set.add(link);
      return;
    }
    removeNow(this, link);
  };
  const pass = proto._process;
  proto._process = function () {
    pass.call(this);
    const set = pending.get(this);
    if (!set) return;
    for (const link of set) {
      const st = link.state;
      if (st.close_requests > 0 || st.open_requests > 0) continue;
      set.delete(link);
      removeNow(this, link);
    }
  };
  proto[FIXED] = true;
}
