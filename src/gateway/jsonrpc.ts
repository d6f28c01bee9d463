/**
 * JSON-RPC 2.0 at `POST /jsonrpc`, per the specification: named params, notifications (no `id`)
 * sent as casts and never answered, batches run concurrently and answered with one array, a
 * parse error or an empty batch answered with one error object, an all-notification batch
 * answered with nothing (HTTP 204). Errors carry the gateway's code and HTTP status in `data`.
 */

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { InvalidArgument } from '../core/errors.js';
import { nestsDeeperThan } from '../core/json.js';
import type { Context } from '../core/serializer.js';
import { type ErrorBody, errorBody, mapError, RPC_CODES } from './errors.js';
import type { CallControls, Invoker } from './invoker.js';
import { requestControls } from './rest.js';
import type { RequestState } from './state.js';

type Id = string | number | null;

/** A JSON-RPC response object. */
export type RpcResponse =
  | { jsonrpc: '2.0'; result: unknown; id: Id }
  | { jsonrpc: '2.0'; error: { code: number; message: string; data?: ErrorBody & { status?: number } }; id: Id };

const failure = (code: number, message: string, id: Id, data?: ErrorBody & { status?: number }): RpcResponse => ({
  jsonrpc: '2.0',
  error: { code, message, ...(data ? { data } : {}) },
  id,
});

function validId(id: unknown): id is Id {
  return id === null || typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id));
}

interface Shared {
  invoker: Invoker;
  exposeTracebacks: boolean;
}

async function one(
  item: unknown,
  s: Shared,
  state: RequestState,
  requestId: string,
  controls: CallControls,
): Promise<RpcResponse | undefined> {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) {
    return failure(RPC_CODES.invalidRequest, 'Invalid Request: not a request object', null);
  }
  const req = item as Record<string, unknown>;
  const notification = !('id' in req);
  const id: Id = !notification && validId(req.id) ? req.id : null;
  if (req.jsonrpc !== '2.0' || typeof req.method !== 'string' || (!notification && !validId(req.id))) {
    return failure(RPC_CODES.invalidRequest, 'Invalid Request: needs jsonrpc "2.0", a method name and a string, number or null id', id);
  }
  if (req.params !== undefined && (req.params === null || typeof req.params !== 'object')) {
    return failure(RPC_CODES.invalidRequest, 'Invalid Request: params must be an object or an array', id);
  }
  try {
    const route = s.invoker.byRpcName(req.method);
    s.invoker.authorize(route, state.identity);
    let params = req.params ?? {};
    if (Array.isArray(params)) {
      if (params.length > 0) throw new InvalidArgument(`${route.name} takes named params (an object), not positional ones`);
      params = {};
    }
    const args = s.invoker.checkArgs(route, params);
    const ctx: Context = state.context();
    if (notification) {
      // Never answered, so a failure is not reported either (the spec's rule for notifications).
      await s.invoker.invoke(route, ctx, args, { ...controls, cast: true }).catch(() => undefined);
      return undefined;
    }
    const outcome = await s.invoker.invoke(route, ctx, args, controls);
    return { jsonrpc: '2.0', result: outcome.kind === 'result' ? (outcome.result ?? null) : null, id };
  } catch (err) {
    if (notification) return undefined;
    const m = mapError(err);
    const body = errorBody(err, requestId, s.exposeTracebacks);
    return failure(m.rpcCode, body.message, id, { ...body, status: m.status });
  }
}

/** Registers `POST /jsonrpc`, with its own body parser so that invalid JSON is a JSON-RPC parse error. */
export function registerJsonRpc(
  app: FastifyInstance,
  shared: Shared & {
    maxBatch: number;
    maxTimeout: number;
    maxDepth: number;
    /** Counts a batch's members past the first against the client's rate limit; throws a 429 past it. */
    chargeBatch?: (request: FastifyRequest, reply: FastifyReply, extra: number) => void;
  },
): void {
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => done(null, body));
    scope.post('/jsonrpc', async (request: FastifyRequest, reply) => {
      const state = request.hermod as RequestState;
      const controls = requestControls(request, shared.maxTimeout);
      let payload: unknown;
      const text = String(request.body ?? '');
      if (nestsDeeperThan(text, shared.maxDepth)) {
        return reply.send(
          failure(RPC_CODES.invalidRequest, `Invalid Request: the body nests deeper than ${shared.maxDepth} levels (maxJsonDepth)`, null),
        );
      }
      try {
        payload = JSON.parse(text);
      } catch {
        return reply.send(failure(RPC_CODES.parseError, 'Parse error: the body is not valid JSON', null));
      }
      if (Array.isArray(payload)) {
        if (payload.length === 0) return reply.send(failure(RPC_CODES.invalidRequest, 'Invalid Request: empty batch', null));
        if (payload.length > shared.maxBatch) {
          return reply.send(failure(RPC_CODES.invalidRequest, `Invalid Request: a batch holds at most ${shared.maxBatch} requests`, null));
        }
        // The rate limit counted this request once; its other members count too.
        shared.chargeBatch?.(request, reply, payload.length - 1);
        const answers = (await Promise.all(payload.map((item) => one(item, shared, state, request.id, controls)))).filter(
          (a): a is RpcResponse => a !== undefined,
        );
        return answers.length === 0 ? reply.code(204).send() : reply.send(answers);
      }
      const answer = await one(payload, shared, state, request.id, controls);
      return answer === undefined ? reply.code(204).send() : reply.send(answer);
    });
  });
}
