/** What the gateway attaches to each request: the caller's identity and its RPC context. */

import type { Context } from '../core/serializer.js';
import type { Identity } from './auth.js';

export interface RequestState {
  identity: Identity | undefined;
  /**
   * Who is calling, for per-client limits (the rate limit, `maxInFlightPerClient`): the
   * identity's user and project when there is one, else the client's address.
   */
  client: string;
  /** A fresh copy of the request's RPC context (request id, trace context, identity). */
  context(): Context;
}

declare module 'fastify' {
  interface FastifyRequest {
    hermod: RequestState | null;
  }
}
