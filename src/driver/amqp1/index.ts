import type { Connection, EventContext, Message, Receiver, Sender, Source } from 'rhea';
import type { HermodConfig } from '../../config/index.js';
import type { TransportUrl } from '../../config/transport-url.js';
import { channels, publish } from '../../core/diagnostics.js';
import { ClosedError, InvalidArgument, MalformedMessage, MessageTooLarge, MessagingTimeout, TransportError } from '../../core/errors.js';
import { uuidHex } from '../../core/ids.js';
import type { Context } from '../../core/serializer.js';
import type { Target } from '../../core/target.js';
import { discardedBytes, installRheaFixes } from '../../rhea/index.js';
import type { Driver, Listener, ListenOptions, NotificationSendOptions, Reply, RpcRequest, SendOptions } from '../driver.js';
import { DriverBase } from '../driver-base.js';
import { type AddressingMode, notifyAddress, pickMode, rpcAddress, serverAddresses } from './addressing.js';
import { Amqp1Connection } from './connection.js';
import { SendFlow } from './flow.js';
import { Amqp1Listener } from './listener.js';
import { Abandon, MessageSender, type SendProgress } from './sender.js';
import { decodeReply, notificationBody, replyMessage, requestBody } from './wire.js';

/**
 * What an AMQP 1.0 message of hermod's takes besides its body and the names in its addresses, at
 * most: the header (ttl) and properties sections with their descriptors and type codes, the
 * address prefixes and a reply address's generated part, a message id, the body section's
 * descriptor and length.
 */
const MESSAGE_ROOM = 512;

const byteLength = (s: string) => Buffer.byteLength(s);

/** How long `close()` waits for casts and notifications already sent to be settled or written. */
export const CLOSE_FLUSH_MS = 5_000;

/**
 * The AMQP 1.0 driver (rhea), speaking oslo.messaging's amqp1 wire format: JSON bodies as
 * AMQP strings, routable (or legacy) addresses, one dynamic reply link per connection,
 * unsettled (confirmed) casts and presettled replies, call-monitor heartbeats as body-less
 * replies. One connection per transport; rhea reconnects and re-attaches links, failing over
 * across the URL's hosts. `close()` first lets the casts and notifications already sent finish
 * (settled, or written when presettled), within {@link CLOSE_FLUSH_MS}.
 */
export class Amqp1Driver extends DriverBase implements Driver {
  readonly kind = 'amqp1';
  readonly quotesResults = false;
  readonly argsDepth = 2;
  private readonly connection: Amqp1Connection;
  private readonly flow: SendFlow;
  private readonly sender: MessageSender;
  private settledSender: Sender | undefined;
  private unsettledSender: Sender | undefined;
  private replyReceiver: Receiver | undefined;
  private replyAddress: string | undefined;
  private mode: AddressingMode = 'routable';
  /** Listeners to grant credit again after a reconnect. */
  private readonly active = new Set<Amqp1Listener>();
  /** Casts and notifications between send() and their outcome: close() waits for them. */
  private casting = 0;
  /** The connection failed while close() was flushing: stop waiting for it. */
  private flushGivenUp = false;
  /** close() has flushed: the connection is shut for good. */
  private shut = false;
  /** Resolves when close() has closed the connection. */
  private readonly closedDone: Promise<void>;
  private markClosed: () => void = () => {};

  constructor(url: TransportUrl, config: HermodConfig) {
    super(url, config);
    // A listener's accept and release in one pass must not merge (rhea bug, see the fix).
    installRheaFixes();
    this.closedDone = new Promise((resolve) => {
      this.markClosed = resolve;
    });
    this.connection = new Amqp1Connection(url, config, {
      // While close() flushes, sends already made keep their connection.
      closed: () => this.shut,
      state: (s) => {
        // A connection lost or failing while close() flushes is not waited for.
        if (this.closed && s.state !== 'connected') this.flushGivenUp = true;
        this.setState(s);
      },
      opened: (conn) => this.onOpen(conn),
      lost: (err) => {
        this.replyAddress = undefined;
        this.sender.connectionLost(err);
      },
      outcome: (ctx, kind) => this.sender.onOutcome(ctx, kind),
    });
    this.flow = new SendFlow(
      {
        isOpen: () => this.connection.isOpen,
        requests: () => this.unsettledSender,
        replies: () => this.replyLink(),
      },
      config.rpc.responseTimeout,
    );
    this.sender = new MessageSender(this.connection, this.flow, {
      link: (presettled) => (presettled ? this.settledSender : this.unsettledSender),
    });
  }

  private get vhost(): string | undefined {
    return this.url.virtualHost || undefined;
  }

  private replyLink(): Sender | undefined {
    return this.config.amqp1.presettledReplies ? this.settledSender : this.unsettledSender;
  }

  /** First open: the anonymous senders and the dynamic reply link; later ones: credit again. */
  private onOpen(conn: Connection): void {
    const props = conn.properties as Record<string, unknown> | undefined;
    this.mode = pickMode(this.config.amqp1.addressingMode, props?.product);
    if (this.settledSender) {
      for (const l of this.active) l.reattached();
      this.expectOwnLinks();
      return;
    }
    this.settledSender = conn.open_sender({ target: {}, snd_settle_mode: 1, name: `hermod/sender/settled/${uuidHex()}` });
    this.unsettledSender = conn.open_sender({ target: {}, name: `hermod/sender/unsettled/${uuidHex()}` });
    for (const s of [this.settledSender, this.unsettledSender]) {
      s.on('sendable', () => {
        this.connection.wake();
        this.flow.schedulePump();
      });
      s.on('sender_error', () => {});
      this.connection.watch(s);
    }
    this.replyReceiver = conn.open_receiver({
      // rhea's typings demand an address even on a dynamic source, which the peer assigns.
      source: { dynamic: true } as Source,
      target: { address: 'rpc-response' },
      name: `openstack.org/om/receiver/[rpc-response]/${uuidHex()}`,
      credit_window: this.config.amqp1.replyCredit,
      autoaccept: true,
    });
    this.replyReceiver.on('receiver_open', (c: EventContext) => {
      this.replyAddress = (c.receiver!.source as { address?: string }).address;
    });
    this.replyReceiver.on('message', (c: EventContext) => {
      // Cut off while it arrived (see incomingLimit): nothing says which call it answered.
      const cut = discardedBytes(c.delivery!);
      if (cut !== undefined) {
        publish(channels.invalidMessage, { where: 'reply link', error: new MessageTooLarge(cut, this.maxMessageSize), size: cut });
        return;
      }
      this.onReply(c.message!);
    });
    this.replyReceiver.on('receiver_error', () => {});
    this.connection.watch(this.replyReceiver);
    this.expectOwnLinks();
  }

  /** The driver's own links must be answered within amqp1.connectTimeout of each open (see expectAttached). */
  private expectOwnLinks(): void {
    this.connection.expectAttached([this.settledSender!, this.unsettledSender!, this.replyReceiver!], this.config.amqp1.connectTimeout);
  }

  private onReply(message: Message): void {
    const r = decodeReply(message, this.config.maxJsonDepth, this.maxMessageSize);
    if (!r) {
      // No correlation id: nothing says which call it answers (as a reply queue's without _msg_id).
      publish(channels.invalidMessage, { where: 'reply link', error: new MalformedMessage('reply without a correlation id') });
      return;
    }
    if (r.kind === 'heartbeat') this.waiter.heartbeat(r.id);
    else if (r.kind === 'malformed') {
      this.waiter.fail(r.id, r.error);
      publish(channels.invalidMessage, { where: 'reply link', error: r.error });
    } else this.waiter.resolve(r.id, r.reply);
  }

  /**
   * JSON of `value` that fits one AMQP 1.0 message of at most maxMessageSize once its sections
   * are around it: `strings` bytes of addresses and ids, plus {@link MESSAGE_ROOM}. The router
   * (and any peer) counts the whole message against its limit: a body within maxMessageSize but
   * not with them was refused there, and a reply, sent presettled, vanished while its call waited
   * out its timeout. Past it: MessageTooLarge, as for a body over the limit.
   */
  private encodeWithin(value: unknown, what: string, strings: number): string {
    const body = this.encode(value, what);
    const max = this.maxMessageSize;
    const room = MESSAGE_ROOM + strings;
    if (body.length * 3 > max - room) {
      const size = Buffer.byteLength(body) + room;
      if (size > max) throw new MessageTooLarge(size, max);
    }
    return body;
  }

  /** Bytes of the names a message to `target` carries in its addresses, at most. */
  private targetRoom(target: Target): number {
    return (
      byteLength(this.exchange(target)) + byteLength(target.topic ?? '') + byteLength(target.server ?? '') + byteLength(this.vhost ?? '')
    );
  }

  private address(target: Target): string {
    return rpcAddress(
      this.mode,
      {
        exchange: this.exchange(target),
        topic: target.topic!,
        ...(target.server ? { server: target.server } : {}),
        ...(target.fanout ? { fanout: true } : {}),
      },
      this.vhost,
    );
  }

  /** Opens the connection now (see Driver.connect); no retry limit before `deadline`. */
  async connect(deadline: number): Promise<void> {
    await this.connection.until(() => this.connection.isOpen, deadline, -1, 'connect');
  }

  async send(target: Target, ctx: Context, request: RpcRequest, opts: SendOptions): Promise<Reply | undefined> {
    this.assertOpen();
    return this.reportAfterClose(() =>
      opts.waitForReply ? this.call(target, ctx, request, opts) : this.counted(() => this.cast(target, ctx, request, opts)),
    );
  }

  /**
   * Runs a send; a failure while the transport closes is reported once close() has finished
   * (bounded), like everything else close() ends, not while it is still flushing.
   */
  private async reportAfterClose<T>(send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (err) {
      if (this.closed) {
        let timer: NodeJS.Timeout | undefined;
        const bound = new Promise<void>((r) => {
          timer = setTimeout(r, CLOSE_FLUSH_MS + 1000);
        });
        await Promise.race([this.closedDone, bound]);
        clearTimeout(timer);
      }
      throw err;
    }
  }

  /** Runs a cast or notification, counted for close() to wait on. */
  private async counted<T>(send: () => Promise<T>): Promise<T> {
    this.casting++;
    try {
      return await send();
    } finally {
      this.casting--;
    }
  }

  private async cast(target: Target, ctx: Context, request: RpcRequest, opts: SendOptions): Promise<undefined> {
    const deadline = Date.now() + opts.timeout;
    const retry = opts.retry ?? -1;
    const body = this.encodeWithin(requestBody(request, ctx), `cast ${request.method}`, this.targetRoom(target));
    await this.connection.until(() => this.connection.isOpen, deadline, retry, request.method);
    const presettled = this.config.amqp1.presettledCasts;
    await this.sender.deliver(() => ({ to: this.address(target), body }), presettled, deadline, retry, `cast ${request.method}`);
    return undefined;
  }

  private async call(target: Target, ctx: Context, request: RpcRequest, opts: SendOptions): Promise<Reply | undefined> {
    const deadline = Date.now() + opts.timeout;
    const retry = opts.retry ?? -1;
    const body = this.encodeWithin(requestBody(request, ctx, opts.callMonitorTimeout), `call ${request.method}`, this.targetRoom(target));
    await this.connection.until(() => this.connection.isOpen && this.replyAddress !== undefined, deadline, retry, request.method);
    const msgId = uuidHex();
    const reply = this.waiter.wait(msgId, {
      timeout: Math.max(1, deadline - Date.now()),
      callMonitorTimeout: opts.callMonitorTimeout ?? 0,
      named: opts.callTimeout ?? opts.timeout,
      describe: `${request.method} on topic ${target.topic}${target.server ? ` server ${target.server}` : ''}`,
    });
    // The reply may fail (timeout, call monitor) while the request is still being delivered
    // below, and a server may never settle the request: the reply decides when the call ends,
    // and the request's delivery is abandoned then.
    reply.catch(() => {});
    const untrack = this.sender.trackCall(msgId, (err) => this.waiter.fail(msgId, err));
    const abandon = new Abandon();
    const progress: SendProgress = { handedBack: false };
    this.sender
      .deliver(
        () => ({
          to: this.address(target),
          body,
          message_id: msgId,
          reply_to: this.replyAddress!,
          ttl: Math.max(1, Math.round(deadline - Date.now())),
        }),
        false,
        deadline,
        retry,
        `call ${request.method}`,
        true,
        abandon,
        progress,
      )
      .catch((err: Error) => this.waiter.fail(msgId, err));
    const ended = (failed = false) => {
      abandon.abort(failed);
      untrack();
    };
    return reply.then(
      (r) => {
        ended();
        return r;
      },
      (err: Error) => {
        ended(true);
        // The reply's deadline and the request's last resend race: either way nobody took it.
        if (err instanceof MessagingTimeout && progress.handedBack) throw this.sender.nobodyTook(`call ${request.method}`, true, progress);
        // The reply's deadline is the send's too, and its timer won: "waiting for a reply" blamed
        // a server that never got the request (the peer gave no credit, the session no room).
        if (
          err instanceof MessagingTimeout &&
          !progress.sent &&
          /^Timed out waiting for a reply/.test(err.message) &&
          !/call monitor/.test(err.message)
        )
          throw new MessagingTimeout(
            `timed out waiting to send call ${request.method} (after ${opts.callTimeout ?? opts.timeout} ms): it never left this process (no credit from the peer for its address, or no room on the connection)`,
            { cause: err },
          );
        throw err;
      },
    );
  }

  async sendNotification(target: Target, ctx: Context, message: Record<string, unknown>, opts: NotificationSendOptions): Promise<void> {
    this.assertOpen();
    await this.reportAfterClose(() => this.counted(() => this.notify(target, ctx, message, opts)));
  }

  private async notify(target: Target, ctx: Context, message: Record<string, unknown>, opts: NotificationSendOptions): Promise<void> {
    const deadline = Date.now() + this.config.rpc.responseTimeout;
    const body = this.encodeWithin(notificationBody(message, ctx, opts.envelope), 'notification', this.targetRoom(target));
    await this.connection.until(() => this.connection.isOpen, deadline, opts.retry ?? -1, 'notification');
    await this.sender.deliver(
      () => ({ to: notifyAddress(this.mode, this.exchange(target), target.topic!, this.vhost), body }),
      false,
      deadline,
      opts.retry ?? -1,
      'notification',
    );
  }

  async listen(target: Target, opts: ListenOptions): Promise<Listener> {
    const addresses = () => {
      const t = { exchange: this.exchange(target), topic: target.topic!, server: target.server! };
      const all = serverAddresses(this.mode, t, this.vhost);
      if (opts.alias !== undefined) all.push(rpcAddress(this.mode, { ...t, server: opts.alias, fanout: false }, this.vhost));
      return all;
    };
    return this.subscribe(addresses, opts);
  }

  async listenForNotifications(
    targets: Array<{ target: Target; priority: string }>,
    pool: string | undefined,
    opts: ListenOptions,
  ): Promise<Listener> {
    // A router stores nothing, so it cannot give each pool its own copy; oslo's amqp1 driver
    // refuses pools the same way.
    if (pool)
      throw new InvalidArgument(
        `listener pools are not supported on AMQP 1.0 (pool '${pool}'); use RabbitMQ or the memory driver for pools`,
      );
    if (opts.tap)
      throw new InvalidArgument(
        'notification taps are not supported on AMQP 1.0 (a router keeps no queue to copy into); use RabbitMQ or the memory driver for taps',
      );
    const addresses = () =>
      targets.map(({ target, priority }) => notifyAddress(this.mode, this.exchange(target), `${target.topic}.${priority}`, this.vhost));
    return this.subscribe(addresses, opts);
  }

  private async subscribe(addresses: () => string[], opts: ListenOptions): Promise<Listener> {
    this.assertOpen();
    const deadline = Date.now() + this.config.rpc.responseTimeout;
    await this.connection.until(() => this.connection.isOpen, deadline, this.config.rpc.retry, 'subscribe');
    const listener = this.track(
      new Amqp1Listener({
        conn: this.connection.rhea!,
        addresses: addresses(),
        listen: opts,
        credit: Math.min(opts.prefetch, this.config.amqp1.serverCredit),
        maxMessageSize: this.maxMessageSize,
        maxJsonDepth: this.config.maxJsonDepth,
        reply: (to, correlationId, body, ttl) =>
          this.flow.sendReply(
            replyMessage(
              to,
              correlationId,
              body && this.encodeWithin(body, 'reply', byteLength(to) + byteLength(String(correlationId))),
              ttl,
            ),
          ),
        // The subscription has ended, as a RabbitMQ one whose declares are refused on a reconnect.
        onRefused: (error) => this.setState({ state: 'failed', host: this.connection.hostLabel, error }),
        watch: (r) => this.connection.watch(r, true),
      }),
    );
    this.active.add(listener);
    const untrack = listener.onStop;
    listener.onStop = () => {
      untrack?.();
      this.active.delete(listener);
    };
    let timer: NodeJS.Timeout | undefined;
    try {
      // Bounded as the connect is: a peer that never answered an attach (hung, overloaded) kept
      // start() pending for ever.
      const unanswered = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new TransportError(
                `subscribe: the peer did not answer the attach of ${addresses().join(', ')} within ${Math.round(this.config.rpc.responseTimeout / 1000)} s (rpc.responseTimeout)`,
              ),
            ),
          Math.max(1, deadline - Date.now()),
        );
      });
      // A refusal that comes after the deadline has nobody left to tell.
      listener.attached.catch(() => {});
      await Promise.race([listener.attached, unanswered]);
    } catch (err) {
      // A refused link: the others are detached, and the subscription fails as a whole.
      await listener.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return listener;
  }

  /**
   * Flushes, then closes: casts and notifications already sent get their outcome (a released
   * one is not resent now) and presettled ones are written, within {@link CLOSE_FLUSH_MS}. A
   * first connect still under way is waited for; a connection that fails or is lost meanwhile,
   * or was already failing or lost, is not (no reconnect while closing). What is left then fails with ClosedError.
   */
  protected async shutdown(): Promise<void> {
    this.sender.closing = true;
    // Only a state change after close() began gave the flush up: a connection already backing
    // off (an unreachable peer, a lost one) changes none until its next try, so close() waited
    // the whole CLOSE_FLUSH_MS for casts that could not go anywhere, though it never waits for
    // a reconnect. Those casts fail with ClosedError below.
    if (this.connection.retrying) this.flushGivenUp = true;
    const end = Date.now() + CLOSE_FLUSH_MS;
    while ((this.casting > 0 || !this.sender.flushed()) && !this.flushGivenUp && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 2));
    }
    this.shut = true;
    this.connection.wake();
    try {
      await this.connection.close();
      // Sends still waiting for an outcome past the flush bound end now (ClosedError), and so do
      // those still waiting for room in the session buffer.
      this.sender.connectionLost(new ClosedError('transport closed before the peer settled the message'));
      this.flow.failAll(new ClosedError('transport closed while the message waited for room to send'));
    } finally {
      this.markClosed();
    }
  }
}
