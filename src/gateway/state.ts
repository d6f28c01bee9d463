/** What the gateway attaches to each request: the caller's identity and its RPC context. */

import type { Context } from '../core/serializer.js';
import type { Identity } from './auth.js';

/** What the gateway attaches to each request of its routes (`request.hermod`). */
export interface RequestState {
  /** Who the caller is, as `authenticate` (or the keys file) said; undefined when anonymous. */
  identity: Identity | undefined;
  /**
   * Who is calling, for per-client limits (the rate limit, `maxInFlightPerClient`): the
   * identity's user and project when there is one, else the client's address.
   */
  client: string;
  /** A fresh copy of the request's RPC context (request id, trace context, identity). */
  context(): Context;
}

/** The mark the gateway puts on each of its routes' config, for an application's own hooks. */
export interface GatewayRouteMark {
  /** Open without credentials: /healthz, /readyz, /openapi.json, /docs and CORS preflights. */
  public: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** What the gateway attaches to the requests of its routes (null on other routes). */
    hermod: RequestState | null;
  }
  interface FastifyContextConfig {
    /** Set on the gateway's routes (`request.routeOptions.config.hermodGateway`), absent on others. */
    hermodGateway?: GatewayRouteMark;
  }
}
