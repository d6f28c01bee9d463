import type { Socket } from 'node:net';
import type { AmqpError, Connection, Container, Delivery, Receiver } from 'rhea';
import { settleLocally } from './delivery.js';

/** How one accepted connection authenticates. */
export interface SaslPolicy {
  /** Offer ANONYMOUS (and let a client skip SASL altogether). */
  anonymous: boolean;
  /** Offer PLAIN, checking each username and password with this. */
  plain?: (username: string, password: string) => Promise<boolean>;
  /** Offer EXTERNAL (the caller saw a verified TLS client certificate). */
  external?: boolean;
  /** Called once SASL succeeded, with the mechanism and the PLAIN username. */
  succeeded?: (mechanism: string, username: string | undefined) => void;
}

interface ServerMechanism {
  outcome?: boolean;
  username?: string;
  start(response: Buffer | undefined, hostname?: string): unknown;
  step?(response: Buffer): unknown;
}

/**
 * Accepts `socket` as a server connection of `container`, the way rhea's own `listen()` does
 * (`new Connection(options, container).accept(socket)`), but with SASL mechanisms of this
 * connection only. rhea reads `container.sasl_server_mechanisms` once, in `init()` during
 * `accept()`, and keeps the object in its SASL layer, so swapping it around the call gives each
 * connection mechanisms that know their peer. With ANONYMOUS offered rhea also accepts a client
 * that skips SASL; without it, it requires SASL. An empty list would make rhea fall back to
 * ANONYMOUS, so the caller offers at least one mechanism.
 */
export function acceptSocket(container: Container, options: object, socket: Socket, sasl: SaslPolicy): Connection {
  const mechs: Record<string, () => ServerMechanism> = {};
  const win = (name: string, m: ServerMechanism, username?: string) => {
    m.outcome = true;
    m.username = username;
    sasl.succeeded?.(name, username);
  };
  if (sasl.anonymous) {
    // The client's trace string is not an identity: the user is "anonymous" whatever it says.
    mechs.ANONYMOUS = () => ({
      start(this: ServerMechanism) {
        win('ANONYMOUS', this);
      },
    });
  }
  const check = sasl.plain;
  if (check) {
    mechs.PLAIN = () => ({
      async start(this: ServerMechanism, response: Buffer | undefined) {
        // PLAIN: [authzid] NUL authcid NUL passwd
        const parts = (response ?? Buffer.alloc(0)).toString('utf8').split('\0');
        if (parts.length !== 3) {
          this.outcome = false;
          return;
        }
        if (await check(parts[1]!, parts[2]!)) win('PLAIN', this, parts[1]);
        else this.outcome = false;
      },
    });
  }
  if (sasl.external) {
    // Offered only when the caller saw a verified client certificate; the identity is the
    // certificate's, so rhea's own EXTERNAL (which names no user) is not used.
    mechs.EXTERNAL = () => ({
      start(this: ServerMechanism) {
        win('EXTERNAL', this);
      },
    });
  }
  const conn = container.create_connection(options as never);
  const c = container as unknown as { sasl_server_mechanisms: object };
  const saved = c.sasl_server_mechanisms;
  c.sasl_server_mechanisms = mechs;
  try {
    (conn as unknown as { accept(s: Socket): void }).accept(socket);
  } finally {
    c.sasl_server_mechanisms = saved;
  }
  return conn;
}

/**
 * Closes the connection with `error` and writes the close frame now rather than on rhea's next
 * tick: after an error while reading input rhea ends the socket as soon as its error event
 * returns, and a close frame written later would be lost. `_process()` is rhea's own flush (it
 * writes a pending `open` first, as the protocol wants before a `close`).
 */
export function closeNow(conn: Connection, error: AmqpError): void {
  conn.close(error);
  try {
    (conn as unknown as { _process(): void })._process();
  } catch {
    // the socket is already gone
  }
}

/** Deliveries cut off by {@link limitIncomingMessages}, with their bytes counted so far. */
const DISCARDED = new WeakMap<object, number>();

/** Deliveries their sender aborted (see {@link limitIncomingMessages}). */
const ABORTED = new WeakSet<object>();

/** Whether `delivery` was cut off by {@link limitIncomingMessages} or aborted by its sender (its message is empty). */
export function discarded(delivery: Delivery): boolean {
  return DISCARDED.has(delivery) || ABORTED.has(delivery);
}

/** The size a delivery cut off by {@link limitIncomingMessages} reached (all of it, once its last frame came). */
export function discardedBytes(delivery: Delivery): number | undefined {
  return DISCARDED.get(delivery);
}

interface LinkState {
  bytes: number;
  /** Bytes of this delivery counted under assembly (see {@link AssemblyLimits}). */
  counted: number;
  dropping: boolean;
  /** The delivery being dropped, whose size is kept up to date. */
  delivery?: Delivery;
}

interface TransferFrame {
  channel: number;
  performative: { handle: number; more?: boolean; aborted?: boolean };
  payload?: Buffer;
}

interface ConnectionInternals {
  on_transfer(frame: TransferFrame): void;
  on_detach(frame: { channel: number; performative: { handle: number } }): void;
  on_end(frame: { channel: number }): void;
  remote_channel_map: Record<number, { remote: { handles: Record<number, Receiver | undefined> } } | undefined>;
  _register(): void;
}

/**
 * An aborted transfer (AMQP 1.0 §2.7.5): the delivery's frames so far and this one's payload
 * are discarded and the delivery is implicitly settled. rhea ignores the flag and dispatched the
 * frames gathered so far as a complete message, which the router forwarded. rhea still handles
 * the frame (its delivery and transfer ids and the link's credit move on as for any last frame),
 * now with no payload; the message event it dispatches is for an empty, {@link discarded}
 * delivery, settled here without a disposition.
 */
function abort(
  c: ConnectionInternals,
  frame: TransferFrame,
  link: Receiver,
  incomplete: (Delivery & { frames?: Buffer[] }) | undefined,
  original: (frame: TransferFrame) => void,
): void {
  // An empty message, as a delivery cut off for its size ends (a first frame needs a payload).
  frame.payload = incomplete ? undefined : Buffer.alloc(0);
  frame.performative.more = false;
  if (incomplete) incomplete.frames = [];
  const r = link as unknown as { dispatch(name: string, ctx: { delivery?: Delivery }): unknown };
  const own = Object.getOwnPropertyDescriptor(r, 'dispatch');
  const dispatch = r.dispatch;
  // The delivery exists only inside rhea's handling of this frame: it is marked as rhea hands it on.
  r.dispatch = function (this: unknown, name, ctx) {
    const d = name === 'message' ? ctx.delivery : undefined;
    if (!d) return dispatch.call(this, name, ctx);
    ABORTED.add(d);
    (d as unknown as { remote_settled: boolean }).remote_settled = true;
    const out = dispatch.call(this, name, ctx);
    // Settled without a disposition (the sender settled it by aborting): its buffer slot is freed.
    if (!(d as unknown as { settled: boolean }).settled) settleLocally(d);
    return out;
  };
  try {
    original.call(c, frame);
  } finally {
    if (own) Object.defineProperty(r, 'dispatch', own);
    else delete (r as { dispatch?: unknown }).dispatch;
  }
}

/**
 * Counts each incoming message's bytes as its transfer frames arrive and stops assembling one
 * past `maxBytes`. rhea gathers every frame of a delivery (`Incoming.on_transfer` pushes
 * `frame.payload` onto `delivery.frames`, the delivery under assembly being
 * `receiver._incomplete`) and decodes only at the last one, so a 300 MiB message would be held
 * whole. Past the limit `onOversize` runs once (while the sender is still sending: it can settle
 * the delivery at once), the frames gathered so far are dropped, and later frames of that
 * delivery pass through rhea with no payload, so its session and link accounting stay right;
 * the final frame yields a message event for an empty, {@link discarded} delivery. rhea writes a
 * session flow only when the connection is processed, so each dropped frame asks for that,
 * keeping the sender's window open to the end of the message. With `assembly`, the bytes of
 * messages still arriving are also bounded per connection and over all connections. Returns the
 * function that gives back what this connection still counts (call it when it is gone).
 */
export function limitIncomingMessages(
  conn: Connection,
  maxBytes: number,
  onOversize: (delivery: Delivery, bytes: number) => void,
  assembly?: AssemblyLimits,
): () => void {
  const c = conn as unknown as ConnectionInternals;
  const original = c.on_transfer;
  const states = new WeakMap<Receiver, LinkState>();
  /** Bytes of this connection's deliveries still arriving. */
  let mine = 0;
  let over = false;
  /** Given back at once (this connection is being closed): nothing more is counted. */
  let released = false;
  const uncount = (s: LinkState) => {
    if (!released) {
      mine -= s.counted;
      if (assembly) assembly.shared.bytes -= s.counted;
    }
    s.counted = 0;
  };
  const release = () => {
    if (released) return;
    released = true;
    if (assembly) {
      assembly.shared.bytes -= mine;
      assembly.shared.holders?.delete(holder);
    }
    mine = 0;
  };
  const holder: AssemblyHolder = {
    get bytes() {
      return mine;
    },
    evict(shared: number) {
      if (over) return;
      over = true;
      const held = mine;
      release();
      assembly?.onOver(held, shared);
    },
  };
  assembly?.shared.holders?.add(holder);
  c.on_transfer = function (this: ConnectionInternals, frame: TransferFrame) {
    const link = this.remote_channel_map[frame.channel]?.remote.handles[frame.performative.handle];
    if (!link) return original.call(this, frame);
    const incomplete = (link as unknown as { _incomplete?: Delivery & { frames?: Buffer[] } })._incomplete;
    let s = states.get(link);
    if (!s || !incomplete) {
      if (s) uncount(s);
      s = { bytes: 0, counted: 0, dropping: false };
      states.set(link, s);
    }
    if (frame.performative.aborted === true) {
      uncount(s);
      return abort(this, frame, link, incomplete, original);
    }
    const size = frame.payload?.length ?? 0;
    s.bytes += size;
    if (s.dropping) {
      frame.payload = undefined;
      // Before rhea handles the frame: the last one dispatches the message event at once.
      if (s.delivery) DISCARDED.set(s.delivery, s.bytes);
    }
    original.call(this, frame);
    const current = (link as unknown as { _incomplete?: Delivery & { frames?: Buffer[] } })._incomplete;
    if (s.dropping) {
      uncount(s);
      this._register();
    } else if (current && s.bytes > maxBytes) {
      s.dropping = true;
      s.delivery = current;
      current.frames = [];
      uncount(s);
      DISCARDED.set(current, s.bytes);
      onOversize(current, s.bytes);
    } else if (current && !released) {
      s.counted += size;
      mine += size;
      if (assembly) {
        const shared = assembly.shared;
        shared.bytes += size;
        if (!over && mine > assembly.perConnection) {
          over = true;
          assembly.onOver(mine, shared.bytes);
        } else if (shared.bytes > shared.limit) {
          // Over the shared bound, the connection holding the most goes (its bytes given back at
          // once), not whichever crossed it: peers hoarding half-sent messages closed the honest
          // sender whose frame came last. Without a registry, this one.
          let most = holder;
          for (const h of shared.holders ?? []) if (h.bytes > most.bytes) most = h;
          most.evict(shared.bytes);
        }
      }
    } else {
      uncount(s);
    }
  };
  // A link detached or a session ended with a message half sent: that message is gone, and so
  // is its count (it stayed charged to the connection, and to the shared bound, until a later
  // transfer on the dead link or the connection's close: 67 links detached so closed a
  // connection for holding 67 MB nothing was sending).
  const forget = (link: Receiver | undefined) => {
    const s = link ? states.get(link) : undefined;
    if (s) uncount(s);
  };
  const onDetach = c.on_detach;
  c.on_detach = function (this: ConnectionInternals, frame) {
    forget(this.remote_channel_map[frame.channel]?.remote.handles[frame.performative?.handle]);
    return onDetach.call(this, frame);
  };
  const onEnd = c.on_end;
  c.on_end = function (this: ConnectionInternals, frame) {
    for (const link of Object.values(this.remote_channel_map[frame.channel]?.remote.handles ?? {})) forget(link);
    return onEnd.call(this, frame);
  };
  return release;
}

/** One connection's bytes under assembly, as {@link AssemblyLimits.shared}'s `holders` list it. */
export interface AssemblyHolder {
  readonly bytes: number;
  /** Gives its bytes back and has its connection closed (`onOver`), once. */
  evict(shared: number): void;
}

/**
 * Bounds on the bytes of messages still arriving, frame by frame: each delivery is bounded by
 * the message size limit, but a peer may have one under way on every link it attaches (a
 * thousand links of 16 MiB each held about 1 GiB in a router, counted nowhere).
 */
export interface AssemblyLimits {
  /** Shared by every connection of a server: the bytes under assembly over all of them, and their bound. */
  shared: { bytes: number; limit: number; holders?: Set<AssemblyHolder> };
  /** The bound for one connection. */
  perConnection: number;
  /**
   * Called once, when this connection passes its bound, or when the shared one is passed and this
   * connection holds the most of all in `shared.holders`: close it. Its bytes no longer count.
   */
  onOver(mine: number, shared: number): void;
}
