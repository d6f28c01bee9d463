import net from 'node:net';
import os from 'node:os';
import * as tls from 'node:tls';
import type { Connection, Container, EventContext, Receiver, Sender } from 'rhea';
import rhea from 'rhea';
import type { HermodConfig } from '../../config/index.js';
import type { TransportHost, TransportUrl } from '../../config/transport-url.js';
import { backoffDelay } from '../../core/backoff.js';
import { AccessRefused, TransportError } from '../../core/errors.js';
import { uuidHex } from '../../core/ids.js';
import {
  clearRheaTimers,
  closedIdle,
  connectionError,
  headerMismatch,
  limitIncomingMessages,
  type OutcomeKind,
  reconnectAfterPlainClose,
  reconnectAfterSaslFailure,
  rescheduleReconnect,
  SocketGuard,
  setSaslCredentials,
  socketOf,
  stopReconnect,
} from '../../rhea/index.js';
import { ConnectGate } from '../connect-gate.js';
import type { ConnectionState } from '../driver.js';
import { HostRotation, hostLabel } from '../hosts.js';
import { isPlainTextPeer, probeProtocol, tlsMismatch, tlsPortSpeaks, wrongProtocol } from '../protocol-probe.js';
import { tlsOptions } from '../tls.js';

/**
 * The most bytes of one incoming message rhea assembles: twice `maxMessageSize` (a message a
 * little over it is still decoded, so that its call is answered MessageTooLarge).
 */
export function incomingLimit(maxMessageSize: number): number {
  return maxMessageSize * 2;
}

/** The largest frame this side takes (advertised in its open): 1 MiB. */
export const MAX_FRAME_SIZE = 1024 * 1024;

/** Sleeps of a waiting send are capped so conditions nobody wakes the gate for are re-checked. */
const WAIT_POLL_MS = 250;

/**
 * The close condition after which retrying cannot help: the peer refused us (a policy denying
 * the user or vhost after open, as a failed SASL login before it). After any other condition
 * the driver reconnects, as oslo's amqp1 driver does after every remote close: a router that
 * closed on a frame it could not take (`amqp:decode-error`), a redirect, a condition it made up.
 * rhea's default stopped after every condition but `amqp:connection:forced`, leaving servers
 * dead and waiting sends "still trying".
 */
const REFUSED = 'amqp:unauthorized-access';

/** What the connection asks and tells its driver. */
export interface ConnectionHooks {
  /** The driver was closed: stop reporting and reconnecting. */
  closed(): boolean;
  /** A state change for the driver's `state` events. */
  state(s: ConnectionState): void;
  /** The connection opened (first time, or again after rhea reconnected and re-attached links). */
  opened(conn: Connection): void;
  /** An open connection was lost; `err` names the host and the last error. */
  lost(err: TransportError): void;
  /** The peer settled one of our deliveries with `kind`. */
  outcome(ctx: EventContext, kind: OutcomeKind): void;
}

/**
 * One rhea connection per transport, opened on first use. rhea reconnects and re-attaches the
 * links by itself; each attempt takes the next host of the URL (failover), with SASL PLAIN
 * credentials of that host, over TLS when the URL asks for it. Sends and subscriptions wait
 * for it through {@link until}.
 */
export class Amqp1Connection {
  private readonly container: Container;
  private readonly hosts: HostRotation;
  /** `host:port` of the peer this connection uses (or tries) now, as state events name it. */
  get hostLabel(): string {
    return this.hosts.currentLabel;
  }
  private readonly gate: ConnectGate;
  private conn: Connection | undefined;
  private lastError: string | undefined;
  /** rhea failed on what the peer sent (its `error` event): {@link lastError} says so; the socket's own error after it does not replace it. */
  private readFailed = false;
  private failedAttempts = 0;
  /** Failed attempts over the connection's life (the gate's per-send retry budget counts from it). */
  private failuresEver = 0;
  /** The connection was open until the current disconnect (the next try is at once). */
  private wasOpen = false;
  /** A close frame ended the open connection; rhea's `disconnected` for it is still to come. */
  private lostOpen = false;
  /** The delay of the reconnect rhea scheduled last. */
  private nextDelayMs = 0;
  /** When rhea's scheduled reconnect is due (Date.now() clock). */
  private reconnectAt = 0;
  private open_ = false;
  /** The connection has opened once: any connect from now on is a reconnect. */
  private everOpened = false;
  /**
   * Retrying cannot help: the peer refused our SASL login, or speaks AMQP 0-9-1. The error that
   * waiting sends fail with, given what they wait for.
   */
  private refused: ((what: string) => Error) | undefined;
  /** The host of the current connect attempt, and whether its TCP connection (and TLS session) came up. */
  private attempt: Attempt | undefined;
  /** Ends the current connect attempt at `amqp1.connectTimeout` unless it reached AMQP open. */
  private connectTimer: NodeJS.Timeout | undefined;
  /** See {@link expectAttached}. */
  private attachTimer: NodeJS.Timeout | undefined;
  /** A protocol probe in progress: failures seen meanwhile count once it has answered. */
  private probing: Promise<void> | undefined;
  /** Ends a probe in progress when the connection is closed. */
  private readonly closing = new AbortController();
  /** When the connection last opened (ms), to tell a peer that detaches again at once from a one-off. */
  private openedAt = 0;
  /**
   * Losses in a row of connections that were open for less than `amqp1.intervalMax`: a peer
   * that closes each connection soon after opening it (a connection limit, a frame of ours it
   * refuses every time) is retried after a growing delay instead of at once, in a loop.
   */
  private lossStreak = 0;
  /** Reconnects in a row caused by the peer detaching our links (see {@link peerDropped}). */
  private dropStreak = 0;
  /** The next reconnect follows {@link peerDropped}: after a delay, not at once. */
  private dropPending = false;
  /** Sessions {@link watch} listens on. */
  private readonly watchedSessions = new WeakSet<object>();

  constructor(
    private readonly url: TransportUrl,
    private readonly config: HermodConfig,
    private readonly hooks: ConnectionHooks,
  ) {
    const id = config.amqp1.containerName || `hermod-${os.hostname()}-${process.pid}-${uuidHex().slice(0, 8)}`;
    this.container = rhea.create_container({ id });
    this.container.on('error', () => {});
    for (const kind of ['accepted', 'released', 'rejected', 'modified'] as const) {
      this.container.on(kind, (ctx: EventContext) => this.hooks.outcome(ctx, kind));
    }
    this.hosts = new HostRotation(url);
    this.gate = new ConnectGate(
      () => ({
        closed: this.hooks.closed(),
        connected: this.open_,
        failedAttempts: this.failedAttempts,
        failuresEver: this.failuresEver,
        refused: this.refused ?? false,
        problem: this.problem(),
      }),
      (attempts) => this.hurry(attempts),
    );
  }

  /** An AMQP connection is open now. */
  get isOpen(): boolean {
    return this.open_;
  }

  /**
   * Not open, and not on its first try either: an attempt failed or an open connection was lost,
   * so what comes next is a reconnect, possibly a backoff of up to `amqp1.intervalMax` away.
   */
  get retrying(): boolean {
    return !this.open_ && (this.failedAttempts > 0 || this.everOpened || this.refused !== undefined);
  }

  /** The rhea connection (after the first {@link until}). */
  get rhea(): Connection | undefined {
    return this.conn;
  }

  /** Opens the connection on first use; later callers share it. */
  private start(): void {
    if (this.conn || this.hooks.closed()) return;
    const a = this.config.amqp1;
    const secure = this.url.tls ? tlsOptions(this.config.tls) : {};
    const conn: Connection = this.container.create_connection({
      connection_details: () => {
        const h = this.hosts.next();
        // SASL per host: PLAIN with its credentials, else EXTERNAL or ANONYMOUS (setSaslCredentials).
        setSaslCredentials(conn, h.username, h.password, {
          external: Boolean(this.url.tls && this.config.tls.cert),
          anonymous: this.config.amqp1.saslAnonymous,
        });
        const attempt: Attempt = { host: h, tcpUp: false };
        this.attempt = attempt;
        this.armConnectTimer(attempt);
        const connect = this.url.tls
          ? (port: number, host: string, options: tls.ConnectionOptions, cb: () => void) => {
              const socket = tls.connect({ ...options, port, host, ...(net.isIP(host) === 0 ? { servername: host } : {}) }, () => {
                attempt.tcpUp = true;
                cb();
              });
              // TCP up, TLS still to come: what a connect timeout then says.
              socket.once('connect', () => {
                attempt.tlsPending = true;
              });
              return guarded(socket, attempt);
            }
          : (port: number, host: string, _o: unknown, cb: () => void) =>
              guarded(
                net.connect({ port, host, noDelay: true }, () => {
                  attempt.tcpUp = true;
                  cb();
                }),
                attempt,
              );
        return { host: h.hostname, port: h.port, connect, options: secure } as never;
      },
      // Our delays instead of rhea's own backoff, so that each reconnecting event can say when
      // the next try comes: at once after a loss (the next host may be fine), then growing with
      // jitter after failed attempts, as the RabbitMQ driver does.
      reconnect: () => {
        if (this.dropPending) {
          // The peer detached one of our links: an attach it refuses again at once must not
          // become a reconnect storm. Grows like failed attempts, from amqp1.retryInterval
          // (oslo re-attaches such a link after amqp1's link_retry_delay).
          this.dropPending = false;
          this.wasOpen = false;
          this.nextDelayMs = backoffDelay(this.dropStreak, { initial: a.retryInterval, factor: 2, max: a.intervalMax });
          this.reconnectAt = Date.now() + this.nextDelayMs;
          return this.nextDelayMs;
        }
        const afterLoss = this.wasOpen;
        this.wasOpen = false;
        // Counted here: rhea asks for the delay before it reports a socket's loss (markLost).
        if (afterLoss) {
          if (Date.now() - this.openedAt > a.intervalMax) this.lossStreak = 0;
          this.lossStreak++;
        }
        // Called as rhea schedules, before it reports this failure: failedAttempts + 1 so far.
        // The first loss in a while is retried at once (the next host may be fine).
        this.nextDelayMs = afterLoss
          ? this.lossStreak <= 1
            ? 0
            : backoffDelay(this.lossStreak - 1, { initial: a.retryInterval, factor: 2, max: a.intervalMax })
          : backoffDelay(this.failedAttempts + 1, { initial: a.retryInterval, factor: 2, max: a.intervalMax });
        this.reconnectAt = Date.now() + this.nextDelayMs;
        return this.nextDelayMs;
      },
      // rhea's default is 4 GiB: a peer could send any message as one frame, which rhea buffers
      // whole, past the reach of limitIncomingMessages. Peers split by what we advertise.
      max_frame_size: MAX_FRAME_SIZE,
      // Every close condition reconnects (see REFUSED: the connection_close handler stops it).
      all_errors_non_fatal: true,
      idle_time_out: a.idleTimeout || undefined,
      properties: { process: process.argv[1] ? process.argv[1].split('/').pop() : 'node', pid: process.pid, node: os.hostname() },
    } as never);
    this.conn = conn;
    // rhea assembles a message whole before anyone sees its size, so a peer that is no router
    // (nothing on the way enforces a limit) could make this process hold any size it sends.
    // Past twice maxMessageSize the rest is dropped as it arrives and the delivery rejected; up
    // to that, the receiver still decodes it and answers MessageTooLarge, as for any oversize.
    const limit = incomingLimit(this.config.maxMessageSize);
    limitIncomingMessages(conn, limit, (delivery) => {
      // A link that accepts by itself (the reply link) would accept it after the reject: one
      // outcome only, the accept, which tells the sender nothing worse than the lost call.
      if ((delivery.link as unknown as { get_option(k: string, d: boolean): boolean }).get_option('autoaccept', true)) return;
      try {
        delivery.reject({ condition: 'amqp:link:message-size-exceeded', description: `message exceeds ${limit} bytes` } as never);
      } catch {
        // the link is gone
      }
    });
    conn.connect();
    conn.on('connection_open', (ctx: EventContext) => this.onOpen(ctx));
    conn.on('disconnected', (ctx: EventContext) => this.onDisconnected(ctx));
    conn.on('connection_close', (ctx: EventContext) => {
      const err = connectionError(ctx.connection);
      if (err) this.lastError = err;
      if (this.hooks.closed()) return;
      // The peer closed on us: calls in flight lost their reply address, fail them now. rhea
      // reconnects and reports `disconnected` once the socket is gone.
      this.markLost();
      const e = ctx.connection.error as { condition?: string; description?: string } | undefined;
      if (e?.condition === REFUSED && !this.refused) {
        // rhea still reports `disconnected` (not reconnecting), which counts the attempt.
        stopReconnect(ctx.connection);
        this.refuseWaiters('the peer refused the connection; ');
      } else if (!e) reconnectAfterPlainClose(ctx.connection);
    });
    conn.on('connection_error', (ctx: EventContext) => {
      const err = connectionError(ctx.connection);
      if (err) this.lastError = err;
      // rhea reports a failed SASL exchange as a connection error of its own (not a close frame)
      // and, having set it as the transport error, never reconnects: say why at once.
      const e = ctx.error as { condition?: string; message?: string } | undefined;
      // A close frame's error comes here too (before connection_close): after open it is no
      // login, and connection_close says so.
      if (e?.condition === REFUSED && !this.open_) {
        // rhea logs in with PLAIN only given a password; a username alone is ANONYMOUS's trace.
        this.lastError = saslReason(e.message ?? '', Boolean(this.attempt?.host.password));
        this.refuseWaiters('the peer refused the login; ');
        return;
      }
      // A SASL outcome of `sys` (2) or `sys-temp` (4): the peer could not check the login now
      // (hermod's router when too many are being checked). Retried as any failed attempt;
      // `sys-perm` (3) cannot succeed and is refused as above.
      const sys = !this.open_ ? /^Failed to authenticate: ([234])$/.exec(e?.message ?? '') : null;
      if (sys?.[1] === '3') {
        this.lastError = `SASL failed: the peer reports a permanent system error (outcome sys-perm)`;
        this.refuseWaiters();
      } else if (sys) {
        // Whether another try follows is the reconnect line's to say (the budget may be spent).
        this.lastError = `SASL failed: the peer could not check the login now (outcome ${sys[1] === '2' ? 'sys' : 'sys-temp'})`;
        // It answered SASL: an AMQP 1.0 peer, nothing for a protocol probe to learn (and a
        // second connection per attempt to a peer that is turning logins away).
        if (this.attempt) this.attempt.saslAnswered = true;
        reconnectAfterSaslFailure(ctx.connection);
      }
    });
    // rhea reports a frame it could not take (a transfer on an unknown handle, say) here, then
    // ends the socket; the error the socket goes down with is what a queued write met on the
    // way ("write after end"), which told nothing. The first reason stays the reason.
    conn.on('error', (err: unknown) => {
      if (!(err instanceof Error) || this.refused) return;
      // rhea raises it for a frame it could not read and for one it could not write.
      this.lastError = `AMQP error: ${err.message}`;
      this.readFailed = true;
    });
    conn.on('protocol_error', (err: Error) => {
      this.readFailed = true;
      if (headerMismatch(err) !== 'plain') {
        this.lastError = `protocol error: ${err.message}`;
        return;
      }
      // rhea's own words ("SASL layer not enabled") named its setting, not the peer's answer.
      this.lastError =
        'the peer requires a SASL login (it answered with the SASL protocol header) and amqp1.saslAnonymous=false sends none: give a username and password in the URL, or leave amqp1.saslAnonymous at true';
      // The same settings meet the same answer: what waits fails now, as for a refused login
      // (it was retried to the budget, three attempts and about 3 s for rpc-client).
      if (this.open_ || this.refused) return;
      // As after a refused login: rhea would reconnect (no transport error is set), to the
      // same answer, unseen (a refused connection reports no reconnecting state).
      stopReconnect(conn);
      this.refuseWaiters();
    });
  }

  /**
   * Fails what waits for the connection, now and later, with AccessRefused naming the problem
   * (`why` before "not retrying"): retrying the same settings meets the same answer.
   */
  private refuseWaiters(why = ''): void {
    const problem = this.problem();
    this.refused = (what) => new AccessRefused(`${problem} (${why}not retrying for ${what})`);
    this.wake();
  }

  /**
   * rhea has no connect timeout: a peer that takes the TCP connection and never answers (a
   * wrong service on the port, a hung router) held the attempt forever, silent and past the
   * retry budget. At `amqp1.connectTimeout` the attempt's socket is dropped and counts as failed.
   */
  private armConnectTimer(attempt: Attempt): void {
    clearTimeout(this.connectTimer);
    const ms = this.config.amqp1.connectTimeout;
    this.connectTimer = setTimeout(() => {
      this.connectTimer = undefined;
      if (this.open_ || this.hooks.closed() || this.attempt !== attempt || !this.conn) return;
      const s = `${ms / 1000} s`;
      // No protocol probe after it: a peer that did not answer our header will not answer the probe's.
      attempt.timedOut = true;
      // With an error: rhea notices a socket's end through its `error` and `end` events only.
      socketOf(this.conn)?.destroy(
        new Error(
          attempt.tcpUp
            ? `no AMQP open within ${s} (the peer took the connection and did not answer: not an AMQP 1.0 peer, or hung)`
            : attempt.tlsPending
              ? `no TLS handshake within ${s} (the peer took the connection and did not answer it: not a TLS port, or hung)`
              : `TCP connect timed out after ${s}`,
        ),
      );
    }, ms);
    this.connectTimer.unref();
  }

  /**
   * Treats the peer detaching `link` (or ending its session) while the connection stays up as a
   * lost connection, as oslo's amqp1 driver turns a lost reply link into a reconnect. A router
   * forcing a link off (`amqp:link:detach-forced`), a link limit, an operator, a policy change:
   * before, the link was simply gone and nothing said so. A listener's receiver served nothing
   * more while the server said `running`; the reply link's loss left every later call to time
   * out; a detached sender's next message went out on a dead handle and the peer closed the
   * connection with a condition after which rhea never reconnects. Reconnecting fails the calls
   * in flight with TransportError (their replies went with the link), and rhea attaches every
   * link of ours again. With `ownerReportsRefusal`, a detach with an error other than
   * `amqp:link:detach-forced` is left to the link's owner (a listener reports it as a `failed`
   * state: a refusal, say of a re-attach past a link limit or a policy, comes back on every
   * retry, and each reconnect would fail every call in flight on the transport); the driver's
   * own links, without which nothing can be sent, reconnect then too, at most every
   * amqp1.intervalMax. Call it once the link is attached; a
   * refusal of its first attach is its owner's to report.
   */
  watch(link: Sender | Receiver, ownerReportsRefusal = false): void {
    const l = link as unknown as RheaLink;
    l.on(link.is_sender() ? 'sender_close' : 'receiver_close', () => {
      // Our own detach answered: nothing lost.
      if (!l.state.local_open) return;
      const e = (link.error ?? undefined) as { condition?: string; description?: string } | undefined;
      if (ownerReportsRefusal && e?.condition !== undefined && e.condition !== 'amqp:link:detach-forced') return;
      const why = e ? ` (${e.condition ?? 'error'}${e.description ? `: ${e.description}` : ''})` : '';
      this.peerDropped(`the peer detached link ${link.name}${why}`, l.state);
    });
    const session = l.session;
    if (this.watchedSessions.has(session)) return;
    this.watchedSessions.add(session);
    session.on('session_close', () => {
      if (!session.state.local_open) return;
      this.peerDropped('the peer ended the session', session.state);
    });
  }

  /**
   * Reconnects when the peer has not answered the attach of one of `links` (the driver's own
   * senders and reply link, without which nothing can be sent or answered) within `ms` of this
   * open. A peer that swallowed those attaches after a reconnect kept the connection up, every
   * send on it timing out, for as long as its heartbeats came.
   */
  expectAttached(links: Array<Sender | Receiver>, ms: number): void {
    const conn = this.conn;
    clearTimeout(this.attachTimer);
    this.attachTimer = setTimeout(() => {
      this.attachTimer = undefined;
      if (this.conn !== conn || !this.open_) return;
      const unanswered = links.find((l) => (l as unknown as { remote?: { attach?: unknown } }).remote?.attach === undefined);
      if (unanswered) this.peerDropped(`the peer did not answer the attach of link ${unanswered.name} within ${ms} ms`);
    }, ms);
  }

  /** See {@link watch}: drops the socket, so that rhea reconnects after a growing delay. */
  private peerDropped(reason: string, endpoint?: RheaEndpointState): void {
    const conn = this.conn;
    if (!conn || !this.open_ || this.hooks.closed()) return;
    // rhea closes and removes what the peer detached a tick later; a connection lost before
    // that keeps it for the reconnect to attach again, and a new marker keeps rhea off it.
    endpoint?.mark();
    // A peer that let the connection run a good while since it opened is no storm.
    if (Date.now() - this.openedAt > this.config.amqp1.intervalMax) this.dropStreak = 0;
    this.dropStreak++;
    this.dropPending = true;
    this.lastError = reason;
    // The reason, not the socket's error on the way down (see onDisconnected).
    this.readFailed = true;
    socketOf(conn)?.destroy(new Error(reason));
  }

  private onOpen(ctx: EventContext): void {
    clearTimeout(this.connectTimer);
    this.openedAt = Date.now();
    this.dropPending = false;
    this.open_ = true;
    this.everOpened = true;
    this.failedAttempts = 0;
    this.wasOpen = true;
    this.lostOpen = false;
    this.lastError = undefined;
    this.readFailed = false;
    this.hooks.state({ state: 'connected', host: this.hosts.currentLabel });
    this.hooks.opened(ctx.connection);
    this.wake();
  }

  /**
   * The open connection is gone: say so, and fail the calls waiting for replies, which would go
   * to its dynamic address. A loss is no failed attempt (rhea tries again at once).
   */
  private markLost(error?: Error): void {
    if (!this.open_) return;
    this.open_ = false;
    this.lostOpen = true;
    const host = this.hosts.currentLabel;
    const err = error ?? (this.lastError ? new Error(this.lastError) : undefined);
    this.hooks.state({ state: 'disconnected', host, ...(err ? { error: err } : {}) });
    this.hooks.lost(
      new TransportError(`connection to ${host} lost while waiting for a reply${this.lastError ? ` (${this.lastError})` : ''}`),
    );
    this.wake();
  }

  private onDisconnected(ctx: EventContext): void {
    clearTimeout(this.connectTimer);
    clearTimeout(this.attachTimer);
    // Open until now, or until the close frame that came just before (markLost ran then).
    const wasOpen = this.open_ || this.lostOpen;
    this.lostOpen = false;
    const host = this.hosts.currentLabel;
    // What rhea failed on beats the socket's own error after it, as a refused login's reason does.
    const error = this.readFailed && this.lastError ? new Error(this.lastError) : (ctx.error as Error | undefined);
    if (error && !this.refused && !this.readFailed) this.lastError = error.message;
    // A socket that just ended (a killed router) comes with no error: say that much.
    else if (wasOpen && !this.lastError)
      this.lastError =
        this.conn && closedIdle(this.conn)
          ? `the peer sent nothing, not even a heartbeat, for ${2 * this.config.amqp1.idleTimeout} ms (twice amqp1.idleTimeout): taken for dead`
          : 'the peer closed the connection';
    this.readFailed = false;
    if (this.hooks.closed()) {
      this.open_ = false;
      this.failedAttempts++;
      this.failuresEver++;
      return;
    }
    const reconnecting = (ctx as { reconnecting?: boolean }).reconnecting === true;
    if (wasOpen) {
      this.markLost(error);
      // markLost marks the loss for a disconnect still to come; this is it. Left set, the failure
      // of rhea's immediate retry was taken for the same loss: neither counted nor reported, so
      // a `retry: 0` send waited out the backoff (about a second) instead of failing at once.
      this.lostOpen = false;
      // rhea tries again at once; only a failed attempt is news (as on RabbitMQ).
      if (reconnecting) return;
    }
    // The attempt counts once a probe has said whether retrying can help, so that a retry
    // budget of 0 does not fail with "gave up" before the peer's protocol is known.
    const a = this.attempt;
    // TLS that met a plain-text answer never counts as up (tcpUp is set at secureConnect).
    const plainPeer = this.url.tls && isPlainTextPeer(this.lastError ?? '');
    if (
      !wasOpen &&
      !this.refused &&
      !this.probing &&
      (a?.tcpUp || plainPeer) &&
      a &&
      !a.timedOut &&
      !a.framing &&
      !a.saslAnswered &&
      !this.hooks.closed()
    ) {
      this.probing = this.probe(a.host, plainPeer).finally(() => {
        this.probing = undefined;
      });
    }
    if (this.probing) void this.probing.then(() => this.attemptFailed(host, reconnecting));
    else this.attemptFailed(host, reconnecting);
  }

  /** A connect attempt failed; `reconnecting`: rhea scheduled the next one, {@link nextDelayMs} from now. */
  private attemptFailed(host: string, reconnecting: boolean): void {
    this.failedAttempts++;
    this.failuresEver++;
    // After a refused login or a wrong protocol rhea does not reconnect; do not claim it does.
    if (reconnecting && !this.refused && !this.hooks.closed()) {
      this.hooks.state({
        state: 'reconnecting',
        host,
        attempt: this.failedAttempts,
        delayMs: this.nextDelayMs,
        ...(this.lastError ? { reason: this.lastError } : {}),
      });
    }
    this.wake();
  }

  /**
   * A connection that came up but closed before AMQP's open, or a TLS handshake answered in
   * plain text (`plainPeer`): ask the peer what it speaks. A 0-9-1 peer (RabbitMQ without its
   * AMQP 1.0 plugin), a plain port behind an `amqps://` URL or a TLS-only port behind an
   * `amqp://` one is a configuration mistake: waiting sends fail with WrongProtocol naming the URL
   * that would work, and rhea stops reconnecting, as after a refused login.
   */
  private async probe(host: TransportHost, plainPeer: boolean): Promise<void> {
    const refuse = (error: (what: string) => Error) => {
      this.lastError = error('connecting').message;
      this.refused = error;
      if (this.conn) stopReconnect(this.conn);
    };
    const scheme = this.url.scheme;
    if (plainPeer) {
      // amqps:// to a plain port: what it speaks in plain text says which URL would work.
      const plain = await probeProtocol(host, 2000, this.closing.signal);
      if (plain === undefined || this.hooks.closed() || this.open_) return;
      return refuse((what) => tlsMismatch(host, scheme, true, what, plain));
    }
    const secure = this.url.tls ? tlsOptions(this.config.tls) : undefined;
    const speaks = await probeProtocol(host, 2000, this.closing.signal, secure);
    if (this.hooks.closed() || this.open_) return;
    if (speaks === 'AMQP 0-9-1') return refuse((what) => wrongProtocol(host, 'AMQP 1.0', what, this.url.tls));
    // No header at all from a plain connect: a TLS-only port closes on one.
    if (speaks !== undefined || this.url.tls) return;
    const inside = await tlsPortSpeaks(host, 2000, this.closing.signal);
    if (inside === false || this.hooks.closed() || this.open_) return;
    refuse((what) => tlsMismatch(host, scheme, false, what, inside === 'unknown' ? undefined : inside));
  }

  /** "cannot connect to …", with the last connection failure, for errors. */
  private problem(): string {
    const hosts = this.url.hosts.map(hostLabel).join(', ');
    return `cannot connect to ${this.url.scheme}://${hosts}${this.lastError ? `: ${this.lastError}` : ''}`;
  }

  /** Wakes every send waiting in {@link until} to re-check its condition. */
  wake(): void {
    this.gate.wake();
  }

  /**
   * Brings rhea's scheduled reconnect forward to the backoff a waiter that has seen `attempts`
   * failures of its own would have (see ConnectGate): per send, as oslo's, not the connection's
   * backoff grown through an outage. Only a scheduled reconnect is moved; a refused one stays.
   */
  private hurry(attempts: number): void {
    if (!this.conn || this.refused) return;
    const a = this.config.amqp1;
    const delay = backoffDelay(Math.max(1, attempts), { initial: a.retryInterval, factor: 2, max: a.intervalMax });
    if (Date.now() + delay < this.reconnectAt && rescheduleReconnect(this.conn, delay)) this.reconnectAt = Date.now() + delay;
  }

  /**
   * Opens the connection if needed and waits until `ready()` holds, failing at `deadline` or
   * when the retry budget (failed connect attempts, -1: none) is spent.
   */
  async until(ready: () => boolean, deadline: number, retry: number, what: string): Promise<void> {
    this.start();
    await this.gate.until(ready, deadline, retry, what, WAIT_POLL_MS);
  }

  /** Stops reconnecting, closes the connection (waiting briefly for the peer) and drops the socket. */
  async close(): Promise<void> {
    clearTimeout(this.connectTimer);
    clearTimeout(this.attachTimer);
    this.closing.abort();
    this.wake();
    const conn = this.conn;
    if (!conn) return;
    stopReconnect(conn);
    if (this.open_) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 500);
        conn.once('connection_close', () => {
          clearTimeout(timer);
          resolve();
        });
        conn.once('disconnected', () => {
          clearTimeout(timer);
          resolve();
        });
        conn.close();
      });
    }
    socketOf(conn)?.destroy();
    clearRheaTimers(conn);
    this.open_ = false;
  }
}

/**
 * A frame before the peer's open larger than this is refused: AMQP 1.0 holds both sides to 512
 * bytes until open (§2.4.1), and real brokers' SASL and open frames stay far below.
 */
const HANDSHAKE_FRAME_SIZE = 64 * 1024;

/**
 * Holds the server to the frame sizes this side advertises, before rhea sees its bytes. rhea
 * buffers whatever size a frame header declares; a peer that declared 2 GiB and kept sending
 * (a broken or hostile broker, a wrong service) made this process hold it all. A header that
 * is not AMQP 1.0's passes, for rhea and the protocol probe to name.
 */
function guarded<S extends net.Socket>(socket: S, attempt: Attempt): S {
  new SocketGuard(socket, { handshake: HANDSHAKE_FRAME_SIZE, maxFrame: MAX_FRAME_SIZE, otherHeader: 'pass', peer: 'server' }, (reason) => {
    attempt.framing = true;
    socket.destroy(new Error(`the peer broke AMQP 1.0 framing: ${reason} (this side advertised max-frame-size ${MAX_FRAME_SIZE})`));
  });
  return socket;
}

/** What {@link Amqp1Connection.watch} reads of rhea's links and sessions beyond its typings. */
interface RheaEndpointState {
  local_open: boolean;
  /** A new marker keeps rhea from closing an endpoint the peer closed (it checks its own). */
  mark(): unknown;
}
interface RheaLink {
  state: RheaEndpointState;
  on(event: string, f: () => void): void;
  session: { state: RheaEndpointState; on(event: string, f: () => void): void };
}

/** One connect attempt: its host, whether its TCP connection (and TLS session) came up, how it ended. */
interface Attempt {
  host: TransportHost;
  tcpUp: boolean;
  /** TLS only: TCP is up, the handshake is not done. */
  tlsPending?: boolean;
  /** Ended by the connect timeout. */
  timedOut?: boolean;
  /** Ended because the peer broke the frame size bounds: it speaks AMQP 1.0, so no probe. */
  framing?: boolean;
  /** Ended by the peer's SASL outcome: it speaks AMQP 1.0, so no probe. */
  saslAnswered?: boolean;
}

/** rhea's SASL failure texts, said plainly. */
function saslReason(text: string, withCredentials: boolean): string {
  const offered = /No suitable mechanism; server supports (.*)/.exec(text);
  if (offered) {
    const mechs = offered[1] || 'no mechanism';
    if (withCredentials)
      return `SASL failed: the server offers ${mechs}, and this client logs in with PLAIN (the URL's username and password)${/ANONYMOUS/.test(mechs) ? ': leave them out of the URL for ANONYMOUS' : ''}`;
    return `SASL failed: the server offers ${mechs}, none of which this client can use without a login (PLAIN needs a username and password in the URL${/EXTERNAL/.test(mechs) ? '; EXTERNAL needs amqps:// and tls.cert/tls.key' : ''})`;
  }
  if (/Failed to authenticate: 1\b/.test(text)) return 'SASL failed: authentication refused (wrong username or password)';
  return `SASL failed: ${text || 'unauthorized access'}`;
}
