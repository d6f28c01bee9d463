/**
 * The RPC context of a request, built from what the gateway itself vouches for: the request id
 * (the client's `X-Request-Id` when well-formed, else a new one), W3C trace context, and the
 * identity `authenticate` returned. Nothing else a client sends reaches the context.
 */

import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyRequest } from 'fastify';
import type { Context } from '../core/serializer.js';
import type { Identity } from './auth.js';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const TRACEPARENT = /^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/;
const TRACESTATE = /^[\x20-\x7e]{1,512}$/;

/**
 * The request id hermod-gateway gives a request: the client's `X-Request-Id` when it looks like
 * one, else `req-<uuid>` (oslo's form). It is fastify's `genReqId` there; give it to your own
 * `Fastify({ genReqId: gatewayRequestId })` when you mount the `hermodGateway` plugin in your server,
 * so that the id a caller sends is the `request_id` of the calls it makes.
 */
export function gatewayRequestId(request: { headers: IncomingHttpHeaders }): string {
  const given = request.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : `req-${randomUUID()}`;
}

/** The context sent with every call and cast of `request`. */
export function contextOf(request: FastifyRequest, requestId: string, identity: Identity | undefined): Context {
  const ctx: Context = { ...(identity?.context ?? {}), request_id: requestId };
  const tp = request.headers.traceparent;
  if (typeof tp === 'string' && TRACEPARENT.test(tp)) {
    ctx.traceparent = tp;
    const ts = request.headers.tracestate;
    if (typeof ts === 'string' && TRACESTATE.test(ts)) ctx.tracestate = ts;
  }
  if (identity) {
    if (identity.user !== undefined) ctx.user_id = identity.user;
    if (identity.project !== undefined) ctx.project_id = identity.project;
    ctx.roles = [...(identity.roles ?? [])];
  }
  return ctx;
}
