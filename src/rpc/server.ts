import { channels, publish, type ServerRequestEvent } from '../core/diagnostics.js';
import { ClosedError, InvalidArgument } from '../core/errors.js';
import { NoOpSerializer, type Serializer } from '../core/serializer.js';
import { Target } from '../core/target.js';
import { type WaitResult, WorkPool } from '../core/work-pool.js';
import type { IncomingMessage, Listener } from '../driver/driver.js';
import { untilAborted } from '../driver/driver-base.js';
import type { Transport } from '../transport.js';
import { type AccessPolicy, RPCDispatcher } from './dispatcher.js';
import { type RequestHost, ServerRequest } from './request.js';

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
  /** Requests ended by a stop deadline or abort(); their callers got ServerStopped. */
  aborted: number;
}

type State = 'new' | 'starting' | 'running' | 'stopped';

/**
 * Serves RPC requests for one target (topic + server name) by dispatching them to endpoint
 * objects. The lifecycle every hermod service shares: `start()` subscribes, `stop()` takes no
 * new work at once (queued requests go back to the broker), `wait(deadline)` lets running
 * requests finish and aborts the rest at the deadline, `abort()` ends them now, `stats()`.
 */
export class RPCServer {
  readonly target: Target;
  private readonly host: RequestHost;
  private dispatcher: RPCDispatcher;
  private readonly makeDispatcher: (endpoints: readonly object[]) => RPCDispatcher;
  private readonly concurrency: number;
  private readonly pool: WorkPool<ServerRequest>;
  private listener: Listener | undefined;
  private state: State = 'new';
  /** Aborted by stop(): a subscription still being made gives up at once. */
  private readonly stopping = new AbortController();
  private readonly counts = { served: 0, failed: 0 };

  constructor(
    readonly transport: Transport,
    target: Target,
    endpoints: readonly object[],
    options: RPCServerOptions = {},
  ) {
    if (!(target instanceof Target)) throw new InvalidArgument('RPCServer needs a Target');
    target.assertListenable();
    this.target = target;
    const conf = transport.config.rpc;
    this.concurrency = options.concurrency ?? conf.serverConcurrency;
    this.pool = new WorkPool(this.concurrency);
    this.makeDispatcher = (eps) => new RPCDispatcher(eps, options.serializer ?? new NoOpSerializer(), options.accessPolicy);
    this.dispatcher = this.makeDispatcher(endpoints);
    const server = this;
    this.host = {
      target,
      // Read when a request starts: one already running keeps the dispatcher it began with.
      get dispatcher() {
        return server.dispatcher;
      },
      sendTraceback: options.sendTraceback ?? conf.sendTraceback,
      finished: (outcome: ServerRequestEvent['outcome']) => {
        this.counts.served++;
        if (outcome !== 'ok') this.counts.failed++;
      },
    };
  }

  /**
   * Swaps the endpoints (hot reload): requests that start from now on go to `endpoints`; those
   * already running finish on the old ones. The subscription is untouched. Throws what the
   * constructor would for bad endpoints, keeping the old ones.
   */
  replaceEndpoints(endpoints: readonly object[]): void {
    this.dispatcher = this.makeDispatcher(endpoints);
  }

  /** Counters since start. */
  stats(): ServerStats {
    const { inFlight, queued, aborted } = this.pool.stats();
    return { ...this.counts, inFlight, queued, aborted };
  }

  /**
   * Subscribes to the target's topic, server and fanout addresses. A {@link stop} while this
   * waits for the connection ends the wait: start() then resolves with nothing subscribed.
   */
  async start(): Promise<void> {
    if (this.state === 'running' || this.state === 'starting') return;
    if (this.state === 'stopped') throw new ClosedError('a stopped RPCServer cannot be started again; make a new one');
    this.state = 'starting';
    let listener: Listener;
    try {
      const listening = this.transport.driver.listen(this.target, {
        prefetch: this.concurrency,
        onMessage: (m) => this.onMessage(m),
        onInvalid: (error, raw) => publish(channels.invalidMessage, { where: `server ${this.target.server}`, error, size: raw.size }),
        signal: this.stopping.signal,
      });
      listener = await untilAborted(listening, this.stopping.signal);
    } catch (err) {
      if ((this.state as State) === 'stopped') return;
      if (this.state === 'starting') this.state = 'new';
      throw err;
    }
    this.listener = listener;
    // stop() came while subscribing: the subscription it could not cancel ends here.
    if ((this.state as State) === 'stopped') await listener.close();
    else this.state = 'running';
  }

  /**
   * Stops taking new requests, at once and in any connection state: a subscription still being
   * made is given up, queued requests go back to the broker (for another server of the topic),
   * running ones go on (see {@link wait}).
   */
  async stop(): Promise<void> {
    const wasRunning = this.state === 'running';
    this.state = 'stopped';
    this.stopping.abort();
    this.pool.close();
    if (wasRunning) await this.listener?.stop();
    this.pool.requeueBacklog();
  }

  /**
   * Waits until running requests finish. Past `deadlineMs` (default config `rpc.stopTimeout`)
   * the rest are aborted: their callers get a ServerStopped failure and late results are dropped.
   * After a stop() it then releases the subscription. Returns within `deadlineMs` plus about 2 s
   * (the aborts' replies and the close handshake are bounded), whatever the broker does.
   */
  async wait(deadlineMs: number = this.transport.config.rpc.stopTimeout): Promise<WaitResult> {
    const result = await this.pool.drain(deadlineMs);
    if (this.state === 'stopped') await this.listener?.close();
    return result;
  }

  /**
   * The abort strategy: stops taking work and ends what is running now; those callers get a
   * ServerStopped failure and late results are dropped. Resolves with how many were aborted.
   */
  async abort(): Promise<WaitResult> {
    await this.stop();
    return this.wait(0);
  }

  private onMessage(incoming: IncomingMessage): void {
    if (this.state !== 'running') {
      incoming.requeue();
      return;
    }
    this.pool.submit(new ServerRequest(incoming, this.host));
  }
}
