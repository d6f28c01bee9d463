/**
 * What REST and JSON-RPC share: the route table (declared routes, compiled schemas, the mapping
 * policy), role checks, per-request call options, and the calls themselves through one
 * RPCClient, bounded in flight.
 */

import { setMaxListeners } from 'node:events';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import type { MethodContract } from '../contracts/contract.js';
import { capped, compileContracts, violations } from '../contracts/validator.js';
import { ContractViolation } from '../contracts/violation.js';
import { ConfigError, InvalidArgument, MessagingTimeout, TooManyInFlight } from '../core/errors.js';
import { findPrototypeKey } from '../core/plain.js';
import type { Context } from '../core/serializer.js';
import { Target, versionIsCompatible } from '../core/target.js';
import { START_HINT } from '../jobs/context.js';
import {
  InvalidJobToken,
  JobCancelled,
  JobFinished,
  JobLost,
  JobNotFound,
  JobPending,
  JobTimeout,
  ServerUnavailable,
  TooManyJobs,
} from '../jobs/errors.js';
import { isFinal, type JobStatus } from '../jobs/poller.js';
import type { JobToken } from '../jobs/token.js';
import { RPCClient } from '../rpc/client.js';
import { describeWhenConnected, INTROSPECTION_NAMESPACE, QUIET_DESCRIBE } from '../rpc/introspection.js';
import { isRemote } from '../rpc/remote-errors.js';
import type { Transport } from '../transport.js';
import type { Identity } from './auth.js';
import { type GatewayRoute, type ResolvedGatewayConfig, VERSION_PATTERN } from './config.js';
import { BadResult, CallCut, ClientBusy, Forbidden, NotExposed, Unauthenticated, Unavailable } from './errors.js';

/** A route ready to serve: its schemas compiled once. */
export interface CompiledRoute {
  route: GatewayRoute;
  /** `topic.method` */
  name: string;
  declared: boolean;
  roles: string[];
  checkArgs?: ValidateFunction;
  checkResult?: ValidateFunction;
  /** The method's contract as its servers published it (used when the route declares no `args`). */
  contract?: MethodContract;
  /** The client for calls that change nothing of the route's target (made on first use). */
  client?: RPCClient;
}

/** What the gateway reads of a `hermod.describe` answer. */
interface Described {
  endpoints?: Array<{ namespace: string | null; version: string; methods: Record<string, MethodContract | null> }>;
}

/** Per-request choices a client may make (query parameters or `X-Hermod-*` headers). */
export interface CallControls {
  server?: string;
  namespace?: string;
  version?: string;
  timeout?: number;
  cast?: boolean;
  fanout?: boolean;
  /** Who calls, for `maxInFlightPerClient`: set by the gateway from the request's identity or address, never read from the request. */
  client?: string;
}

/** The names of {@link CallControls}: `?server=` or `X-Hermod-Server:`. */
export const CONTROL_NAMES = ['server', 'namespace', 'version', 'timeout', 'cast', 'fanout'] as const;

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,254}$/;
/** Longest server, namespace or version a control takes (the broker's queue names are at most 255 bytes). */
const MAX_NAME = 255;

/** A control's value as a message quotes it back: the client's text, bounded. */
function quoted(v: string): string {
  return v.length > 100 ? `${JSON.stringify(v.slice(0, 100))}… (${v.length} characters)` : JSON.stringify(v);
}
/** The one pattern of a version, as the OpenAPI document states it. */
const VERSION = new RegExp(VERSION_PATTERN);
const FLAG: Record<string, boolean> = { '1': true, true: true, '0': false, false: false };

/** Reads and checks controls from string values (query or headers); bad values are InvalidArgument (400). */
export function parseControls(values: Record<string, unknown>, maxTimeout: number): CallControls {
  const out: CallControls = {};
  for (const key of CONTROL_NAMES) {
    const raw = values[key];
    if (raw === undefined) continue;
    // A repeated query key is a list: the last one went through, so `?server=a&server=b` went
    // to b. Refused, as the same header twice is (Node joins it into a value no check takes).
    if (Array.isArray(raw)) throw new InvalidArgument(`${key} is given ${raw.length} times; give it once`);
    const v = raw;
    if (typeof v !== 'string') throw new InvalidArgument(`${key} must be given once as text`);
    if (key === 'timeout') {
      const n = Number(v);
      if (!/^\d+$/.test(v) || n < 1 || n > maxTimeout)
        throw new InvalidArgument(`timeout must be whole milliseconds from 1 to ${maxTimeout}, got ${quoted(v)}`);
      out.timeout = n;
    } else if (key === 'cast' || key === 'fanout') {
      const b = FLAG[v.toLowerCase()];
      if (b === undefined) throw new InvalidArgument(`${key} must be 1, 0, true or false, got ${quoted(v)}`);
      out[key] = b;
    } else if (key === 'version') {
      if (!VERSION.test(v)) throw new InvalidArgument(`version must look like X.Y or X.Y.Z, got ${quoted(v)}`);
      out.version = v;
    } else {
      // The length first: 8,000 good characters were refused as bad ones, all quoted back.
      if (v.length > MAX_NAME) throw new InvalidArgument(`${key} is ${v.length} characters long; at most ${MAX_NAME}`);
      if (!NAME.test(v)) throw new InvalidArgument(`${key} has characters a ${key} name cannot have: ${quoted(v)}`);
      out[key] = v;
    }
  }
  return out;
}

/** The outcome of one invocation: a result, a cast accepted, or (asked for) a job still running. */
export type Outcome = { kind: 'result'; result: unknown } | { kind: 'accepted' } | { kind: 'job'; token: JobToken };

/** A job as the gateway reports it: its status, and once it ended its result or its error. */
export interface JobView {
  status: JobStatus;
  /** Set when the job succeeded (the result may be null). */
  result?: { value: unknown };
  /** The job's own failure: the method's error, JobCancelled, or a result that broke the route's schema. */
  error?: Error;
}

/**
 * The timeout of the status poll after a `?wait` that ran out on a poll the job's server did not
 * answer: the request is answered about this long after its wait, not a whole pollTimeout.
 */
const AFTER_WAIT_POLL_MS = 1000;

/** Why a wait for a job's end gave up early: the gateway is stopping. */
class WaitEnded extends Error {}

/**
 * The messages of job errors as HTTP clients get them. The servers' own name the server, its
 * topic and the job's id, which the gateway's references keep from clients; the class (and so
 * the code and status) stays.
 */
function publicJobError(err: unknown): unknown {
  if (err instanceof JobLost) return new JobLost('the job is lost: its server restarted since it started');
  if (err instanceof JobNotFound) return new JobNotFound('no such job (the reference is unknown here, expired, or not yours)');
  if (err instanceof ServerUnavailable)
    return new ServerUnavailable("the job's server did not answer; its outcome is unknown, try again later (the reference stays valid)");
  if (err instanceof JobFinished) return new JobFinished('the job had already ended: nothing to cancel');
  if (err instanceof JobCancelled) return new JobCancelled('the job was cancelled');
  if (err instanceof JobTimeout)
    return new JobTimeout("the job's server did not answer in time; the job may still be running (the reference stays valid)");
  if (err instanceof JobPending) return new JobPending('the job has not ended yet');
  if (err instanceof InvalidJobToken) return new InvalidJobToken('the job reference does not match the job its server holds');
  if (err instanceof TooManyJobs) {
    // A server older than the `bound` field says it only in its message, which is not passed on.
    const bound = err.bound ?? (err.message.includes('jobs.maxPendingBytes') ? 'maxPendingBytes' : 'max');
    return bound === 'maxPendingBytes'
      ? new TooManyJobs("the server holds as many bytes of pending jobs' requests as it may (jobs.maxPendingBytes): try again later", {
          bound,
        })
      : new TooManyJobs('the server holds as many unfinished jobs as it may (jobs.max): try again later', { bound });
  }
  return err;
}

/**
 * Whether `err` is the job's own outcome (the method raised, or the job was cancelled), as
 * opposed to a failure to learn it (the server unreachable, the job unknown there).
 */
function isJobOutcome(err: unknown): boolean {
  return isRemote(err) && !(err instanceof JobNotFound || err instanceof InvalidJobToken || err instanceof JobPending);
}

export class Invoker {
  private readonly byName = new Map<string, CompiledRoute>();
  private readonly byTopicMethod = new Map<string, CompiledRoute>();
  private readonly client: RPCClient;
  private readonly ajv = new Ajv2020({ strict: true, allErrors: false });
  private inFlight_ = 0;
  /** Calls in flight per client, when `maxInFlightPerClient` is set (entries only for clients with calls in flight). */
  private readonly perClient = new Map<string, number>();
  private readonly idle: Array<() => void> = [];
  private stopping = false;
  /** Rejects each call or cast still waiting, for {@link cut}. */
  private readonly waiting = new Set<(err: Error) => void>();
  /**
   * Aborted by {@link drain}: a request waiting for a job's end (`Prefer: wait`, `?wait`) is
   * answered with what is known then instead of holding the stop until its deadline.
   */
  private readonly waits = (() => {
    const c = new AbortController();
    // Every waiting request listens on it (at most maxInFlight): not a leak, whatever Node's
    // warning at 10 listeners would tell the operator.
    setMaxListeners(0, c.signal);
    return c;
  })();
  /** The turn of the event loop the calls of the requests read so far start in (see {@link invoke}). */
  private turn: Promise<void> | undefined;
  /** Every declared route, in configuration order. */
  readonly routes: CompiledRoute[] = [];

  constructor(
    private readonly transport: Transport,
    private readonly config: ResolvedGatewayConfig,
  ) {
    for (const [i, route] of config.routes.entries()) {
      const compiled: CompiledRoute = {
        route,
        name: `${route.topic}.${route.method}`,
        declared: true,
        roles: route.roles ?? [],
        ...(route.args ? { checkArgs: this.compile(route.args, `routes[${i}].args`) } : {}),
        ...(route.result ? { checkResult: this.compile(route.result, `routes[${i}].result`) } : {}),
      };
      this.routes.push(compiled);
      this.byTopicMethod.set(compiled.name, compiled);
      this.byName.set(compiled.name, compiled);
      if (route.rpcName) this.byName.set(route.rpcName, compiled);
    }
    // One client: its prepared copies share the in-flight bound, and it fails fast beyond it.
    this.client = new RPCClient(transport, new Target({ topic: 'hermod-gateway' }), {
      timeout: config.callTimeout,
      maxInFlight: config.maxInFlight,
      inFlightOverflow: 'fail',
      // A job token is followed here, within the request's own timeout (see invoke).
      followJobs: false,
    });
  }

  private compile(schema: object, where: string): ValidateFunction {
    try {
      return this.ajv.compile(schema);
    } catch (err) {
      throw new ConfigError(`gateway configuration ${where} is not a usable JSON Schema: ${(err as Error).message}`, {
        cause: err,
        key: where,
      });
    }
  }

  /**
   * Asks the servers of each declared route that has no `args` schema for the method's contract
   * ({@link QUIET_DESCRIBE} on the route's topic, in its namespace and version), each target at
   * most `timeoutMs`, all at once. A route whose servers do not answer (none running, an
   * oslo.messaging server, an older hermod) keeps going unchecked. Returns the names of the routes
   * that got a contract. `hermod.describe` (namespace `hermod`) put an ERROR with a traceback in an
   * oslo server's log per route target at each gateway start; the quiet name it logs at DEBUG.
   * A first connect still under way is waited for up to `connectWithinMs` more.
   */
  async loadContracts(timeoutMs: number, connectWithinMs = this.config.callTimeout): Promise<string[]> {
    const wanting = this.routes.filter((r) => !r.route.args);
    const byTarget = new Map<string, CompiledRoute[]>();
    for (const r of wanting) {
      const key = JSON.stringify([
        r.route.topic,
        r.route.exchange ?? null,
        r.route.server ?? null,
        r.route.namespace ?? null,
        r.route.version ?? null,
      ]);
      byTarget.set(key, [...(byTarget.get(key) ?? []), r]);
    }
    const adopted: string[] = [];
    await Promise.all(
      [...byTarget.values()].map(async (routes) => {
        const r0 = routes[0]!.route;
        const client = this.client.prepare({
          topic: r0.topic,
          exchange: r0.exchange ?? null,
          server: r0.server ?? null,
          namespace: r0.namespace ?? null,
          version: r0.version ?? null,
          timeout: timeoutMs,
        });
        let described: Described;
        try {
          // The timeout is for the servers' answer: a first connect still under way when it
          // passes is waited for (up to the gateway's call timeout), else a slow broker would
          // silently leave every route without its contract.
          described = await describeWhenConnected(client, connectWithinMs, () => this.stopping, QUIET_DESCRIBE);
        } catch {
          return;
        }
        for (const route of routes) {
          const contract = findContract(described, route);
          if (!contract) continue;
          route.contract = contract;
          route.checkArgs = compileContracts({ [route.route.method]: contract }, `contract of ${route.name}`).get(route.route.method)!.args;
          adopted.push(route.name);
        }
      }),
    );
    return adopted;
  }

  /** Calls and casts running now. */
  get inFlight(): number {
    return this.inFlight_;
  }

  /** The route for `topic`/`method` (REST), or NotExposed. */
  byPath(topic: string, method: string): CompiledRoute {
    const found = this.byTopicMethod.get(`${topic}.${method}`);
    if (found) return found;
    return this.undeclared(topic, method, `${topic}.${method}`);
  }

  /** The route for a JSON-RPC method name (`topic.method` or a route's `rpcName`), or NotExposed. */
  byRpcName(name: string): CompiledRoute {
    const found = this.byName.get(name);
    if (found) return found;
    const dot = name.lastIndexOf('.');
    // Without a dot there is no topic: slicing to -1 made "ping" call method ping on topic "pin".
    if (dot <= 0) return this.undeclared('', name, name);
    return this.undeclared(name.slice(0, dot), name.slice(dot + 1), name);
  }

  private undeclared(topic: string, method: string, name: string): CompiledRoute {
    if (this.config.mappingPolicy !== 'any' || !NAME.test(topic) || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(method)) {
      // Bounded: the name is the client's text, sent back to it (a 900 kB name made a 1.8 MB answer).
      const shown = name.length > 200 ? `${name.slice(0, 200)}… (${name.length} characters)` : name;
      throw new NotExposed(`${shown} is not exposed by this gateway`);
    }
    return { route: { topic, method }, name: `${topic}.${method}`, declared: false, roles: this.config.anyRoles };
  }

  /**
   * Under `mappingPolicy: "any"`, refuses an undeclared call that reaches the servers of a
   * declared route of the same method by another spelling: on RabbitMQ topic `demo.u1`, and
   * topic `demo` with server `u1`, are both routing key `demo.u1`, the queue of server u1 of
   * topic demo. Served, it skipped that route's roles, schema and cast or job flags.
   */
  private assertOwnQueue(route: CompiledRoute, server: string | undefined): void {
    const key = server === undefined ? route.route.topic : `${route.route.topic}.${server}`;
    for (const d of this.routes) {
      if (d.route.method !== route.route.method) continue;
      if (key === d.route.topic || key.startsWith(`${d.route.topic}.`)) {
        throw new NotExposed(
          `${route.name}${server === undefined ? '' : ` on server ${server}`} reaches the servers of the declared route ${d.name}: call it through that route`,
        );
      }
    }
  }

  /**
   * Refuses a call into the servers' reserved `hermod` namespace unless its route declares that
   * namespace itself. It is protocol, not API: its `jobs`, `job_status` and `job_cancel` take
   * any job id (every caller's jobs, which the gateway's sealed references keep apart) and
   * `describe` names the server's host and pid. Reached by `?namespace=hermod`, any holder of
   * `anyRoles` listed, read and cancelled every user's jobs.
   */
  private assertNotReserved(route: CompiledRoute, namespace: string | undefined): void {
    if (namespace !== INTROSPECTION_NAMESPACE || route.route.namespace === INTROSPECTION_NAMESPACE) return;
    throw new NotExposed(`namespace ${INTROSPECTION_NAMESPACE} is reserved for hermod's own protocol: ${route.name} is not exposed in it`);
  }

  /** Throws Unauthenticated or Forbidden unless `identity` may use `route`. */
  authorize(route: CompiledRoute, identity: Identity | undefined): void {
    if (route.roles.length === 0) return;
    if (!identity) throw new Unauthenticated(`${route.name} needs credentials`);
    if (!route.roles.some((r) => (identity.roles ?? []).includes(r))) {
      throw new Forbidden(`${route.name} needs one of the roles ${route.roles.join(', ')}`);
    }
  }

  /** Checks `args` against the route's schema; InvalidArgument (400 / -32602) when they fail it. */
  checkArgs(route: CompiledRoute, args: unknown): Record<string, unknown> {
    if (args === null || typeof args !== 'object' || Array.isArray(args)) {
      throw new InvalidArgument(`arguments of ${route.name} must be a JSON object of named arguments`);
    }
    // Refused here, as the server would refuse it (MalformedMessage, a 502), and before any
    // schema or copy could treat the key as a prototype.
    const at = findPrototypeKey(args, 'args');
    if (at !== undefined)
      throw new InvalidArgument(`arguments of ${route.name} refused: ${at.slice(0, 200)} would set a prototype (not plain data)`);
    if (route.contract && route.checkArgs && !route.checkArgs(args)) {
      throw new ContractViolation(`arguments of ${route.name} break its contract`, violations(route.checkArgs.errors), {
        of: 'arguments',
      });
    }
    if (route.checkArgs && !route.checkArgs(args)) {
      throw new InvalidArgument(
        `arguments of ${route.name} do not match its schema: ${capped(this.ajv.errorsText(route.checkArgs.errors, { dataVar: 'args' }), 2000)}`,
      );
    }
    return args as Record<string, unknown>;
  }

  /** No new calls from now on (they get Unavailable); resolves when the running ones are done. */
  drain(): Promise<void> {
    this.stopping = true;
    this.waits.abort(new WaitEnded());
    if (this.inFlight_ === 0) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }

  /**
   * Fails every call and cast still waiting with CallCut (504, no Retry-After), so that the stop's
   * deadline (or an abort, `why` says which) answers their requests instead of cutting their
   * connections. Their replies, if any
   * come, are dropped; the methods may have run.
   */
  cut(why = 'its shutdown deadline passed'): void {
    const err = new CallCut(`the gateway stopped before the call finished (${why}); the method may have run`);
    for (const reject of this.waiting) reject(err);
    this.waiting.clear();
  }

  /** `p`, unless {@link cut} rejects it first. */
  private cuttable<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.waiting.add(reject);
      p.then(
        (v) => {
          this.waiting.delete(reject);
          resolve(v);
        },
        (e) => {
          this.waiting.delete(reject);
          reject(e);
        },
      );
    });
  }

  /**
   * Whether the transport can take calls now (memory:// is always ready; a driver only once
   * connected: `idle`, never connected yet, said ready while the broker was down).
   */
  ready(): boolean {
    if (this.stopping) return false;
    const s = this.transport.state.state;
    if (this.transport.url.driver === 'memory') return s !== 'closed';
    return s === 'connected' || s === 'unblocked';
  }

  /**
   * Resolves in the event loop's check phase, once for every request read in the poll phase
   * before it. Each HTTP request arrives in its own socket callback, and the drivers flush what
   * one callback sent in a write of its own; started together, the calls of all the requests
   * read in one turn leave in one write, and the broker and the server read them in one go too.
   */
  private nextTurn(): Promise<void> {
    this.turn ??= new Promise((resolve) =>
      setImmediate(() => {
        this.turn = undefined;
        resolve();
      }),
    );
    return this.turn;
  }

  /**
   * The result of the job a server answered a call with (a long method that outlived its
   * `deferAfter`), within the request's deadline: an HTTP request is bounded by its `timeout`
   * (at most `maxCallTimeout`) whatever the method does, and holds its in-flight slot no longer.
   * A job given up on (the deadline, or the gateway's stop) is cancelled: nobody else has its
   * token, so it would run on for nobody.
   */
  private async follow(ctx: Context, token: JobToken, deadline: number, timeout: number, name: string): Promise<unknown> {
    const job = this.client.job(token, ctx);
    try {
      return await this.cuttable(job.result({ timeout: Math.max(1, deadline - Date.now()) }));
    } catch (err) {
      // A MessagingTimeout the job itself failed with (rebuilt from the server) is its outcome,
      // not this wait running out.
      if (!((err instanceof MessagingTimeout && !isRemote(err)) || err instanceof CallCut)) throw publicJobError(err);
      void job.cancel().catch(() => undefined);
      // Not JobTimeout, whose message offers a token to come back with: this caller has none.
      if (err instanceof CallCut) throw err;
      throw new MessagingTimeout(`${name} did not finish within ${timeout} ms (it ran as a job on the server, now cancelled)`, {
        cause: err,
      });
    }
  }

  /** Checks that a request may start RPC work now (Unavailable, TooManyInFlight or ClientBusy otherwise). */
  private admit(client: string | undefined): void {
    if (this.stopping) throw new Unavailable('the gateway is stopping');
    // Not connected yet (`idle`): the call opens the connection, as any first call does.
    if (!this.ready() && !(this.transport.state.state === 'idle' && !this.stopping))
      throw new Unavailable(`the transport is ${this.transport.state.state}`);
    if (this.inFlight_ >= this.config.maxInFlight) {
      throw new TooManyInFlight(`${this.config.maxInFlight} calls already in flight at the gateway`);
    }
    const share = this.config.maxInFlightPerClient;
    if (share !== undefined && client !== undefined && (this.perClient.get(client) ?? 0) >= share) {
      throw new ClientBusy(`this client has ${share} calls in flight already (maxInFlightPerClient)`);
    }
  }

  /** Counts one more call in flight (after {@link admit}); {@link leave} with the same client ends it. */
  private enter(client: string | undefined): void {
    this.inFlight_++;
    if (client !== undefined && this.config.maxInFlightPerClient !== undefined)
      this.perClient.set(client, (this.perClient.get(client) ?? 0) + 1);
  }

  private leave(client: string | undefined): void {
    if (client !== undefined && this.config.maxInFlightPerClient !== undefined) {
      const n = (this.perClient.get(client) ?? 1) - 1;
      // At most one entry per client with calls in flight: the map is bounded by maxInFlight.
      if (n > 0) this.perClient.set(client, n);
      else this.perClient.delete(client);
    }
    this.inFlight_--;
    if (this.inFlight_ === 0) for (const r of this.idle.splice(0)) r();
  }

  /**
   * Sends one call or cast for `route`; args must have passed {@link checkArgs}. With
   * `startJob`, a call runs as a job on a hermod server (`client.start()`'s request) and
   * answers with its token unless it ends within `startJob.waitMs`; a server that does not run
   * jobs (oslo.messaging) answers the call as usual.
   */
  async invoke(
    route: CompiledRoute,
    ctx: Context,
    args: Record<string, unknown>,
    controls: CallControls,
    startJob?: { waitMs: number },
  ): Promise<Outcome> {
    const cast = controls.fanout === true || controls.cast === true || route.route.cast === true;
    if (controls.fanout && !route.route.fanout) throw new InvalidArgument(`${route.name} does not allow fanout casts`);
    if (cast && route.route.job) throw new InvalidArgument(`${route.name} runs as a job: it takes no cast`);
    if (!route.declared) this.assertOwnQueue(route, controls.server);
    this.assertNotReserved(route, controls.namespace);
    this.admit(controls.client);
    const r = route.route;
    const timeout = Math.min(controls.timeout ?? r.timeout ?? this.config.callTimeout, this.config.maxCallTimeout);
    const prepare = () =>
      this.client.prepare({
        topic: r.topic,
        exchange: r.exchange ?? null,
        server: controls.server ?? r.server ?? null,
        namespace: controls.namespace ?? r.namespace ?? null,
        version: controls.version ?? r.version ?? null,
        fanout: controls.fanout ? true : null,
        timeout,
      });
    // Most requests change nothing of the route's target: they share one prepared client (a
    // view of the gateway's, same in-flight bound) instead of a new one and a new Target each.
    const plain =
      controls.server === undefined &&
      controls.namespace === undefined &&
      controls.version === undefined &&
      controls.timeout === undefined &&
      controls.fanout !== true;
    if (plain && !route.client) route.client = prepare();
    const client = plain ? route.client! : prepare();
    this.enter(controls.client);
    try {
      await this.nextTurn();
      if (cast) {
        await this.cuttable(client.cast(ctx, r.method, args));
        return { kind: 'accepted' };
      }
      const sent = Date.now();
      if (startJob) {
        let answer: { result: unknown; token: JobToken | undefined };
        try {
          answer = await this.cuttable(client.callOrJob({ ...ctx, [START_HINT]: 'start' }, r.method, args));
        } catch (err) {
          throw publicJobError(err);
        }
        // Only a reply its server marked as a job's is one: an oslo server ignores the start hint
        // and answers with the method's result, whatever it looks like.
        const token = ownToken(client, r.method, answer.token);
        if (!token) return { kind: 'result', result: this.checkedResult(route, answer.result) };
        if (startJob.waitMs <= 0) return { kind: 'job', token };
        try {
          const job = this.client.job(token, ctx);
          const result = await this.cuttable(job.result({ timeout: startJob.waitMs, signal: this.waits.signal }));
          return { kind: 'result', result: this.checkedResult(route, result) };
        } catch (err) {
          // Still running (or the gateway stopping): the client asked for its token, and it runs on.
          if (err instanceof JobTimeout || err instanceof WaitEnded) return { kind: 'job', token };
          throw publicJobError(err);
        }
      }
      const answer = await this.cuttable(client.callOrJob(ctx, r.method, args));
      const token = ownToken(client, r.method, answer.token);
      // The whole request within its timeout: the job gets what the call left of it.
      const result = token ? await this.follow(ctx, token, sent + timeout, timeout, route.name) : answer.result;
      return { kind: 'result', result: this.checkedResult(route, result) };
    } finally {
      this.leave(controls.client);
    }
  }

  /** `result`, unless it breaks the route's result schema (BadResult, 502). */
  private checkedResult(route: CompiledRoute, result: unknown): unknown {
    if (route.checkResult && !route.checkResult(result)) {
      throw new BadResult(
        `the result of ${route.name} does not match its schema: ${capped(this.ajv.errorsText(route.checkResult.errors, { dataVar: 'result' }), 2000)}`,
      );
    }
    return result;
  }

  /**
   * The state of the job of `token` (started on `route`), after waiting up to `waitMs` for it to
   * end; once it ended, with its result or its error. Polls count as calls in flight (a stop
   * waits for them, and {@link cut} answers them). Rejects with JobNotFound / JobLost,
   * ServerUnavailable, or a transport error when the state cannot be learnt.
   */
  async jobView(route: CompiledRoute, token: JobToken, ctx: Context, waitMs: number, client?: string): Promise<JobView> {
    this.admit(client);
    this.enter(client);
    try {
      const job = this.client.job(token, ctx);
      let ended: Omit<JobView, 'status'> | undefined;
      const outcome = async (read: Promise<unknown>) => {
        try {
          const value = await this.cuttable(read);
          return { result: { value: this.checkedResult(route, value) } };
        } catch (err) {
          if (err instanceof BadResult || isJobOutcome(err)) return { error: publicJobError(err) as Error };
          throw err;
        }
      };
      const pollTimeout = this.transport.config.jobs.pollTimeout;
      let statusTimeout = pollTimeout;
      let final: JobStatus | undefined;
      if (waitMs > 0) {
        try {
          const onStatus = (s: JobStatus) => {
            if (isFinal(s)) final = s;
          };
          ended = await outcome(job.result({ timeout: waitMs, signal: this.waits.signal, onStatus }));
        } catch (err) {
          if (!(err instanceof JobTimeout || err instanceof WaitEnded)) throw err;
          // The wait ran out on a poll its server did not answer: a full pollTimeout more would
          // answer `?wait=2` after 12 s. One short poll still catches a server that was only slow.
          if (err instanceof JobTimeout && err.cause instanceof ServerUnavailable)
            statusTimeout = Math.min(pollTimeout, AFTER_WAIT_POLL_MS);
        }
      }
      // The final status the wait read, not one more poll: a stopping server that lingers for its
      // jobs' outcomes may exit once this one's result was read, and the poll after it found
      // nobody (503 instead of the state, in CI at load).
      const status = ended && final ? final : await this.cuttable(job.status({ timeout: statusTimeout }));
      // Ended (or ending since the wait gave up): one more poll fetches what it ended with, with a
      // pollTimeout of its own. Read by result() it shared one bound with a second job_status, and
      // a large result that took longer than what was left came back as a JobTimeout.
      if (!ended && isFinal(status)) ended = await outcome(job.readResult({ timeout: pollTimeout }));
      return { status, ...ended };
    } catch (err) {
      throw publicJobError(err);
    } finally {
      this.leave(client);
    }
  }

  /** Asks the job of `token` to stop (cooperative); its status. JobFinished when it had ended. */
  async cancelJob(token: JobToken, ctx: Context, client?: string): Promise<JobStatus> {
    this.admit(client);
    this.enter(client);
    try {
      return await this.cuttable(this.client.job(token, ctx).cancel());
    } catch (err) {
      throw publicJobError(err);
    } finally {
      this.leave(client);
    }
  }
}

/** The contract of `route`'s method in a describe answer: the endpoint of the route's namespace whose version serves the route's. */
function findContract(described: Described, route: CompiledRoute): MethodContract | undefined {
  const r = route.route;
  for (const e of Array.isArray(described?.endpoints) ? described.endpoints : []) {
    if ((e.namespace ?? undefined) !== (r.namespace ?? undefined)) continue;
    if (typeof e.version !== 'string' || !versionIsCompatible(e.version, r.version ?? '1.0')) continue;
    const c = e.methods?.[r.method];
    if (c && typeof c === 'object' && c.args && typeof c.args === 'object') return c;
  }
  return undefined;
}

/**
 * `token` when it is the token of this call's own job: of the route's method and topic, of the
 * call's server when it named one, and of its exchange unless requests go by queue name
 * (`rabbit.requestRouting=queue` reaches the queue whatever exchange its server's tokens name).
 * A marked token of any other job came from a peer that answers for the route's topic: it is
 * answered as data, so that it cannot make the gateway follow, seal or hand out another job
 * (polled under this route's roles).
 */
function ownToken(client: RPCClient, method: string, token: JobToken | undefined): JobToken | undefined {
  if (!token) return undefined;
  const t = client.target;
  if (token.method !== method || token.topic !== t.topic) return undefined;
  if (t.server != null && token.server !== t.server) return undefined;
  const config = client.transport.config;
  const byQueue = client.transport.url.driver === 'rabbit' && config.rabbit.requestRouting === 'queue';
  if (!byQueue && token.exchange !== (t.exchange ?? config.controlExchange)) return undefined;
  return token;
}
