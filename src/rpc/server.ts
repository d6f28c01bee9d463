import { ClosedError, HermodError, InvalidArgument, SerializationError, ServerStopped } from '../core/errors.js';
import { Target } from '../core/target.js';
import { NoOpSerializer, type Serializer } from '../core/serializer.js';
import { channels, publish, type ServerRequestEvent } from '../core/diagnostics.js';
import type { IncomingMessage, Listener } from '../driver/driver.js';
import type { Transport } from '../transport.js';
import { RPCDispatcher, parseRequest, type AccessPolicy } from './dispatcher.js';
import { serializeFailure } from './remote-errors.js';

/** Options of an {@link RPCServer}. */
export interface RPCServerOptions {
  /**
   * Requests run at once; also the driver's prefetch / link credit.
   * @default config `rpc.serverConcurrency` (64)
   */
  concurrency?: number;
  /** Converts arguments and results. @default NoOpSerializer */
  serializer?: Serializer;
  /** Extra check on top of the built-in one (no `_private`, prototype or getter names). */
  accessPolicy?: AccessPolicy;
  /** Put stack traces into failures. @default config `rpc.sendTraceback` (false) */
  sendTraceback?: boolean;
}

/** Counters of a server, for `info`-style endpoints and tests. */
export interface ServerStats {
  /** Requests finished (successfully or not). */
  served: number;
  /** Requests whose method threw or that could not be dispatched. */
  failed: number;
  /** Requests running now. */
  inFlight: number;
  /** Requests received but waiting for a concurrency slot. */
  queued: number;
}

/** Result of {@link RPCServer.wait}. */
export interface WaitResult {
  /** Requests that finished while waiting. */
  completed: number;
  /** Requests still running at the deadline; their callers got a failure. */
  aborted: number;
}

interface Running {
  incoming: IncomingMessage;
  finished: boolean;
  abort(): Promise<void>;
}

type State = 'new' | 'starting' | 'running' | 'stopped';

/**
 * Serves RPC requests for one target (topic + server name) by dispatching them to endpoint
 * objects. `start()` subscribes, `stop()` stops taking new work, `wait()` drains what is
 * running, with a deadline.
 */
export class RPCServer {
  readonly target: Target;
  private readonly dispatcher: RPCDispatcher;
  private readonly concurrency: number;
  private readonly sendTraceback: boolean;
  private listener: Listener | undefined;
  private state: State = 'new';
  private readonly running = new Set<Running>();
  private readonly backlog: IncomingMessage[] = [];
  private readonly idleWaiters: Array<() => void> = [];
  private readonly stats_ = { served: 0, failed: 0 };

  constructor(readonly transport: Transport, target: Target, endpoints: readonly object[], options: RPCServerOptions = {}) {
    if (!(target instanceof Target)) throw new InvalidArgument('RPCServer needs a Target');
    target.assertListenable();
    this.target = target;
    const conf = transport.config.rpc;
    this.concurrency = options.concurrency ?? conf.serverConcurrency;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) {
      throw new InvalidArgument(`concurrency must be an integer of 1 or more, got ${options.concurrency}`);
    }
    this.sendTraceback = options.sendTraceback ?? conf.sendTraceback;
    this.dispatcher = new RPCDispatcher(endpoints, options.serializer ?? new NoOpSerializer(), options.accessPolicy);
  }

  /** Counters since start. */
  stats(): ServerStats {
    return { ...this.stats_, inFlight: this.running.size, queued: this.backlog.length };
  }

  /** Subscribes to the target's topic, server and fanout addresses. */
  async start(): Promise<void> {
    if (this.state === 'running' || this.state === 'starting') return;
    if (this.state === 'stopped') throw new ClosedError('a stopped RPCServer cannot be started again; make a new one');
    this.state = 'starting';
    try {
      this.listener = await this.transport.driver.listen(this.target, {
        prefetch: this.concurrency,
        onMessage: (m) => this.onMessage(m),
        onInvalid: (error, raw) => publish(channels.invalidMessage, { where: `server ${this.target.server}`, error, size: raw.size }),
      });
    } catch (err) {
      this.state = 'new';
      throw err;
    }
    this.state = 'running';
  }

  /** Stops taking new requests. Queued ones go back to the broker; running ones go on (see {@link wait}). */
  async stop(): Promise<void> {
    if (this.state !== 'running') {
      this.state = 'stopped';
      return;
    }
    this.state = 'stopped';
    await this.listener?.stop();
    for (const m of this.backlog.splice(0)) {
      m.requeue();
    }
    this.checkIdle();
  }

  /**
   * Waits until running requests finish. Past `deadlineMs` (default config `rpc.stopTimeout`)
   * the rest are aborted: their callers get a ServerStopped failure and late results are dropped.
   */
  async wait(deadlineMs: number = this.transport.config.rpc.stopTimeout): Promise<WaitResult> {
    const before = this.stats_.served;
    if (this.running.size === 0) return { completed: 0, aborted: 0 };
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<boolean>((resolve) => this.idleWaiters.push(() => resolve(true)));
    const deadline = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), deadlineMs); });
    const drained = await Promise.race([idle, deadline]);
    clearTimeout(timer);
    if (drained) return { completed: this.stats_.served - before, aborted: 0 };
    const left = [...this.running];
    const servedBeforeAbort = this.stats_.served;
    await Promise.all(left.map((r) => r.abort()));
    return { completed: servedBeforeAbort - before, aborted: left.length };
  }

  /**
   * The abort strategy: stops taking work and ends what is running now; those callers get a
   * ServerStopped failure and late results are dropped. Resolves with how many were aborted.
   */
  async abort(): Promise<WaitResult> {
    await this.stop();
    return this.wait(0);
  }

  private checkIdle(): void {
    if (this.running.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  private onMessage(incoming: IncomingMessage): void {
    if (this.state !== 'running') {
      incoming.requeue();
      return;
    }
    if (this.running.size >= this.concurrency) {
      this.backlog.push(incoming);
      return;
    }
    void this.process(incoming);
  }

  private async process(incoming: IncomingMessage): Promise<void> {
    const started = performance.now();
    // oslo acknowledges a request when it starts on it (at-most-once): a crash never runs it twice.
    incoming.acknowledge();
    const kind = incoming.expectsReply ? 'call' : 'cast';
    let method = typeof incoming.message.method === 'string' ? incoming.message.method : '?';
    const entry: Running = {
      incoming,
      finished: false,
      abort: async () => {
        if (entry.finished) return;
        entry.finished = true;
        stopHeartbeat();
        const err = new ServerStopped(`server ${this.target.server} stopped before ${method} finished`);
        await this.sendReply(incoming, { failure: serializeFailure(err) });
        this.finish(entry, method, kind, started, 'aborted', err);
      },
    };
    this.running.add(entry);
    let heartbeat: NodeJS.Timeout | undefined;
    const stopHeartbeat = () => { if (heartbeat) clearInterval(heartbeat); heartbeat = undefined; };
    if (incoming.expectsReply && incoming.callMonitorTimeout > 0) {
      heartbeat = setInterval(() => { incoming.heartbeat().catch(() => {}); }, Math.max(incoming.callMonitorTimeout / 2, 10));
    }
    let outcome: ServerRequestEvent['outcome'] = 'ok';
    let error: Error | undefined;
    let reply: { result: unknown } | { failure: ReturnType<typeof serializeFailure> };
    try {
      const req = parseRequest(incoming.message);
      method = req.method;
      const result = await this.dispatcher.dispatch(incoming.ctx, req);
      reply = { result };
    } catch (err) {
      error = err instanceof Error ? err : new Error(String(err));
      outcome = err instanceof HermodError && (err.code === 'HERMOD_ERR_MALFORMED_MESSAGE' || err.code === 'HERMOD_ERR_INVALID_ARGUMENT') ? 'invalid' : 'error';
      reply = { failure: serializeFailure(err, { includeTraceback: this.sendTraceback }) };
    }
    stopHeartbeat();
    if (entry.finished) return;
    entry.finished = true;
    if (incoming.expectsReply) {
      const problem = await this.sendReply(incoming, reply);
      if (problem && !error) { error = problem; outcome = 'error'; }
    }
    this.finish(entry, method, kind, started, outcome, error);
  }

  /** Sends a reply; a result that cannot be encoded becomes a failure the caller can read. */
  private async sendReply(incoming: IncomingMessage, reply: { result: unknown } | { failure: ReturnType<typeof serializeFailure> }): Promise<Error | undefined> {
    if (!incoming.expectsReply) return undefined;
    try {
      await incoming.reply(reply as never);
      return undefined;
    } catch (err) {
      const e = err instanceof Error ? err : new SerializationError(String(err));
      try {
        await incoming.reply({ failure: serializeFailure(e, { includeTraceback: this.sendTraceback }) });
      } catch {
        // The reply path itself is gone (caller vanished, connection lost): nothing to tell.
      }
      return e;
    }
  }

  private finish(entry: Running, method: string, kind: 'call' | 'cast', started: number,
    outcome: ServerRequestEvent['outcome'], error: Error | undefined): void {
    this.running.delete(entry);
    this.stats_.served++;
    if (outcome !== 'ok') this.stats_.failed++;
    entry.incoming.done();
    publish(channels.serverRequest, () => ({
      server: this.target.server!, topic: this.target.topic!, method, kind,
      durationMs: performance.now() - started, outcome, ...(error ? { error } : {}),
    }));
    const next = this.state === 'running' ? this.backlog.shift() : undefined;
    if (next) void this.process(next);
    this.checkIdle();
  }
}
