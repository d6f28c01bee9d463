/**
 * `hermodGateway`: the gateway as a fastify plugin, for an application that has its own fastify
 * server and wants its RPC methods beside its own routes (`app.register(hermodGateway, { prefix:
 * '/rpc', transport, routes })`) rather than on a second port.
 */

import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { ConfigError } from '../core/errors.js';
import type { Transport } from '../transport.js';
import type { GatewayOptions } from './gateway.js';
import { gatewayParts, mountGateway } from './mount.js';

/**
 * What only the owner of an HTTP server can set (a plugin has no say on its connections, their
 * timeouts, or which proxies to believe), and the bin's own access log. Refused, not ignored: an
 * operator who moved `maxConnections` into the plugin's options would believe it in force.
 */
const SERVER_KEYS = [
  'listen',
  'requestTimeout',
  'keepAliveTimeout',
  'maxConnections',
  'maxConnectionsPerAddress',
  'maxPipelined',
  'trustProxy',
  'accessLog',
  'logger',
  'onConnectionRefused',
] as const;

/** The prefixes each server has a gateway at. */
const mounted = new WeakMap<object, Set<string>>();

/** The longest delay a Node timer takes. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** What the contracts' load leaves of fastify's pluginTimeout for the rest of the application's start. */
const CONTRACT_MARGIN_MS = 1_000;

/** fastify's own options of `register()`, which it hands to the plugin with the plugin's. */
const REGISTER_KEYS = new Set(['prefix', 'logLevel', 'logSerializers']);

/**
 * Options of the {@link hermodGateway} plugin: those of `createGateway` but the HTTP server's own
 * (`listen`, `requestTimeout`, `keepAliveTimeout`, `maxConnections`, `maxConnectionsPerAddress`,
 * `maxPipelined`, `trustProxy`, `accessLog`, `logger`, `onConnectionRefused`: give those to your
 * `Fastify(...)`), plus the transport. fastify's `prefix` places every path of the gateway under it.
 */
export interface GatewayPluginOptions extends Omit<GatewayOptions, (typeof SERVER_KEYS)[number]> {
  /** What the calls go out on. The application's: it stays open when the application closes. */
  transport: Transport;
  /**
   * How long the application's `close()` lets the gateway's running calls finish; those still
   * running then are answered 504 (`CallCut`: the method may have run), as `createGateway`'s
   * `stop` does.
   * @default 10000
   */
  closeDeadline?: number;
  /** fastify's: the path every route of the gateway is under (`/rpc` → `/rpc/v1/{topic}/{method}`, `/rpc/jsonrpc`). */
  prefix?: string;
}

/**
 * The gateway as a fastify plugin: REST and JSON-RPC routes, `/healthz`, `/readyz`, the OpenAPI
 * document and `/docs`, jobs, credentials and rate limits, all under the registration's prefix,
 * in a scope of their own (the gateway's body parsers, error shape and hooks do not reach the
 * application's routes). Contracts load (and the transport starts connecting) while the
 * application readies. The application's `close()` stops the gateway's calls: new requests are
 * refused with 503 and running calls get `closeDeadline` to finish. Throws ConfigError on a bad
 * option, at registration, as `createGateway` does.
 *
 * @example
 * ```ts
 * const app = Fastify({ genReqId: gatewayRequestId });
 * await app.register(hermodGateway, { prefix: '/rpc', transport, routes: [{ topic: 'users', method: 'get' }] });
 * await app.listen({ port: 3000 }); // POST /rpc/v1/users/get, POST /rpc/jsonrpc
 * ```
 */
export const hermodGateway: FastifyPluginAsync<GatewayPluginOptions> = async (scope, options) => {
  const { transport, authenticate: hook, jobsKey: keyText, closeDeadline = 10_000, ...rest } = options;
  if (!transport || typeof transport.connect !== 'function' || !transport.driver) {
    throw new ConfigError('hermodGateway needs the transport its calls go out on: register(hermodGateway, { transport, ... })', {
      key: 'transport',
    });
  }
  // A timer's longest delay: beyond it Node fires at once (and the running calls were cut at once).
  if (typeof closeDeadline !== 'number' || !Number.isFinite(closeDeadline) || closeDeadline < 0 || closeDeadline > MAX_TIMER_MS) {
    throw new ConfigError(`closeDeadline must be a number of ms from 0 to ${MAX_TIMER_MS} (got ${String(closeDeadline)})`, {
      key: 'closeDeadline',
    });
  }
  const data: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rest)) if (!REGISTER_KEYS.has(k)) data[k] = v;
  for (const k of SERVER_KEYS) {
    if (Object.hasOwn(data, k)) {
      throw new ConfigError(
        `${k} is a setting of the HTTP server, which is your application's: give it to Fastify(...) (the hermodGateway plugin adds routes to it)`,
        { key: k },
      );
    }
  }
  const { config, refs, authenticate, invoker } = gatewayParts(
    transport,
    data,
    { authenticate: hook, jobsKey: keyText },
    'hermodGateway options',
  );
  let stopping = false;
  // fastify serves `/rpc/` as `/rpc` (and `/` as the root) but keeps the prefix as given: the
  // gateway's own paths (public ones, /jsonrpc, job links, the document's server URL) were built
  // on `/rpc//…` and missed.
  const trim = (p: string) => p.replace(/\/+$/, '');
  // The registration's own prefix decides the 404s: one inherited from an enclosing plugin is the
  // application's, whose misses the gateway answered (401 with credentials on).
  const own = typeof options.prefix === 'string' && trim(options.prefix) !== '';
  // Two gateways at one prefix of one server: fastify's router threw from inside the second's
  // registration ("Method 'ACL' already declared for route '/rpc/*'"), uncaught, and the process died.
  const at = trim(scope.prefix);
  const taken = mounted.get(scope.server) ?? new Set<string>();
  if (taken.has(at)) {
    throw new ConfigError(`a hermodGateway is registered at ${at || 'the root'} of this server already: give each its own prefix`, {
      key: 'prefix',
    });
  }
  taken.add(at);
  mounted.set(scope.server, taken);
  mountGateway(scope, {
    transport,
    config,
    invoker,
    authenticate,
    refs,
    prefix: at,
    ownPrefix: own,
    notFound: own,
    stopping: () => stopping,
  });
  // As createGateway's start(): /readyz says ready once the connection is up, not before.
  if (transport.url.driver !== 'memory') transport.connect().catch(() => undefined);
  // Before the routes' scope is built (it runs after this function), so that the OpenAPI document
  // has the contracts' schemas; within fastify's pluginTimeout, past which the whole application
  // failed to start (the wait for a first connection alone is up to callTimeout). Routes whose
  // servers did not answer in time go without their contracts, as on createGateway's timeout.
  if (config.contractTimeout > 0) {
    const pluginTimeout = scope.initialConfig.pluginTimeout ?? 10_000;
    const budget = pluginTimeout > 0 ? Math.max(0, pluginTimeout - CONTRACT_MARGIN_MS) : Number.POSITIVE_INFINITY;
    const timeout = Math.min(config.contractTimeout, budget);
    if (timeout > 0) await invoker.loadContracts(timeout, Math.min(config.callTimeout, budget - timeout));
  }

  // Requests to the gateway's routes whose bodies are still arriving. fastify's requestTimeout is
  // none by default, so a client trickling a body held the application's close() open for as long
  // as it liked; at closeDeadline their connections are cut, as running calls are answered.
  const uploading = new Set<FastifyRequest>();
  const parsed = (request: FastifyRequest) => {
    uploading.delete(request);
  };
  scope.addHook('onRequest', (request, _reply, done) => {
    uploading.add(request);
    done();
  });
  scope.addHook('preValidation', (request, _reply, done) => {
    parsed(request);
    done();
  });
  scope.addHook('onResponse', (request, _reply, done) => {
    parsed(request);
    done();
  });
  scope.addHook('onRequestAbort', (request, done) => {
    parsed(request);
    done();
  });

  let cutTimer: NodeJS.Timeout | undefined;
  // preClose runs before the server stops accepting and waits for its connections: the calls are
  // stopped here, and those still running at the deadline are answered, so that the server's
  // close (which waits for every response) ends within it.
  scope.addHook('preClose', (done) => {
    stopping = true;
    const drained = invoker.drain();
    cutTimer = setTimeout(() => {
      invoker.cut();
      for (const request of uploading) request.raw.socket?.destroy();
      uploading.clear();
    }, closeDeadline);
    // Only when no upload is left either: a body still arriving is cut at the deadline.
    void drained.then(() => {
      if (uploading.size === 0) clearTimeout(cutTimer);
    });
    done();
  });
  scope.addHook('onClose', (_instance, done) => {
    clearTimeout(cutTimer);
    taken.delete(at);
    done();
  });
};
// The name fastify prints for it (printPlugins, errors), instead of "anonymous".
Object.assign(hermodGateway, { [Symbol.for('fastify.display-name')]: 'hermod-gateway' });
