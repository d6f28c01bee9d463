/** What the gateway attaches to each request: the caller's identity and its RPC context. */

import type { Context } from '../core/serializer.js';
import type { Identity } from './auth.js';

export interface RequestState {
  identity: Identity | undefined;
  /** A fresh copy of the request's RPC context (request id, trace context, identity). */
  context(): Context;
}

declare module 'fastify' {
  interface FastifyRequest {
    hermod: RequestState | null;
  }
}
