/**
 * What a gateway is on any fastify instance: its body parsers, error shape, CORS, credentials,
 * rate limits and routes. `createGateway` mounts it on a server of its own (with the connection
 * limits only a server's owner can set); the `hermodGateway` plugin mounts it in an application's
 * own fastify server, under a prefix.
 */

import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { errorCodes, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { channels, type GatewayRequestEvent } from '../core/diagnostics.js';
import { ConfigError, HermodError, NestingTooDeep } from '../core/errors.js';
import { nestsDeeperThan } from '../core/json.js';
import { isRemote } from '../rpc/remote-errors.js';
import type { Transport } from '../transport.js';
import { type Authenticate, type Identity, keysFileAuthenticator } from './auth.js';
import { type ResolvedGatewayConfig, resolveGatewayConfig } from './config.js';
import { contextOf } from './context.js';
import { errorBody, mapError, RPC_CODES, Unauthenticated } from './errors.js';
import { Invoker } from './invoker.js';
import { JobRefs, jobsKey } from './job-refs.js';
import { JobsFace, registerJobs } from './jobs-http.js';
import { registerJsonRpc } from './jsonrpc.js';
import { openApiDocument } from './openapi.js';
import { registerRest } from './rest.js';
import './state.js';

/**
 * The Content-Security-Policy of `/docs`. @fastify/swagger-ui's own (`staticCSP: true`) has
 * `upgrade-insecure-requests`: over plain HTTP under any name but a loopback one, the browser
 * fetched the page's scripts and styles over https and the page stayed blank. Everything the page
 * loads and calls is the gateway's own; the one inline style is the `<style>` of Swagger UI's
 * logo (an SVG in its bundle), allowed by its hash rather than by 'unsafe-inline' (a Swagger UI
 * whose logo changes shows up as a CSP error in `in-process/gateway-docs`).
 */
const DOCS_CSP = [
  "default-src 'self'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'self'",
  "object-src 'none'",
  "script-src 'self'",
  "script-src-attr 'none'",
  "style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='",
  "img-src 'self' data:",
  "font-src 'self' data:",
].join('; ');

/** After the stop's deadline, how long the 503s of the calls still running get to be written before every connection is cut. */

/** A client's key for per-client limits: the identity when there is one, else the client's address. */
function clientOf(identity: Identity | undefined, request: FastifyRequest): string {
  return identity ? `id:${identity.user ?? ''}:${identity.project ?? ''}` : `ip:${request.ip}`;
}

/**
 * Requests refused for their credentials, per client address, in a fixed window: the rate
 * limit's own hook runs after authentication (its key is the identity), so without this a
 * client could try keys as fast as the gateway answers 401s. Past `max` in a window, the
 * address gets 429s before any key is checked, until the window ends.
 */
class FailedAuth {
  /**
   * Addresses tracked per window. Past this many, a new address is not tracked: its failed
   * keys are answered 401 as usual, and nothing blocks it before its key is checked. A count
   * shared by every untracked address let a flood of wrong keys from 10 000 addresses lock out
   * every new client, valid keys included, for the rest of the window.
   */
  private static readonly MAX_ADDRESSES = 10_000;
  private start = 0;
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
  ) {}

  /**
   * The key an address counts under: IPv4 as is; IPv6 by its /64, the block one subscriber
   * gets (an attacker with one holds 2⁶⁴ addresses).
   */
  private key(ip: string): string {
    if (!ip.includes(':') || ip.startsWith('::ffff:')) return ip;
    const [head = '', tail] = ip.split('::');
    const groups = (text: string) => text.split(':').filter(Boolean);
    // `::` stands for as many zero groups as the address lacks (an embedded IPv4 is two).
    const after = tail === undefined ? [] : groups(tail);
    const lacking = 8 - groups(head).length - after.length - (after.at(-1)?.includes('.') ? 1 : 0);
    const full = tail === undefined ? groups(head) : [...groups(head), ...Array<string>(Math.max(0, lacking)).fill('0'), ...after];
    return `${full
      .slice(0, 4)
      .map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''))
      .join(':')}::/64`;
  }

  private roll(now: number): void {
    if (now - this.start < this.windowMs) return;
    this.start = now;
    this.seen.clear();
  }

  /** Throws a 429 when `ip` used up its failures of this window. */
  check(ip: string, reply: FastifyReply): void {
    const now = Date.now();
    this.roll(now);
    if ((this.seen.get(this.key(ip)) ?? 0) < this.max) return;
    reply.header('retry-after', String(Math.max(1, Math.ceil((this.start + this.windowMs - now) / 1000))));
    throw Object.assign(
      new Error(
        `Rate limit exceeded: ${this.max} requests refused for their credentials from this address within ${this.windowMs / 1000} s`,
      ),
      {
        statusCode: 429,
      },
    );
  }

  count(ip: string): void {
    this.roll(Date.now());
    const k = this.key(ip);
    const n = this.seen.get(k);
    if (n !== undefined) this.seen.set(k, n + 1);
    else if (this.seen.size < FailedAuth.MAX_ADDRESSES) this.seen.set(k, 1);
  }
}

/**
 * The `authenticate` hook's identity with its roles checked: none is no roles, but anything other
 * than an array of strings is the hook's mistake, refused (a 500) rather than read: a string
 * `'superadmin'` would have matched a route's `admin` by substring (and a missing list was a
 * TypeError naming nothing).
 */
function checkedIdentity(identity: Identity | undefined): Identity | undefined {
  if (identity === undefined) return undefined;
  if (typeof identity !== 'object' || identity === null) {
    throw new Error(`the authenticate hook returned ${typeof identity}, not an identity object (or null)`);
  }
  const roles = (identity as { roles?: unknown }).roles;
  if (roles === undefined) return { ...identity, roles: [] };
  if (!Array.isArray(roles) || !roles.every((r) => typeof r === 'string')) {
    throw new Error('the authenticate hook returned roles that are not an array of strings');
  }
  return identity;
}

/**
 * What createGateway and the plugin build alike from their options: the configuration resolved
 * (ConfigError on a mistake), the job references' key, the authenticator (the hook, else the keys
 * file's) and the invoker.
 */
export function gatewayParts(
  transport: Transport,
  data: Record<string, unknown>,
  hooks: { authenticate: Authenticate | undefined; jobsKey: string | undefined },
  source?: string,
): Pick<Mount, 'config' | 'refs' | 'authenticate' | 'invoker'> {
  const config = resolveGatewayConfig(data, source);
  const refs = config.jobs.enabled
    ? new JobRefs(
        jobsKey({
          ...(hooks.jobsKey !== undefined ? { text: hooks.jobsKey } : {}),
          ...(config.jobs.keyFile ? { keyFile: config.jobs.keyFile } : {}),
        }),
      )
    : undefined;
  const authenticate = hooks.authenticate ?? (config.auth.keysFile ? keysFileAuthenticator(config.auth.keysFile) : undefined);
  return { config, refs, authenticate, invoker: new Invoker(transport, config) };
}

/** What {@link mountGateway} needs beside the fastify instance. */
export interface Mount {
  transport: Transport;
  config: ResolvedGatewayConfig;
  invoker: Invoker;
  authenticate: Authenticate | undefined;
  refs: JobRefs | undefined;
  /** Where the gateway's paths start, without a trailing `/`: '' on its own server, the plugin's prefix in an application's. */
  prefix: string;
  /**
   * In an application's server (the plugin): whether the registration has a prefix of its own (a
   * gateway at an enclosing plugin's prefix shares it). Undefined on the gateway's own server.
   */
  ownPrefix?: boolean;
  /** Whether a stop began: responses from then on close their connection. */
  stopping: () => boolean;
  /**
   * The owner's say on a response's connection (the gateway's own server closes one answered
   * before its body was read): true closes it.
   */
  closeAfter?: (request: FastifyRequest) => boolean;
  /**
   * Whether the 404s of unrouted paths are the gateway's: on its own server, or under a prefix of
   * an application's (fastify lets one handler answer for a prefix, the application's at its root).
   */
  notFound: boolean;
  /** Told of each answered request, after the gateway's own bookkeeping. */
  answered?: (request: FastifyRequest) => void;
}

/**
 * Registers the gateway on `app`: on the root of its own server, or in the encapsulated scope of
 * the plugin, where its parsers, error handler, hooks and request decorator stay among its own
 * routes and leave the application's alone.
 */
export function mountGateway(app: FastifyInstance, m: Mount): void {
  const { transport, config, invoker, authenticate, refs, prefix } = m;
  // Decided by route: safe since no alias may take these paths (RESERVED_PATHS in config.ts); an
  // alias `GET /docs/:id` was taken for one of them, skipped authentication and answered 500.
  const PUBLIC = new Set(['/healthz', '/readyz', '/openapi.json'].map((p) => prefix + p));
  const docsPath = `${prefix}/docs`;
  const isPublicUrl = (url: string) => PUBLIC.has(url) || url === docsPath || url.startsWith(`${docsPath}/`);
  const isPublic = (request: FastifyRequest) => isPublicUrl(request.routeOptions.url ?? '');
  const jsonrpcPath = `${prefix}/jsonrpc`;
  // In an application's server its own bodyLimit is for its own routes: the gateway's is per route.
  const inApplication = m.ownPrefix !== undefined;
  app.addHook('onRoute', (route) => {
    route.bodyLimit ??= config.bodyLimit;
    // The gateway documents its routes itself (its /openapi.json, with the methods' schemas): in an
    // application's own @fastify/swagger document they came out as its bare patterns
    // (`/rpc/v1/{topic}/{method}`, `/rpc/v1/jobs/{*}`), without any of that.
    if (inApplication) route.schema = { ...route.schema, hide: true };
    // What an application's own hooks read to tell the gateway's routes (and its open ones) from
    // theirs: `request.routeOptions.config.hermodGateway`. Without it an app-wide credentials hook
    // had to list the gateway's paths to leave /healthz, /docs and CORS preflights alone.
    const url = typeof route.url === 'string' ? route.url : '';
    route.config = { ...route.config, hermodGateway: { public: isPublicUrl(url) || route.method === 'OPTIONS' } };
  });
  app.decorateRequest('hermod', null);
  // JSON bodies pass the same depth bound as messages from the broker before they are parsed:
  // JSON.parse of deep nesting takes time superlinear in the depth, and a 1 MB body of `[` would
  // stall the gateway. fastify's own parser does the rest; a `__proto__` or `constructor.prototype`
  // key is kept as data here and refused with the arguments (400 naming the key, as JSON-RPC's
  // params are): fastify's own refusal said only "Body is not valid JSON".
  // The server counts the levels its message puts around the arguments against the same limit:
  // a body that used all 128 was sent, and refused there (a cast's 502, a call's remote 400).
  const maxDepth = transport.config.maxJsonDepth;
  const argsDepth = Math.max(1, maxDepth - transport.driver.argsDepth);
  /** The refusal of a body deeper than the arguments may nest, with `around` levels of the body's own around them. */
  const tooDeep = (around = 0, of = '') =>
    new NestingTooDeep(
      argsDepth + around,
      'the request body',
      `maxJsonDepth ${maxDepth}, less ${maxDepth - argsDepth} for the message around the arguments${around ? `, plus ${around} for ${of}` : ''}`,
    );
  const parseJson = app.getDefaultJsonParser('ignore', 'ignore');
  app.removeContentTypeParser('application/json');
  // JSON only: fastify's text/plain parser handed a JSON body sent as text on as a string, and
  // the call was refused as "not a JSON object" (400) instead of the 415 a wrong type earns.
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    // No body is no arguments, content type or not: fastify's parser answered 400 "Body cannot be
    // empty" to a client that sets the type on every request (a DELETE alias, an argument-less call).
    if (body === '') {
      done(null, undefined);
      return;
    }
    if (nestsDeeperThan(body as string, argsDepth)) {
      done(tooDeep(), undefined);
      return;
    }
    parseJson(request, body as string, done);
  });
  // Any other type: an empty body is no arguments too, as the README says, whatever the type (curl
  // -d '' sends a form type; some clients send text/plain on every request). fastify had no
  // parser for it and answered 415 without looking at the body. A body with anything in it is
  // still the 415 of a type the gateway does not read: at the first bytes, without reading on.
  // /jsonrpc has its own parsers (JSON-RPC over HTTP takes JSON types only).
  app.addContentTypeParser('*', (request, payload, done) => {
    // Unrouted: the 404 it gets says more than a 415.
    if (request.is404) {
      done(null, undefined);
      return;
    }
    const settle = (err: Error | null) => {
      payload.removeListener('data', onData);
      payload.removeListener('end', onEnd);
      payload.removeListener('error', onError);
      done(err, undefined);
    };
    const onData = () => settle(new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE());
    const onEnd = () => settle(null);
    // A body cut short: the 400 fastify's own parsers give it, not a 500.
    const onError = (err: Error & { statusCode?: number }) => settle(Object.assign(err, { statusCode: err.statusCode ?? 400 }));
    payload.on('data', onData);
    payload.on('end', onEnd);
    payload.on('error', onError);
  });

  app.setErrorHandler((err: FastifyError | HermodError, request, reply) => {
    // The matched route, not the URL's text: an absolute-form target (`POST http://host/jsonrpc`)
    // reaches the same route, and `/jsonrpcx` is not it.
    const jsonrpc = request.routeOptions.url === jsonrpcPath;
    let status: number;
    let body: ReturnType<typeof errorBody>;
    // A server's error rebuilt as the app's own class (registerRemoteError) is no HermodError, and
    // fastify's branch below made it a 500 "internal gateway error", or read its statusCode field.
    const mapped = err instanceof HermodError || isRemote(err);
    if (mapped) {
      const m = mapError(err, config.remoteErrors);
      status = m.status;
      body = errorBody(err, request.id, config.exposeTracebacks, config.remoteErrors);
      if (m.retryAfter) reply.header('retry-after', String(m.retryAfter));
      // In an application's server its logger is the only place a failed upstream shows (the
      // bin has its access log): a timeout, a stopped server or a cut call, with the error.
      if (inApplication && status >= 500) request.log.warn({ err }, `${request.method} ${request.routeOptions.url ?? ''}: ${err.message}`);
      if (err instanceof Unauthenticated) reply.header('www-authenticate', 'Bearer');
    } else {
      // fastify's and its plugins' own errors (413, 415, 400 bad JSON, 408, 429) keep their status.
      const code = (err as FastifyError).statusCode;
      status = code && code >= 400 && code < 600 ? code : 500;
      const limited = status === 429;
      body =
        status === 500
          ? { code: 'HERMOD_ERR_INTERNAL', type: 'InternalError', message: 'internal gateway error', requestId: request.id }
          : {
              code: limited ? 'HERMOD_ERR_RATE_LIMITED' : ((err as FastifyError).code ?? `HTTP_${status}`),
              type: limited ? 'RateLimited' : err.name,
              // Bounded: fastify's own messages can quote the client's text (a 414 quotes the URL).
              message: err.message.length > 300 ? `${err.message.slice(0, 300)}… (${err.message.length} characters)` : err.message,
              requestId: request.id,
            };
      if (status === 500) request.log.error(err);
    }
    if (jsonrpc) {
      const rpcCode = mapped
        ? mapError(err, config.remoteErrors).rpcCode
        : status === 429
          ? RPC_CODES.unavailable
          : status < 500
            ? RPC_CODES.invalidRequest
            : RPC_CODES.internalError;
      return reply
        .code(status)
        .send({ jsonrpc: '2.0', error: { code: rpcCode, message: body.message, data: { ...body, status } }, id: null });
    }
    return reply.code(status).send({ error: body });
  });

  // In the gateway's error shape (fastify's own said `Route GET:/path not found` in another).
  if (m.notFound)
    app.setNotFoundHandler((request, reply) => {
      const path = (request.url.split('?')[0] ?? '').slice(0, 200);
      return reply.code(404).send({
        error: { code: 'HERMOD_ERR_NOT_FOUND', type: 'NotFound', message: `no route ${request.method} ${path}`, requestId: request.id },
      });
    });

  if (config.cors) {
    if (m.ownPrefix === false) {
      throw new ConfigError(
        "cors needs the plugin registered under a prefix of its own: at the application's root its preflight route (OPTIONS *) would answer for the application's routes too",
        { key: 'cors' },
      );
    }
    // @fastify/cors decorates every request of the scope it is registered in; registered again
    // below an application's own, it threw (FST_ERR_DEC_ALREADY_PRESENT) and took the process down.
    if (app.hasRequestDecorator('corsPreflightEnabled')) {
      throw new ConfigError(
        "the application registers @fastify/cors already, whose policy covers the gateway's routes: leave out the gateway's cors, or register the application's in a scope of its own",
        { key: 'cors' },
      );
    }
    // Registered before the auth hook so that a preflight is answered without credentials.
    app.register(cors, {
      origin: config.cors.origins,
      credentials: config.cors.credentials ?? false,
      methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
      allowedHeaders: [
        'content-type',
        'authorization',
        'x-api-key',
        'x-request-id',
        'traceparent',
        'tracestate',
        'x-hermod-server',
        'x-hermod-namespace',
        'x-hermod-version',
        'x-hermod-timeout',
        'x-hermod-cast',
        'x-hermod-fanout',
        // Jobs over HTTP: a browser client asks for one, and reads where to poll it.
        'prefer',
      ],
      exposedHeaders: ['x-request-id', 'retry-after', 'location', 'preference-applied'],
      ...(config.cors.maxAgeSeconds !== undefined ? { maxAge: config.cors.maxAgeSeconds } : {}),
    });
  }

  // fastify answers requests that arrive while closing with `Connection: close`, but a response to
  // one that was running when the stop began keeps its keep-alive connection open, and the close
  // then waits for the client to hang up (or the deadline). Ending those connections with their
  // last response lets the drain finish when the calls do.
  // Callback style: an async hook would cost a promise on every response.
  const { stopping, closeAfter, answered } = m;
  app.addHook('onSend', (request, reply, payload, done) => {
    if (closeAfter?.(request) || stopping()) reply.header('connection', 'close');
    done(null, payload);
  });
  app.addHook('onResponse', (request, reply, done) => {
    answered?.(request);
    if (channels.gatewayRequest.hasSubscribers) {
      const user = request.hermod?.identity?.user;
      const remoteAddress = request.raw.socket.remoteAddress;
      channels.gatewayRequest.publish({
        // The pattern, not the path: bounded by the routes, whatever clients send.
        route: request.routeOptions.url ?? '',
        method: request.method,
        status: reply.statusCode,
        durationMs: reply.elapsedTime,
        url: request.url,
        requestId: request.id,
        ...(remoteAddress ? { remoteAddress } : {}),
        ...(user !== undefined ? { user } : {}),
      } satisfies GatewayRequestEvent);
    }
    done();
  });

  const failures = config.rateLimit ? new FailedAuth(config.rateLimit.max, config.rateLimit.windowMs) : undefined;
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    if (request.headers.host === undefined && request.raw.httpVersion === '1.1') {
      throw Object.assign(new Error('an HTTP/1.1 request needs a Host header'), { statusCode: 400, code: 'HTTP_HOST_REQUIRED' });
    }
    if (isPublic(request)) return;
    let identity: Identity | undefined;
    if (authenticate) {
      failures?.check(request.ip, reply);
      identity = checkedIdentity((await authenticate(request)) ?? undefined);
      if (!identity) {
        // A client that sent a key wants its identity: a wrong or mistyped key must not pass
        // as anonymous (and then fail on roles, or succeed with less than the client thinks).
        if (request.headers.authorization !== undefined || request.headers['x-api-key'] !== undefined) {
          failures?.count(request.ip);
          throw new Unauthenticated('the credentials sent are not valid (an unknown key, or not "Bearer <key>")');
        }
        if (!config.auth.allowAnonymous) {
          failures?.count(request.ip);
          throw new Unauthenticated('credentials required (Authorization: Bearer <key> or X-API-Key)');
        }
      }
    }
    const base = contextOf(request, request.id, identity);
    // A shallow copy per call is enough: nothing below the client mutates a context, and
    // structuredClone showed up at 1-2 % of the gateway's CPU under load.
    request.hermod = {
      identity,
      client: clientOf(identity, request),
      context: () => ({ ...base, ...(Array.isArray(base.roles) ? { roles: [...base.roles] } : {}) }),
    };
  });

  const clientKey = (request: FastifyRequest) => request.hermod?.client ?? clientOf(undefined, request);
  // @fastify/rate-limit counts requests; a JSON-RPC batch is one request of up to maxBatch calls
  // (60 batches ran 6,000 calls in a second under a limit of 600 a minute). Batch members count
  // here, in a fixed window of the same length and budget per client.
  let batchWindow = { start: 0, used: new Map<string, number>() };
  const chargeBatch = config.rateLimit
    ? (request: FastifyRequest, reply: FastifyReply, extra: number) => {
        const { max, windowMs } = config.rateLimit!;
        const now = Date.now();
        if (now - batchWindow.start >= windowMs) batchWindow = { start: now, used: new Map() };
        const key = clientKey(request);
        const used = (batchWindow.used.get(key) ?? 0) + extra;
        if (used > max) {
          reply.header('retry-after', String(Math.max(1, Math.ceil((batchWindow.start + windowMs - now) / 1000))));
          throw Object.assign(new Error(`Rate limit exceeded: the calls of batches count too (${max} per ${windowMs / 1000} s)`), {
            statusCode: 429,
          });
        }
        batchWindow.used.set(key, used);
      }
    : undefined;

  if (config.rateLimit) {
    app.register(rateLimit, {
      global: true,
      max: config.rateLimit.max,
      timeWindow: config.rateLimit.windowMs,
      allowList: (request) => isPublic(request),
      keyGenerator: clientKey,
    });
  }

  app.register(async (scope) => {
    // Built when the app is readied (in start()), after the routes have adopted their contracts.
    const doc = openApiDocument(config, invoker.routes, authenticate !== undefined, prefix);
    scope.get('/healthz', async () => ({ status: 'ok' }));
    scope.get('/readyz', async (_req, reply) => {
      const ready = invoker.ready();
      return reply
        .code(ready ? 200 : 503)
        .send({ status: ready ? 'ready' : 'not ready', transport: transport.state.state, inFlight: invoker.inFlight });
    });
    if (config.docs) {
      scope.get('/openapi.json', async () => doc);
      await scope.register(swagger, { mode: 'static', specification: { document: doc as never } });
      await scope.register(swaggerUi, {
        routePrefix: '/docs',
        // The page's links to its scripts are absolute at `/docs` (no slash): under a prefix they
        // pointed outside it and the page stayed blank.
        ...(prefix ? { indexPrefix: prefix } : {}),
        uiConfig: { validatorUrl: null, tryItOutEnabled: true, displayRequestDuration: true },
        staticCSP: DOCS_CSP,
      });
    }
    const jobs = refs
      ? new JobsFace(invoker, refs, {
          maxWaitMs: config.maxCallTimeout,
          exposeTracebacks: config.exposeTracebacks,
          remoteErrors: config.remoteErrors,
          prefix,
        })
      : undefined;
    registerRest(scope, invoker, config.maxCallTimeout, jobs);
    if (jobs) registerJobs(scope, jobs);
    registerJsonRpc(scope, {
      ...(jobs ? { jobs } : {}),
      invoker,
      argsDepth,
      tooDeep,
      exposeTracebacks: config.exposeTracebacks,
      remoteErrors: config.remoteErrors,
      maxBatch: config.maxBatch,
      maxTimeout: config.maxCallTimeout,
      ...(chargeBatch ? { chargeBatch } : {}),
    });
  });
}
