/**
 * The services of one process of `hermod run`: an RPCServer per service, one transport per
 * distinct configuration (services with the same configuration share a connection), hot reload
 * when asked, one JSON log line per request. Its lifecycle is every server's: start, stop (no new
 * work), wait(deadline), abort.
 */
import * as diagnostics_channel from 'node:diagnostics_channel';
import type { HermodConfig } from '../../config/index.js';
import { deferred } from '../../core/deferred.js';
import type { ServerRequestEvent } from '../../core/diagnostics.js';
import { ConfigError } from '../../core/errors.js';
import { commonJsSyntaxHint } from '../../core/syntax-check.js';
import { Target } from '../../core/target.js';
import { RPCDispatcher } from '../../rpc/dispatcher.js';
import { RPCServer } from '../../rpc/server.js';
import { getTransport, type Transport } from '../../transport.js';
import {
  type EndpointContext,
  loadEndpoints,
  loadErrorLocation,
  loadErrorMessage,
  MODULE_LOAD_TIMEOUT_MS,
  withinLoadBound,
} from '../load-endpoints.js';
import { PresenceBeacon, type PresenceBeaconOptions } from '../status/beacon.js';
import type { ServiceSpec } from './config.js';
import { EndpointReloader, type WatchOptions } from './reloader.js';
import type { RunLogger } from './types.js';

/** What a {@link ServiceGroup} runs. */
export interface GroupOptions {
  /** The services this process serves. */
  services: readonly ServiceSpec[];
  /** This process's worker number (1…N) under workers; undefined for a single process. */
  worker?: number;
  /** Worker count of a service: above 1, its server name gets `-<worker>`. */
  workersOf(service: ServiceSpec): number;
  /** The validated configuration of a service. */
  configFor(service: ServiceSpec): HermodConfig;
  log: RunLogger;
  /** Hot reload; false or absent: modules load once. */
  watch?: WatchOptions | false;
  /**
   * Asked before each failed request's line: false, and the line is not written. Peers cause
   * failures at will (casts of an unknown method), so the bins bound them (lineBudget). Absent:
   * every failure is logged.
   */
  failureLines?: () => boolean;
  /** Presence beacons of every server (for `hermod status`); false or absent: none. */
  beacons?: PresenceBeaconOptions | false;
  /**
   * Reloads (all services together) after which this process asks to be replaced, since every
   * reload leaves its modules in memory; asked again after each further reload. 0 or absent: never.
   */
  recycleAfter?: number;
  /** Called with the reloads so far once they reach `recycleAfter`, and after each further one. */
  onRecycle?: (reloads: number) => void;
}

interface Running {
  spec: ServiceSpec;
  server: RPCServer;
  /** What its endpoint factories get, and its log fields: a reload on SIGHUP needs them. */
  ctx: EndpointContext;
  fields: Record<string, unknown>;
  reloader?: EndpointReloader;
  /** The `dispose` exports of the modules loaded at start without a reloader, for the first SIGHUP's. */
  disposers: ReadonlyArray<() => unknown>;
  beacon?: PresenceBeacon;
}

/**
 * The RPCServer options that give endpoints declaring no `target` the service's namespace and
 * version. An option, not a `target` written onto each endpoint: an object a module exports is
 * one object for every service that loads the module (the second service served in the first
 * one's namespace), and a frozen one could not take it.
 */
function serviceTargetOptions(spec: ServiceSpec): { endpointTarget?: Target } {
  if (spec.namespace === undefined && spec.version === undefined) return {};
  return { endpointTarget: new Target({ namespace: spec.namespace, version: spec.version ?? '1.0' }) };
}

/** How a {@link ServiceGroup.reload} pass ended: services serving new code, and services whose modules did not load (they serve the old code). */
export interface GroupReload {
  took: number;
  failed: number;
}

/** One process's services. */
export class ServiceGroup {
  private readonly running: Running[] = [];
  private readonly transports = new Map<string, Transport>();
  private readonly names = new Map<string, string>();
  private stopping = false;
  /** The beacons' goodbyes, sent by stop(): wait() lets them go out before it closes the connections. */
  private goodbyes: Promise<unknown> = Promise.resolve();
  private reloads = 0;
  /** The reload pass running, and the one queued after it. */
  private reloadRunning: Promise<GroupReload> | undefined;
  private reloadQueued: Promise<GroupReload> | undefined;
  /**
   * Settles when start() has ended (every service serving, or failed, or stopped): a reload
   * pass waits for it. One asked for while the services started (SIGHUP while the broker was not
   * there yet) reloaded those started so far, said every service served the new code, and the
   * services started after it kept the old.
   */
  private readonly startEnded = deferred();
  private startCalled = false;
  private startOver = false;
  private readonly onRequest = (e: unknown) => this.logRequest(e as ServerRequestEvent);

  constructor(private readonly options: GroupOptions) {}

  /** The server name a service runs under in this process. */
  serverName(spec: ServiceSpec): string {
    return this.options.workersOf(spec) > 1 && this.options.worker !== undefined ? `${spec.server}-${this.options.worker}` : spec.server;
  }

  /** Connects, loads every service's endpoints and subscribes; a stop() meanwhile ends it early. */
  async start(): Promise<void> {
    this.startCalled = true;
    try {
      await this.startServices();
    } finally {
      this.startOver = true;
      this.startEnded.resolve();
    }
  }

  /** Whether start() is still under way (a reload asked for now waits for it). */
  get starting(): boolean {
    return this.startCalled && !this.startOver;
  }

  private async startServices(): Promise<void> {
    const { log, watch, worker } = this.options;
    diagnostics_channel.subscribe('hermod:rpc:server:request', this.onRequest);
    // Every service's modules load before any service starts: one that does not load stops the
    // run before anything serves (it started the services before it, then died with exit 1).
    const loaded: Array<{ endpoints: object[]; disposers: ReadonlyArray<() => unknown>; reloader: EndpointReloader | undefined }> = [];
    const loadedCtx: EndpointContext[] = [];
    for (const spec of this.options.services) {
      if (this.stopping) return;
      const server = this.serverName(spec);
      const fields = { service: spec.name, ...(worker === undefined ? {} : { worker }), topic: spec.topic, server };
      // The modules get the transport their service is served on (getTransport connects nothing yet).
      const transport = await this.transportFor(this.options.configFor(spec));
      const ctx: EndpointContext = {
        server,
        topic: spec.topic,
        service: spec.name,
        ...(worker === undefined ? {} : { worker }),
        transport,
      };
      loadedCtx.push(ctx);
      const reloader = watch ? new EndpointReloader(spec.endpoints, ctx, log, watch, fields) : undefined;
      try {
        // Bounded as a reload is: a module that never finished loading left the service silent.
        const bound = (watch ? watch.reloadTimeoutMs : undefined) ?? MODULE_LOAD_TIMEOUT_MS;
        // A reloader keeps its modules' disposers itself.
        const { endpoints, disposers } = reloader
          ? { endpoints: await withinLoadBound(reloader.load(), bound, spec.endpoints.join(', ')), disposers: [] }
          : await loadEndpoints(spec.endpoints, ctx, bound);
        // What RPCServer refuses (a contract naming no method, a target that is not a Target) is
        // refused here too, with the load failures: it threw once the services before it served.
        // (The service's own namespace and version, given as an option, cannot be refused.)
        try {
          new RPCDispatcher(endpoints);
        } catch (err) {
          // The stack is hermod's own: the place is the service's modules.
          throw Object.assign(err as Error, { location: spec.endpoints.join(', ') });
        }
        loaded.push({ endpoints, disposers, reloader });
      } catch (err) {
        throw await loadFailure(err, spec);
      }
    }
    for (const [i, spec] of this.options.services.entries()) {
      if (this.stopping) return;
      const server = this.serverName(spec);
      const fields = { service: spec.name, ...(worker === undefined ? {} : { worker }), topic: spec.topic, server };
      const { endpoints, disposers, reloader } = loaded[i]!;
      const config = this.options.configFor(spec);
      // The one its modules were given when they loaded.
      const ctx = loadedCtx[i]!;
      const transport = ctx.transport;
      const target = new Target({ topic: spec.topic, server, ...(spec.exchange ? { exchange: spec.exchange } : {}) });
      const rpc = new RPCServer(transport, target, endpoints, {
        ...(spec.concurrency ? { concurrency: spec.concurrency } : {}),
        ...serviceTargetOptions(spec),
      });
      this.running.push({ spec, server: rpc, ctx, fields, disposers, ...(reloader ? { reloader } : {}) });
      this.names.set(`${spec.topic}\0${server}`, spec.name);
      if (this.stopping) return;
      // Watching starts before consuming, and an edit made since the load is taken in first: a
      // recycled worker's replacement must not answer with older code than the worker it replaces.
      await reloader?.start({
        replaceEndpoints: (eps) => {
          const retired = rpc.replaceEndpoints(eps);
          this.reloaded();
          return retired;
        },
      });
      await reloader?.idle();
      if (this.stopping) return;
      await rpc.start();
      if (this.stopping) return;
      if (this.options.beacons) {
        const running = this.running.at(-1)!;
        running.beacon = new PresenceBeacon(rpc, this.options.beacons);
        running.beacon.start();
      }
      log.info(
        `serving ${spec.name}: topic ${spec.topic} as ${server} on ${transport.url} (exchange ${target.exchange ?? config.controlExchange}, ${endpoints.length} endpoint(s)${reloader ? ', watching' : ''})`,
        { ...fields, event: 'serving' },
      );
    }
  }

  /** What is still running, for the shutdown log; empty when nothing is. */
  pending(): string {
    let n = 0;
    for (const r of this.running) {
      const s = r.server.stats();
      n += s.inFlight + s.queued;
    }
    return n > 0 ? `${n} in-flight request(s)` : '';
  }

  /** Requests aborted so far (by a deadline or abort()). */
  aborted(): number {
    return this.running.reduce((n, r) => n + r.server.stats().aborted, 0);
  }

  /** Whether a server is still answering polls of jobs that ended during its stop, unread yet. */
  lingering(): boolean {
    return this.running.some((r) => r.server.stats().jobs.uncollected > 0);
  }

  /** The running servers, by service name (for tests and introspection). */
  servers(): ReadonlyMap<string, RPCServer> {
    return new Map(this.running.map((r) => [r.spec.name, r.server]));
  }

  /** Reload counters, by service name. */
  reloaders(): ReadonlyMap<string, EndpointReloader> {
    return new Map(this.running.filter((r) => r.reloader).map((r) => [r.spec.name, r.reloader!]));
  }

  /**
   * Imports every running service's endpoint modules again and swaps them in, as a save under
   * hot reload does (what SIGHUP does): calls already running finish on the old code, and a
   * module that does not load is logged and leaves the old code serving. Asked while a reload
   * runs, one more pass follows it (requests made meanwhile share that pass: `pending`), so the
   * files as they are after the last request are what serves. `done` resolves with how many
   * services serve new code and how many failed to load.
   */
  reload(): { state: 'started' | 'queued' | 'pending'; done: Promise<GroupReload> } {
    if (this.reloadQueued) return { state: 'pending', done: this.reloadQueued };
    if (this.reloadRunning) {
      const queued = this.reloadRunning.then(() => {
        this.reloadQueued = undefined;
        return this.reloadPass();
      });
      this.reloadQueued = queued;
      return { state: 'queued', done: queued };
    }
    return { state: 'started', done: this.reloadPass() };
  }

  private reloadPass(): Promise<GroupReload> {
    const started = this.startCalled ? this.startEnded.promise : Promise.resolve();
    const pass: Promise<GroupReload> = started
      .then(() => this.reloadAll())
      .finally(() => {
        if (this.reloadRunning === pass) this.reloadRunning = undefined;
      });
    this.reloadRunning = pass;
    return pass;
  }

  private async reloadAll(): Promise<GroupReload> {
    let took = 0;
    let failed = 0;
    for (const r of [...this.running]) {
      if (this.stopping) break;
      if (!r.reloader) {
        // A run that does not watch loaded its modules once; it reloads through the same path
        // as a watched one, without the watcher.
        r.reloader = new EndpointReloader(r.spec.endpoints, r.ctx, this.options.log, {}, r.fields);
        r.reloader.attach(
          {
            replaceEndpoints: (eps) => {
              const retired = r.server.replaceEndpoints(eps);
              this.reloaded();
              return retired;
            },
          },
          r.disposers,
        );
      }
      if (await r.reloader.reloadNow()) took++;
      else if (!this.stopping) failed++;
    }
    return { took, failed };
  }

  /**
   * Takes no new work, at once: watchers closed, every server stopped. The beacons' goodbyes are
   * sent meanwhile, not waited for here: with no status view to take one, a goodbye takes up to
   * twice the beacon's bound (600 ms), and awaited before wait() it pushed the abort of calls
   * still running at the deadline past the CLIs' backstop, so they never got ServerStopped.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.goodbyes = Promise.all(this.running.map((r) => r.beacon?.stop()));
    await Promise.all(this.running.map(async (r) => Promise.all([r.reloader?.close(), r.server.stop()])));
  }

  /** Waits up to `deadlineMs` for running requests, then closes; resolves with how many were aborted. */
  async wait(deadlineMs: number): Promise<number> {
    const results = await Promise.all(this.running.map((r) => r.server.wait(deadlineMs)));
    await this.goodbyes;
    await this.close();
    return results.reduce((n, r) => n + r.aborted, 0);
  }

  /** Ends everything now. */
  async abort(): Promise<void> {
    this.stopping = true;
    for (const r of this.running) r.beacon?.abort();
    await Promise.all(this.running.map(async (r) => Promise.all([r.reloader?.close(), r.server.abort()])));
    await this.close();
  }

  private reloaded(): void {
    this.reloads++;
    const { recycleAfter, onRecycle } = this.options;
    if (recycleAfter && this.reloads >= recycleAfter && !this.stopping) onRecycle?.(this.reloads);
  }

  private async close(): Promise<void> {
    diagnostics_channel.unsubscribe('hermod:rpc:server:request', this.onRequest);
    await Promise.all([...this.transports.values()].map((t) => t.close()));
  }

  private async transportFor(config: HermodConfig): Promise<Transport> {
    const key = JSON.stringify(config);
    let t = this.transports.get(key);
    if (!t) {
      t = await getTransport(undefined, { config });
      this.transports.set(key, t);
    }
    return t;
  }

  private logRequest(ev: ServerRequestEvent): void {
    const service = this.names.get(`${ev.topic}\0${ev.server}`);
    if (service === undefined) return;
    if (ev.outcome !== 'ok' && this.options.failureLines?.() === false) return;
    const { worker } = this.options;
    const fields = {
      service,
      ...(worker === undefined ? {} : { worker }),
      topic: ev.topic,
      server: ev.server,
      kind: ev.kind,
      method: ev.method,
      durationMs: Math.round(ev.durationMs * 10) / 10,
      outcome: ev.outcome,
      ...(ev.requestId === undefined ? {} : { requestId: ev.requestId }),
      ...(ev.error ? { error: `${ev.error.name}: ${ev.error.message}` } : {}),
    };
    const line = `${ev.kind} ${ev.method} ${ev.outcome} ${fields.durationMs}ms`;
    if (ev.outcome === 'ok') this.options.log.info(line, fields);
    else this.options.log.warn(line, fields);
  }
}

/**
 * A service's module that did not load, as a ConfigError (exit 2, as rpc-server's `--endpoints`)
 * naming the service, the file and line, and the reason in one line.
 */
async function loadFailure(err: unknown, spec: ServiceSpec): Promise<Error> {
  // The module's own mistake (an export that is no endpoint) names its file: the service is added.
  if (err instanceof ConfigError)
    return new ConfigError(`services.${spec.name}.endpoints: ${err.message}`, { key: `services.${spec.name}.endpoints`, cause: err });
  const where = (err as { location?: string }).location ?? (await loadErrorLocation(err, spec.endpoints));
  const name = err instanceof Error ? err.name : 'Error';
  const message = loadErrorMessage(err);
  return new ConfigError(`services.${spec.name}.endpoints: ${where}: ${name}: ${message}${commonJsSyntaxHint(message, where)}`, {
    key: `services.${spec.name}.endpoints`,
    cause: err,
  });
}
