import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import type { AmqpError, Connection } from 'rhea';

const require = createRequire(import.meta.url);

/** rhea keeps fields we need on the connection object without declaring them in its typings. */
interface ConnectionInternals {
  socket?: Socket;
  options: Record<string, unknown>;
  scheduled_reconnect?: NodeJS.Timeout;
  closed_with_non_fatal_error: boolean;
  transport_error?: unknown;
  set_reconnect(reconnect: boolean): void;
  reconnect(): void;
}
const internals = (conn: Connection) => conn as unknown as ConnectionInternals;

/**
 * The connection's current socket. rhea stores it as `connection.socket` in `init()` (on
 * connect, reconnect and accept) and never clears it; undefined before the first connect.
 */
export function socketOf(conn: Connection): Socket | undefined {
  return internals(conn).socket;
}

/** A SASL client mechanism as rhea runs it: `start` gives the initial response. */
interface ClientMechanism {
  start(callback: (err: unknown, response?: Buffer) => void): void;
}

/** rhea's SASL client mechanisms (the container's `sasl` module, untyped in its typings). */
interface ClientMechanisms {
  PLAIN?: () => ClientMechanism;
  enable_anonymous(name?: string): void;
  enable_external(): void;
}
const clientMechanisms = (conn: Connection): ClientMechanisms =>
  (conn.container as unknown as { sasl: { client_mechanisms(): ClientMechanisms } }).sasl.client_mechanisms();

/**
 * Sets the SASL login of the next connect attempt. rhea reads `connection.options` in `init()`
 * each time it makes a socket (connect and every reconnect), so a `connection_details` callback
 * may change it per host: PLAIN with a username and password; without them EXTERNAL when
 * `external` (a TLS client certificate is configured), else ANONYMOUS unless `anonymous` is
 * false (no SASL layer at all, for a peer with SASL disabled). rhea alone skips SASL without a
 * username, which a router that requires a login answers by dropping the connection with no
 * reason the client can read ("Expecting SASL layer").
 */
export function setSaslCredentials(
  conn: Connection,
  username: string | undefined,
  password: string | undefined,
  { external = false, anonymous = true }: { external?: boolean; anonymous?: boolean } = {},
): void {
  const o = internals(conn).options;
  if (username !== undefined) {
    o.username = username;
    o.password = password ?? '';
    if (password) {
      // rhea 3.0.5's PLAIN sizes its response by characters, not UTF-8 bytes: `pé` went out
      // as `p` and a NUL, so a non-ASCII name or password never logged in ("wrong username or
      // password"). RFC 4616: authzid NUL authcid NUL passwd, each UTF-8.
      const mechanisms = clientMechanisms(conn);
      const response = Buffer.concat([Buffer.from([0]), Buffer.from(username, 'utf8'), Buffer.from([0]), Buffer.from(password, 'utf8')]);
      mechanisms.PLAIN = () => ({ start: (callback) => callback(undefined, response) });
      o.sasl_mechanisms = mechanisms;
    } else {
      // No password: rhea's own choice (ANONYMOUS with the name as its trace).
      delete o.sasl_mechanisms;
    }
  } else {
    delete o.username;
    delete o.password;
    if (!external && !anonymous) {
      delete o.sasl_mechanisms;
      return;
    }
    const mechanisms = clientMechanisms(conn);
    // A certificate is the login: EXTERNAL alone, or a peer that lists ANONYMOUS first (hermod's
    // router, Dispatch) would take the client as anonymous.
    if (external) mechanisms.enable_external();
    else mechanisms.enable_anonymous();
    o.sasl_mechanisms = mechanisms;
  }
}

/**
 * Makes rhea reconnect after the peer's close frame that carried no error, as it does after one
 * with a non-fatal error. rhea marks that case only in `_handle_error` (a close with an error);
 * after a plain close both ends count as closed and its `_disconnected()` neither reconnects nor
 * reports `disconnected`. Call it from `connection_close`, before rhea answers the close on the
 * next tick: the flag is read when the socket ends.
 */
export function reconnectAfterPlainClose(conn: Connection): void {
  const c = internals(conn);
  if (c.options.reconnect) c.closed_with_non_fatal_error = true;
}

/**
 * Makes rhea reconnect after a SASL exchange the peer ended with a system error (outcome `sys`
 * or `sys-temp`: an overloaded or unready authenticator, not a refused login). rhea records every
 * SASL failure as the connection's transport error, and `_disconnected()` schedules no reconnect
 * while one is set: the client waited for ever. Call it from `connection_error`, which rhea
 * emits before it ends the socket.
 */
export function reconnectAfterSaslFailure(conn: Connection): void {
  internals(conn).transport_error = undefined;
}

/**
 * Turns rhea's automatic reconnect off and cancels one already scheduled. `set_reconnect(false)`
 * stops future schedules; a reconnect rhea already queued (`scheduled_reconnect`, a plain
 * setTimeout set in `_disconnected()`) would still fire, so it is cleared too.
 */
export function stopReconnect(conn: Connection): void {
  const c = internals(conn);
  c.set_reconnect(false);
  if (c.scheduled_reconnect) clearTimeout(c.scheduled_reconnect);
  // Undefined as rhea leaves it when none is due: rescheduleReconnect() then has nothing to move.
  c.scheduled_reconnect = undefined;
}

/**
 * Moves a reconnect rhea has scheduled to `delayMs` from now. False when none is scheduled
 * (connected, connecting, or reconnecting turned off by {@link stopReconnect}).
 */
export function rescheduleReconnect(conn: Connection, delayMs: number): boolean {
  const c = internals(conn);
  if (!c.scheduled_reconnect || !c.options.reconnect) return false;
  clearTimeout(c.scheduled_reconnect);
  c.scheduled_reconnect = setTimeout(() => c.reconnect(), delayMs);
  return true;
}

/**
 * The error of the peer's close frame as `condition: description`, or undefined. rhea exposes
 * it as the getter `connection.error` (`remote.close.error`), reset on each reconnect.
 */
export function connectionError(conn: Connection): string | undefined {
  const err = conn.error as AmqpError | undefined;
  return err ? `${err.condition}: ${err.description ?? ''}` : undefined;
}

/** Connections rhea closed for silence since it was last asked (see {@link closedIdle}). */
const idled = new WeakSet<object>();

/**
 * Notes each connection rhea closes for silence: its `idle()` sets a close error for that and
 * clears it once the close frame is written, so by the disconnect nothing said why.
 */
export function installIdleNotes(): void {
  const Connection = require('rhea/lib/connection.js') as { prototype: { idle(this: object): void; [IDLE_NOTED]?: boolean } };
  const proto = Connection.prototype;
  if (proto[IDLE_NOTED]) return;
  proto[IDLE_NOTED] = true;
  const idle = proto.idle;
  proto.idle = function (this: object) {
    idled.add(this);
    idle.call(this);
  };
}
const IDLE_NOTED = Symbol.for('hermod.rhea.idle-notes');

/**
 * Whether rhea closed `conn` for silence (nothing from the peer within twice the idle timeout
 * we advertised) since the last call; asking forgets it, for the next connection of `conn`.
 */
export function closedIdle(conn: Connection): boolean {
  const was = idled.has(conn);
  idled.delete(conn);
  return was;
}

/**
 * Clears the timers rhea keeps per connection (heartbeats, idle abort, reconnect). rhea clears
 * them only when it sees the socket end; a socket we destroy ourselves emits just `close`, and
 * the leftover idle-timeout timers would keep the process alive for minutes.
 */
export function clearRheaTimers(conn: Connection): void {
  const c = conn as unknown as Record<string, NodeJS.Timeout | undefined>;
  for (const k of ['heartbeat_in', 'heartbeat_out', 'abort_idle', 'scheduled_reconnect']) {
    const t = c[k];
    if (t) {
      clearTimeout(t);
      c[k] = undefined;
    }
  }
}

/**
 * How rhea 3 (transport.js `read`) reports the first protocol header of a peer: which header
 * its SASL layer (or the absence of one) expected and did not get. `sasl`: a server requiring
 * SASL got the plain AMQP header; `plain`: a client without SASL got the SASL header (the server
 * requires a login). Undefined for any other error.
 */
export function headerMismatch(err: Error): 'sasl' | 'plain' | undefined {
  if (err.name !== 'ProtocolError') return undefined;
  if (err.message === 'Expecting SASL layer') return 'sasl';
  if (err.message === 'SASL layer not enabled') return 'plain';
  return undefined;
}
