import { hostname } from 'node:os';
import { deferred } from '../core/deferred.js';
import { channels, publish, type ServerRequestEvent } from '../core/diagnostics.js';
import { assertMs, ClosedError, InvalidArgument } from '../core/errors.js';
import { NoOpSerializer, type Serializer } from '../core/serializer.js';
import { assertOptions } from '../core/suggest.js';
import { Target } from '../core/target.js';
import { ABORT_GRACE_MS, assertDeadline, deadlineTimer, type WaitResult, WorkPool } from '../core/work-pool.js';
import type { IncomingMessage, Listener } from '../driver/driver.js';
import { closeLateSubscription, settleStoppedSubscription, untilAborted } from '../driver/driver-base.js';
import { type JobNotifier, JobRunner, type JobStopStrategy } from '../jobs/runner.js';
import { HERMOD_NAMESPACE, runAlias } from '../jobs/token.js';
import type { Transport } from '../transport.js';
import { type AccessPolicy, methodNameList, RPCDispatcher } from './dispatcher.js';
import { IntrospectionEndpoint, QUIET_DESCRIBE, type ServerDescription } from './introspection.js';
import { type RequestHost, ServerRequest } from './request.js';

/** Options of an {@link RPCServer}. */
export interface RPCServerOptions {
  /**
   * Requests run at once; also the driver's prefetch / link credit, and the number of job
   * methods run at once (apart from requests: jobs beyond it wait `pending`).
   * @default config `rpc.serverConcurrency` (64)
   */
  concurrency?: number;
  /** Converts arguments and results. @default NoOpSerializer */
  serializer?: Serializer;
  /** Extra check on top of the built-in one (no `_private`, prototype or getter names). */
  accessPolicy?: AccessPolicy;
  /** Put stack traces into failures. @default config `rpc.sendTraceback` (false) */
  sendTraceback?: boolean;
  /** Serve the `hermod` namespace (`ping`, `describe`). @default config `rpc.introspection` (true) */
  introspection?: boolean;
  /** Check results against their contracts too. @default config `rpc.validateResults` (false) */
  validateResults?: boolean;
  /**
   * Every call not finished within this many ms becomes a job: its caller gets a job token and
   * the method runs on (README "Long operations"). Also the bound of methods marked long.
   * @default undefined: only methods marked long become jobs, after config `jobs.deferAfter`
   */
  deferAfter?: number;
  /** Methods that are long, on top of those each endpoint class lists in `static long = [...]`. */
  long?: string[];
  /** Gets `<method>.start` / `.end` / `.error` per job transition (a `Notifier`); none by default. */
  jobNotifier?: JobNotifier;
  /**
   * The namespace and version of the endpoints that declare no `target` of their own, here and
   * after {@link RPCServer.replaceEndpoints} (`hermod run` gives a service's `namespace` and
   * `version` so, without writing onto objects that may be shared or frozen).
   * @default no namespace, version 1.0
   */
  endpointTarget?: Target;
}

/** Options of {@link RPCServer.stop}. */
export interface StopOptions {
  /** Running jobs: `wait` for them (until the wait() deadline) or `abort` them. @default config `jobs.stopStrategy` */
  jobs?: JobStopStrategy;
}

const SERVER_OPTIONS: Record<keyof RPCServerOptions, true> = {
  concurrency: true,
  serializer: true,
  accessPolicy: true,
  sendTraceback: true,
  introspection: true,
  validateResults: true,
  deferAfter: true,
  long: true,
  jobNotifier: true,
  endpointTarget: true,
};
const STOP_OPTIONS: Record<keyof StopOptions, true> = { jobs: true };

/** Counters of a server, for `info`-style endpoints and tests. */
export interface ServerStats {
  /** Requests finished (successfully or not). */
  served: number;
  /** Requests whose method threw or that could not be dispatched. */
  failed: number;
  /**
   * Messages the driver settled without dispatching as requests: malformed (not oslo's envelope,
   * unreadable JSON, too deep, a prototype key), published on `hermod:message:invalid` too.
   */
  invalid: number;
  /**
   * Copies of a request already received (the same `_unique_id`, RabbitMQ), settled without
   * running the method a second time.
   */
  duplicates: number;
  /**
   * Requests whose ttl (AMQP 1.0: the time their caller had left) ran out while they waited for
   * a slot behind the server's concurrency: settled and not run, reported on
   * `hermod:rpc:server:request` with outcome `expired`. Not counted in `served`.
   */
  expired: number;
  /** Requests running now. */
  inFlight: number;
  /** Requests received but waiting for a concurrency slot. */
  queued: number;
  /** Requests ended by a stop deadline or abort(); their callers got ServerStopped. */
  aborted: number;
  /**
   * Jobs running now, waiting for a slot, and all held (with finished ones kept for `jobs.resultTtl`);
   * `uncollected`: during a stop, jobs that ended and whose outcome no poller has read yet (the
   * stop keeps answering polls for them, up to `jobs.stopLinger`).
   */
  jobs: { running: number; pending: number; held: number; uncollected: number };
}

/** `draining`: stopped for new work, still answering job polls while jobs end. */
type State = 'new' | 'starting' | 'running' | 'draining' | 'stopped';

/** How long a request refused while draining is held before it goes back to the broker (no hot requeue loop). */
const HOLD_BACK_MS = 200;

/**
 * Serves RPC requests for one target (topic + server name) by dispatching them to endpoint
 * objects. The lifecycle every hermod service shares: `start()` subscribes, `stop()` takes no
 * new work at once (queued requests go back to the broker), `wait(deadline)` lets running
 * requests finish and aborts the rest at the deadline, `abort()` ends them now, `stats()`.
 */
export class RPCServer {
  /** Topic, server name and exchange the server listens on. */
  readonly target: Target;
  private readonly host: RequestHost;
  private dispatcher: RPCDispatcher;
  /** Dispatches not yet settled, per dispatcher (the current one and any a reload replaced). */
  private readonly runningOn = new Map<RPCDispatcher, number>();
  /** replaceEndpoints() promises waiting for a replaced dispatcher's last dispatch. */
  private readonly retiring = new Map<RPCDispatcher, Array<() => void>>();
  private readonly makeDispatcher: (endpoints: readonly object[]) => RPCDispatcher;
  private readonly concurrency: number;
  private readonly pool: WorkPool<ServerRequest>;
  private listener: Listener | undefined;
  /** A subscription a stop during start() did not wait for (closed by wait()). */
  private late: Promise<Listener | undefined> | undefined;
  /** Something was delivered before start() had its subscription: `late` may hold its acknowledgements. */
  private deliveredEarly = false;
  /** wait() has closed the subscription, or found none yet: one start() gets from now on is closed at once. */
  private released = false;
  private state: State = 'new';
  /** Settled by the first stop(): wait() called earlier waits for it. */
  private readonly stopCalled = deferred();
  /** Aborted by stop(): a subscription still being made gives up at once. */
  private readonly stopping = new AbortController();
  private readonly counts = { served: 0, failed: 0, invalid: 0, duplicates: 0, expired: 0 };
  private readonly jobs: JobRunner;
  private readonly heldBack = new Map<NodeJS.Timeout, IncomingMessage>();
  private startedAt = 0;

  constructor(
    /** The transport the server listens on. */
    readonly transport: Transport,
    target: Target,
    endpoints: readonly object[],
    options: RPCServerOptions = {},
  ) {
    if (!(target instanceof Target)) throw new InvalidArgument('RPCServer needs a Target');
    assertOptions(options, SERVER_OPTIONS, 'RPCServer options');
    if (options.endpointTarget !== undefined && !(options.endpointTarget instanceof Target))
      throw new InvalidArgument('RPCServer option endpointTarget must be a Target');
    target.assertListenable();
    this.target = target;
    const conf = transport.config.rpc;
    // 0 is "a token at once"; a negative or NaN one made every method a job after a tick.
    assertMs('deferAfter', options.deferAfter, true);
    const concurrency = options.concurrency;
    // Larger than a prefetch count is allowed (RabbitMQ's prefetch is then capped at 65,535), but
    // not past AMQP 1.0's 32-bit credit: 1e300 was taken as a work pool of that size.
    if (concurrency !== undefined && (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 0xffff_ffff))
      throw new InvalidArgument(`RPCServer option concurrency must be a whole number from 1 to 4294967295, got ${String(concurrency)}`);
    this.concurrency = concurrency ?? conf.serverConcurrency;
    this.pool = new WorkPool(this.concurrency);
    const introspect = (options.introspection ?? conf.introspection) && Array.isArray(endpoints) && endpoints.length > 0;
    const jc = transport.config.jobs;
    const server = this;
    const jobs: JobRunner = new JobRunner(
      {
        server: target.server!,
        topic: target.topic!,
        exchange: target.exchange ?? transport.config.controlExchange,
        max: jc.max,
        concurrency: this.concurrency,
        resultTtl: jc.resultTtl,
        maxResultBytes: jc.maxResultBytes,
        maxPendingBytes: jc.maxPendingBytes,
        maxMessageSize: transport.config.maxMessageSize,
        quotedReplies: transport.driver.quotesResults,
        longDeferAfter: jc.deferAfter,
        deferAfter: options.deferAfter,
        long: options.long ?? [],
        stopStrategy: jc.stopStrategy,
        stopLinger: jc.stopLinger,
        pollMax: jc.pollMax,
        notifier: options.jobNotifier,
      },
      (req): { endpoint: object; long: boolean } => server.dispatcher.resolve(req),
    );
    this.jobs = jobs;
    // The application's endpoints plus hermod's own (jobs, introspection), for the constructor and
    // for replaceEndpoints().
    this.makeDispatcher = (eps) => {
      const withJobs: readonly object[] = Array.isArray(eps) && eps.length > 0 ? [...eps, jobs.endpoint] : eps;
      const intro = introspect ? new IntrospectionEndpoint(() => this.describe()) : undefined;
      const served = intro ? [...withJobs, intro] : withJobs;
      return new RPCDispatcher(served, options.serializer ?? new NoOpSerializer(), options.accessPolicy, {
        validateResults: options.validateResults ?? conf.validateResults,
        ...(intro ? { everywhere: { name: QUIET_DESCRIBE, endpoint: intro, method: 'describe' } } : {}),
        ...(options.endpointTarget ? { defaultTarget: options.endpointTarget } : {}),
      });
    };
    this.dispatcher = this.makeDispatcher(endpoints);
    // A name no endpoint serves made nothing long, silently: its callers then timed out.
    if (options.long !== undefined) {
      for (const m of methodNameList(options.long, 'RPCServer option long')) {
        if (!this.dispatcher.serves(m)) throw new InvalidArgument(`RPCServer option long names ${m}, which no endpoint serves`);
      }
    }
    this.host = {
      target,
      exchange: target.exchange ?? transport.config.controlExchange,
      jobs,
      get dispatcher() {
        return server.dispatcher;
      },
      dispatch: (ctx, req) => {
        // Read when a request starts: one already running keeps the dispatcher it began with,
        // and is counted against it until it settles (replaceEndpoints' promise waits for that).
        const d = this.dispatcher;
        this.runningOn.set(d, (this.runningOn.get(d) ?? 0) + 1);
        const p = d.dispatch(ctx, req);
        const settled = () => this.settledOn(d);
        p.then(settled, settled);
        return p;
      },
      sendTraceback: options.sendTraceback ?? conf.sendTraceback,
      finished: (outcome: ServerRequestEvent['outcome']) => {
        if (outcome === 'expired') {
          this.counts.expired++;
          return;
        }
        this.counts.served++;
        if (outcome !== 'ok') this.counts.failed++;
      },
    };
  }

  /**
   * Swaps the endpoints (hot reload): requests that start from now on go to `endpoints`; those
   * already running finish on the old ones. The subscription is untouched. Throws what the
   * constructor would for bad endpoints, keeping the old ones. Resolves once no method runs on
   * the old endpoints any more (a job started on them included): only then may what they use
   * (a pool, a file) be closed.
   */
  replaceEndpoints(endpoints: readonly object[]): Promise<void> {
    const old = this.dispatcher;
    this.dispatcher = this.makeDispatcher(endpoints);
    if (!this.runningOn.has(old)) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const list = this.retiring.get(old);
      if (list) list.push(resolve);
      else this.retiring.set(old, [resolve]);
    });
  }

  /** A dispatch on `d` settled: the last one on endpoints that were replaced frees them. */
  private settledOn(d: RPCDispatcher): void {
    const n = (this.runningOn.get(d) ?? 1) - 1;
    if (n > 0) {
      this.runningOn.set(d, n);
      return;
    }
    this.runningOn.delete(d);
    const waiting = this.retiring.get(d);
    if (waiting) {
      this.retiring.delete(d);
      for (const resolve of waiting) resolve();
    }
  }

  /** Counters since start. */
  stats(): ServerStats {
    const { inFlight, queued, aborted } = this.pool.stats();
    return {
      ...this.counts,
      inFlight,
      queued,
      aborted,
      jobs: {
        running: this.jobs.active - this.jobs.pending,
        pending: this.jobs.pending,
        held: this.jobs.store.size,
        uncollected: this.jobs.uncollected,
      },
    };
  }

  /** What `hermod.describe` answers: the target, load, counters, endpoints and their contracts. */
  describe(): ServerDescription {
    const t = this.target;
    return {
      server: t.server!,
      topic: t.topic!,
      // The exchange it listens on: the control exchange when the target names none.
      exchange: t.exchange ?? this.transport.config.controlExchange,
      host: hostname(),
      pid: process.pid,
      concurrency: this.concurrency,
      uptimeMs: this.startedAt === 0 ? 0 : Math.round(performance.now() - this.startedAt),
      stats: { ...this.stats() },
      endpoints: this.host.dispatcher.describe(),
    };
  }

  /**
   * Subscribes to the target's topic, server and fanout addresses. A {@link stop} while this
   * waits for the connection ends the wait: start() then resolves with nothing subscribed.
   */
  async start(): Promise<void> {
    if (this.state === 'running' || this.state === 'starting') return;
    if (this.state === 'stopped' || this.state === 'draining')
      throw new ClosedError('a stopped RPCServer cannot be started again; make a new one');
    this.state = 'starting';
    let listener: Listener;
    let listening: Promise<Listener> | undefined;
    try {
      listening = this.transport.driver.listen(this.target, {
        prefetch: this.concurrency,
        onMessage: (m) => this.onMessage(m),
        onInvalid: (error, raw) => {
          this.counts.invalid++;
          publish(channels.invalidMessage, { where: `server ${this.target.server}`, error, size: raw.size });
        },
        onDuplicate: () => this.counts.duplicates++,
        signal: this.stopping.signal,
        // Several processes may serve one server name and share its queue; each holds its own
        // jobs, and their polls find it here.
        alias: runAlias(this.jobs.instance),
      });
      listener = await untilAborted(listening, this.stopping.signal);
    } catch (err) {
      if ((this.state as State) === 'stopped') {
        // Requests it delivered meanwhile may be running: wait() closes it after them.
        // One that delivered nothing is closed as it arrives (a driver that does not watch the
        // abort, AMQP 1.0's, would otherwise consume for a stopped server until wait()); one
        // that did stops consuming and is closed by wait() after the drain.
        this.late = listening?.then(
          (l) => settleStoppedSubscription(l, this.released || !this.deliveredEarly),
          () => undefined,
        );
        return;
      }
      if (this.state === 'starting') this.state = 'new';
      throw err;
    }
    this.listener = listener;
    // stop() came while subscribing. Closed now when nothing came through it, or wait() is past
    // its close; else it stops consuming and wait() closes it once the requests it delivered
    // meanwhile are answered and acknowledged (closed here, they were delivered again).
    if ((this.state as State) === 'stopped') await settleStoppedSubscription(listener, this.released || !this.deliveredEarly);
    else {
      this.state = 'running';
      this.startedAt = performance.now();
    }
  }

  /**
   * Stops taking new requests, at once and in any connection state: a subscription still being
   * made is given up, queued requests go back to the broker (for another server of the topic),
   * running ones go on (see {@link wait}).
   */
  async stop(options: StopOptions = {}): Promise<void> {
    assertOptions(options, STOP_OPTIONS, 'stop() options');
    this.stopCalled.resolve();
    if (this.state === 'draining') return;
    // Told in every case: a call still running must not become a job past this point.
    if (!this.jobs.isStopping) this.jobs.beginStop(options.jobs);
    if (this.state === 'running' && this.jobs.active > 0) {
      // The subscription stays so that pollers can follow the jobs to their end: wait() ends it.
      this.state = 'draining';
      this.pool.requeueBacklog();
      return;
    }
    await this.stopTaking();
  }

  /** The end of a stop: the subscription stops, and so does the pool; what is queued goes back. */
  private async stopTaking(): Promise<void> {
    const wasRunning = this.state === 'running' || this.state === 'draining';
    this.state = 'stopped';
    this.stopping.abort();
    this.pool.close();
    if (wasRunning) await this.listener?.stop();
    this.pool.requeueBacklog();
    this.releaseHeldBack();
  }

  /**
   * Waits until running requests finish. Past `deadlineMs` (default config `rpc.stopTimeout`;
   * `Infinity`: as long as they run) the rest are aborted: their callers get a ServerStopped failure and late results are dropped.
   * After a stop() it then releases the subscription. Returns within `deadlineMs` plus about 1 s
   * (the aborts' replies get up to 1 s; a broker that has not answered the consumer cancels of
   * stop() gets no second grace for the close handshake), whatever the broker does.
   * Called before stop(), it first waits for stop() (as oslo.messaging's does), and the deadline
   * counts from there: it never ends the requests of a server that is still serving.
   */
  async wait(deadlineMs: number = this.transport.config.rpc.stopTimeout): Promise<WaitResult> {
    assertDeadline(deadlineMs);
    await this.stopCalled.promise;
    const started = performance.now();
    let jobs: WaitResult = { completed: 0, aborted: 0 };
    // Aborted requests answer ServerStopped through the broker; one that blocked publishing (a
    // resource alarm) takes none of those answers, so they get no grace.
    const grace = () => (this.transport.state.state === 'blocked' ? 0 : ABORT_GRACE_MS);
    let calls: Promise<WaitResult> | undefined;
    if (this.state === 'draining') {
      // The plain calls still running end at the deadline, as the jobs do: drained after the
      // jobs' settle, they waited out its linger for pollers too (up to jobs.pollMax + 1 s more).
      // Cut there only, so that the counts stay those of a drain after the settle.
      const cut = deadlineTimer(deadlineMs, () => {
        calls = this.pool.drain(0, grace());
      });
      jobs = await this.jobs.settle(deadlineMs);
      clearTimeout(cut);
      // Not stop(): it would drain again if a job had come meanwhile, and return with the
      // subscription still open.
      await this.stopTaking();
    }
    const result = await (calls ?? this.pool.drain(Math.max(0, deadlineMs - (performance.now() - started)), grace()));
    if (this.state === 'stopped') {
      // Before the close: a start() that gets its subscription after this (wait() came first,
      // or with an empty pool overtook start()'s last turns) closes it itself.
      this.released = true;
      if (this.listener) await this.listener.close();
      // A subscription that delivered nothing (one still dialing a silent peer) is not waited for.
      else if (this.late) await closeLateSubscription(this.late, this.deliveredEarly ? ABORT_GRACE_MS : 0);
      jobs.aborted += this.jobs.close();
    }
    return { completed: result.completed + jobs.completed, aborted: result.aborted + jobs.aborted };
  }

  /**
   * The abort strategy: stops taking work and ends what is running now; those callers get a
   * ServerStopped failure and late results are dropped. Resolves with how many were aborted.
   */
  async abort(): Promise<WaitResult> {
    await this.stop({ jobs: 'abort' });
    return this.wait(0);
  }

  private onMessage(incoming: IncomingMessage): void {
    if (this.listener === undefined) this.deliveredEarly = true;
    if (this.state === 'draining') {
      // Job polls are answered to the end of the stop, outside the (closed) pool: they are instant.
      if (incoming.message.namespace === HERMOD_NAMESPACE && incoming.expectsReply) void new ServerRequest(incoming, this.host).run();
      else this.holdBack(incoming);
      return;
    }
    if (this.state !== 'running') {
      incoming.requeue();
      return;
    }
    this.pool.submit(new ServerRequest(incoming, this.host));
  }

  /** A request a draining server will not run goes back to the broker, after a pause (see HOLD_BACK_MS). */
  private holdBack(incoming: IncomingMessage): void {
    const timer = setTimeout(() => {
      this.heldBack.delete(timer);
      incoming.requeue();
    }, HOLD_BACK_MS);
    this.heldBack.set(timer, incoming);
  }

  private releaseHeldBack(): void {
    for (const [timer, incoming] of this.heldBack) {
      clearTimeout(timer);
      incoming.requeue();
    }
    this.heldBack.clear();
  }
}
