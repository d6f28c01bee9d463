/**
 * JSON-RPC 2.0 at `POST /jsonrpc`, per the specification: named params, notifications (no `id`)
 * sent as casts and never answered, batches run concurrently and answered with one array, a
 * parse error or an empty batch answered with one error object, an all-notification batch
 * answered with nothing (HTTP 204). Errors carry the gateway's code and HTTP status in `data`.
 */

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { InvalidArgument, type NestingTooDeep } from '../core/errors.js';
import { nestsDeeperThan } from '../core/json.js';
import type { Context } from '../core/serializer.js';
import { type ErrorBody, errorBody, mapError, NotExposed, type RemoteErrorRules, RPC_CODES } from './errors.js';
import type { CallControls, Invoker } from './invoker.js';
import { type JobsFace, type Preferences, preferences, startMode } from './jobs-http.js';
import { idLiterals, inexactId, withIdLiteral } from './raw-ids.js';
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

// Any JSON number is an id, `1e400` too (JSON.parse makes it Infinity): the answer carries the
// request's own digits (raw-ids.ts). It was refused as an Invalid Request with id null.
function validId(id: unknown): id is Id {
  return id === null || typeof id === 'string' || typeof id === 'number';
}

interface Shared {
  invoker: Invoker;
  exposeTracebacks: boolean;
  /** How servers' errors are answered, by class (GatewayConfig.remoteErrors). */
  remoteErrors: RemoteErrorRules;
  /** Jobs, when the gateway serves them: `rpc.job` and `rpc.cancel_job`, and calls started as jobs. */
  jobs?: JobsFace;
}

/** Per request: the controls, and its `Prefer` header (whether and how its calls start as jobs). */
interface PerRequest {
  controls: CallControls;
  prefer: Preferences | undefined;
  /** Set when a call of the request started as a job because the client asked (for Preference-Applied). */
  startedJob: boolean;
}

/** The params of `rpc.job` / `rpc.cancel_job`: `{ job: ref, wait?: seconds }`. */
function jobParams(params: unknown, method: string, maxWaitMs: number): { ref: string; waitMs: number } {
  const p = (params ?? {}) as Record<string, unknown>;
  if (typeof p !== 'object' || Array.isArray(p) || typeof p.job !== 'string') {
    throw new InvalidArgument(`${method} takes named params { job: <the job reference>${method === 'rpc.job' ? ', wait?: seconds' : ''} }`);
  }
  for (const k of Object.keys(p)) {
    if (k !== 'job' && !(k === 'wait' && method === 'rpc.job')) throw new InvalidArgument(`${method} has no param ${k.slice(0, 100)}`);
  }
  const wait = p.wait ?? 0;
  if (typeof wait !== 'number' || !Number.isInteger(wait) || wait < 0) throw new InvalidArgument('wait must be whole seconds from 0');
  return { ref: p.job, waitMs: Math.min(wait * 1000, maxWaitMs) };
}

/** JSON-RPC's reserved `rpc.` names (the specification keeps them for extensions): the job methods. */
async function reserved(method: string, params: unknown, s: Shared, state: RequestState, requestId: string): Promise<unknown> {
  const jobs = s.jobs;
  if (jobs && method === 'rpc.job') {
    const { ref, waitMs } = jobParams(params, method, jobs.options.maxWaitMs);
    return jobs.read(state, ref, waitMs, requestId);
  }
  if (jobs && method === 'rpc.cancel_job') return jobs.cancel(state, jobParams(params, method, 0).ref);
  throw new NotExposed(`${method.slice(0, 200)} is not a method of this gateway${jobs ? ' (rpc.job, rpc.cancel_job)' : ''}`);
}

async function one(item: unknown, s: Shared, state: RequestState, requestId: string, per: PerRequest): Promise<RpcResponse | undefined> {
  const { controls } = per;
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
    if (req.method.startsWith('rpc.')) {
      const result = await reserved(req.method, req.params, s, state, requestId);
      return notification ? undefined : { jsonrpc: '2.0', result, id };
    }
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
      // A job route takes no cast: its method is started as a job, whose token nobody asked for.
      // Before, the cast was refused and the refusal swallowed: 204, and the method never ran.
      const job = route.route.job === true ? { waitMs: 0 } : undefined;
      await s.invoker.invoke(route, ctx, args, job ? controls : { ...controls, cast: true }, job).catch(() => undefined);
      return undefined;
    }
    const mode = s.jobs ? startMode(per.prefer, route.route.job === true) : { asked: false };
    const outcome = await s.invoker.invoke(route, ctx, args, controls, mode.startJob);
    if (outcome.kind === 'job') {
      if (mode.asked) per.startedJob = true;
      return { jsonrpc: '2.0', result: s.jobs!.started(state, route, outcome.token), id };
    }
    return { jsonrpc: '2.0', result: outcome.kind === 'result' ? (outcome.result ?? null) : null, id };
  } catch (err) {
    if (notification) return undefined;
    const m = mapError(err, s.remoteErrors);
    const body = errorBody(err, requestId, s.exposeTracebacks, s.remoteErrors);
    return failure(m.rpcCode, body.message, id, { ...body, status: m.status });
  }
}

/** The content types `POST /jsonrpc` takes. */
const JSON_RPC_TYPES = ['application/json', 'application/json-rpc', 'application/jsonrequest'];

/** Registers `POST /jsonrpc`, with its own body parser so that invalid JSON is a JSON-RPC parse error. */
export function registerJsonRpc(
  app: FastifyInstance,
  shared: Shared & {
    maxBatch: number;
    maxTimeout: number;
    /** How deep arguments may nest (maxJsonDepth less the levels of the message around them). */
    argsDepth: number;
    /** The refusal of a body too deep, with `around` levels of its own around the params (`of`: what they are). */
    tooDeep: (around: number, of: string) => NestingTooDeep;
    /** Counts a batch's members past the first against the client's rate limit; throws a 429 past it. */
    chargeBatch?: (request: FastifyRequest, reply: FastifyReply, extra: number) => void;
  },
): void {
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    // The media types JSON-RPC clients send besides JSON's own (the JSON-RPC over HTTP drafts
    // name them; a client sending them got a 415).
    scope.addContentTypeParser(JSON_RPC_TYPES, { parseAs: 'string' }, (_req, body, done) => done(null, body));
    scope.post('/jsonrpc', async (request: FastifyRequest, reply) => {
      const state = request.hermod as RequestState;
      const prefer = shared.jobs && request.headers.prefer !== undefined ? preferences(request, shared.jobs.options.maxWaitMs) : undefined;
      const controls = { ...requestControls(request, shared.maxTimeout), client: state.client };
      const per: PerRequest = { controls, prefer, startedJob: false };
      const applied = () => {
        // Said only to a client that asked: a job route's calls start as jobs for everyone.
        if (per.startedJob) reply.header('preference-applied', 'respond-async');
      };
      let payload: unknown;
      const text = String(request.body ?? '');
      // Refused as a whole, as the table says (400, -32600, the code in `data`), by the error
      // handler that shapes every other refusal: it was HTTP 200 with no `data` here.
      // params sit one level into a request object, two into a batch.
      const batch = /^\s*\[/.test(text);
      if (nestsDeeperThan(text, shared.argsDepth + (batch ? 2 : 1))) {
        throw batch ? shared.tooDeep(2, 'the batch and its request objects') : shared.tooDeep(1, 'the request object');
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
        const literals = payload.some((item) => inexactId((item as { id?: unknown } | null)?.id)) ? idLiterals(text) : undefined;
        const all = await Promise.all(payload.map((item) => one(item, shared, state, request.id, per)));
        applied();
        if (all.every((a) => a === undefined)) return reply.code(204).send();
        if (literals === undefined) return reply.send(all.filter((a): a is RpcResponse => a !== undefined));
        const parts: string[] = [];
        for (const [i, a] of all.entries()) if (a !== undefined) parts.push(withIdLiteral(a, literals[i]));
        return reply.type('application/json; charset=utf-8').send(`[${parts.join(',')}]`);
      }
      const literal = inexactId((payload as { id?: unknown } | null)?.id) ? idLiterals(text)[0] : undefined;
      const answer = await one(payload, shared, state, request.id, per);
      applied();
      if (answer === undefined) return reply.code(204).send();
      return literal === undefined
        ? reply.send(answer)
        : reply.type('application/json; charset=utf-8').send(withIdLiteral(answer, literal));
    });
  });
}
