/**
 * Long operations over HTTP. A REST request sent with `Prefer: respond-async` (RFC 7240) starts
 * its call as a job on the server and is answered `202 Accepted` with a `Location` to poll,
 * `/v1/jobs/{ref}`: `GET` reads the job's state (and, once it ended, its result or error), `DELETE`
 * asks it to stop. `Prefer: wait=N` (or `?wait=N` on a poll) waits up to N seconds for the end
 * first. The reference is sealed (see job-refs.ts): only the caller that started the job can use it.
 */

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { InvalidArgument } from '../core/errors.js';
import type { JobStatus } from '../jobs/poller.js';
import type { JobToken } from '../jobs/token.js';
import { errorBody, type RemoteErrorRules } from './errors.js';
import type { CompiledRoute, Invoker, JobView } from './invoker.js';
import { type JobRefs, ownerOf } from './job-refs.js';
import type { RequestState } from './state.js';

/** What a request's `Prefer` header asks of the gateway. */
export interface Preferences {
  /** `respond-async`: answer 202 with a job reference rather than wait for the end. */
  respondAsync: boolean;
  /** `wait=N`, in ms: how long the client is willing to wait for a result first. */
  waitMs?: number;
}

/**
 * The preferences of `request` this gateway knows. Unknown preferences and malformed values are
 * ignored, and of a preference given twice the first counts, as RFC 7240 asks of a server;
 * `wait` is bounded by `maxWaitMs`. (Node bounds the whole header, at 16 KiB of headers.)
 */
export function preferences(request: FastifyRequest, maxWaitMs: number): Preferences {
  const out: Preferences = { respondAsync: false };
  const raw = request.headers.prefer;
  if (raw === undefined) return out;
  const text = Array.isArray(raw) ? raw.join(',') : raw;
  let waitSeen = false;
  for (const item of text.split(',')) {
    const [head = ''] = item.split(';');
    const eq = head.indexOf('=');
    const name = (eq < 0 ? head : head.slice(0, eq)).trim().toLowerCase();
    const value =
      eq < 0
        ? undefined
        : head
            .slice(eq + 1)
            .trim()
            .replace(/^"(.*)"$/, '$1');
    if (name === 'respond-async') out.respondAsync = true;
    else if (name === 'wait' && !waitSeen) {
      waitSeen = true;
      // Any number of digits: a wait longer than the gateway allows is the longest it allows (ten
      // digits were ignored, and the call answered at once).
      if (value !== undefined && /^\d+$/.test(value)) out.waitMs = Math.min(Number(value) * 1000, maxWaitMs);
    }
  }
  return out;
}

/** How one call starts, from the request's preferences and its route. */
export interface StartMode {
  /** Start the call as a job, waiting up to `waitMs` for its end before answering with the job. */
  startJob?: { waitMs: number };
  /** The client asked for it (`respond-async`): only then is `Preference-Applied` sent. */
  asked: boolean;
}

/**
 * The one rule for REST and JSON-RPC alike: `Prefer: respond-async` makes any call a job, a job
 * route's calls are jobs for everyone, and `wait=N` is how long to wait for the end first on
 * either (a job route honours it without `respond-async`).
 */
export function startMode(prefer: Preferences | undefined, jobRoute: boolean): StartMode {
  const asked = prefer?.respondAsync ?? false;
  if (!asked && !jobRoute) return { asked };
  return { startJob: { waitMs: prefer?.waitMs ?? 0 }, asked };
}

/** Answers a started job: 202, its reference and where to poll it. */
export function acceptedJob(
  reply: FastifyReply,
  face: JobsFace,
  route: CompiledRoute,
  token: JobToken,
  request: FastifyRequest,
  asked: boolean,
) {
  const body = face.started(request.hermod as RequestState, route, token);
  // Said only to a client that asked: a job route answers 202 to everyone.
  if (asked) reply.header('preference-applied', 'respond-async');
  return reply
    .code(202)
    .header('location', body.href)
    .send({ ...body, requestId: request.id });
}

/** Adds `Prefer` to the response's `Vary` (what a cache must key on): its answer depends on it. */
export function varyOnPrefer(reply: FastifyReply): void {
  const vary = reply.getHeader('vary');
  reply.header('vary', vary ? `${String(vary)}, Prefer` : 'Prefer');
}

/** The JSON of a job's status, as the jobs routes answer it. */
function statusBody(ref: string, route: CompiledRoute, s: JobStatus) {
  return {
    job: ref,
    method: route.name,
    state: s.state,
    done: s.state === 'succeeded' || s.state === 'failed' || s.state === 'cancelled',
    progress: s.progress,
    message: s.message,
    createdAt: s.createdAt,
    startedAt: s.startedAt,
    endedAt: s.endedAt,
    cancelRequested: s.cancelRequested,
  };
}

/** `?wait=N` of a poll (seconds), else the `Prefer: wait=N`; InvalidArgument for anything but whole seconds. */
function pollWait(request: FastifyRequest, maxWaitMs: number): number {
  const query = (request.query ?? {}) as Record<string, unknown>;
  for (const k of Object.keys(query)) {
    if (k !== 'wait') throw new InvalidArgument(`unknown query parameter ${k.slice(0, 100)}; a job poll takes wait (seconds)`);
  }
  const raw = query.wait;
  if (raw === undefined) return preferences(request, maxWaitMs).waitMs ?? 0;
  // Any number of digits, capped as Prefer's wait and rpc.job's are: `9999999999` was refused
  // here only, saying it was not whole seconds.
  if (typeof raw !== 'string' || !/^\d{1,1000}$/.test(raw))
    throw new InvalidArgument(`wait must be given once, as whole seconds from 0 (got ${JSON.stringify(raw).slice(0, 40)})`);
  return Math.min(Number(raw) * 1000, maxWaitMs);
}

/** What REST and JSON-RPC share to read and cancel jobs by reference. */
export class JobsFace {
  constructor(
    readonly invoker: Invoker,
    readonly refs: JobRefs,
    readonly options: {
      maxWaitMs: number;
      exposeTracebacks: boolean;
      remoteErrors: RemoteErrorRules;
      /** Where the gateway's paths start in the app ('' on its own server). */
      prefix: string;
    },
  ) {}

  /** The job of `ref`, and the route it was started on (whose roles the caller must still hold). */
  private opened(state: RequestState, ref: string) {
    const { token, route: name } = this.refs.open(ref, ownerOf(state.identity));
    const route = this.invoker.byRpcName(name);
    this.invoker.authorize(route, state.identity);
    return { token, route };
  }

  /** The job's status, and once it ended its result or error, after waiting up to `waitMs` for the end. */
  async read(state: RequestState, ref: string, waitMs: number, requestId: string) {
    const { token, route } = this.opened(state, ref);
    const view: JobView = await this.invoker.jobView(route, token, state.context(), waitMs, state.client);
    return {
      ...statusBody(ref, route, view.status),
      ...(view.result ? { result: view.result.value ?? null } : {}),
      ...(view.error ? { error: errorBody(view.error, requestId, this.options.exposeTracebacks, this.options.remoteErrors) } : {}),
    };
  }

  /** Asks the job to stop; its status (JobFinished when it had ended). */
  async cancel(state: RequestState, ref: string) {
    const { token, route } = this.opened(state, ref);
    return statusBody(ref, route, await this.invoker.cancelJob(token, state.context(), state.client));
  }

  /** What a call started as a job answers with: its reference and where to poll it. */
  started(state: RequestState, route: CompiledRoute, token: JobToken) {
    const ref = this.refs.seal(token, route.name, ownerOf(state.identity));
    // No state: the server may have started it already, or (after a wait) long ago; a poll says.
    return { job: ref, href: `${this.options.prefix}/v1/jobs/${ref}`, method: route.name };
  }
}

/** Registers `GET` and `DELETE /v1/jobs/{ref}` on `app`. */
export function registerJobs(app: FastifyInstance, face: JobsFace): void {
  // No HEAD: a poll with ?wait=N would hold the request for an answer it throws away.
  // A wildcard, not `:ref`: a reference is a few hundred characters, over the 100 that fastify's
  // router allows a path parameter by default, and in an application's own server (the plugin)
  // that limit is the application's (polls were refused 414). JobRefs.open checks the reference's
  // length and characters (a `/` in it is no reference: 404).
  app.get<{ Params: { '*': string } }>('/v1/jobs/*', { exposeHeadRoute: false }, async (request, reply) => {
    const waitMs = pollWait(request, face.options.maxWaitMs);
    varyOnPrefer(reply);
    return reply.code(200).send(await face.read(request.hermod as RequestState, request.params['*'], waitMs, request.id));
  });

  app.delete<{ Params: { '*': string } }>('/v1/jobs/*', async (request, reply) => {
    if (Object.keys((request.query ?? {}) as object).length > 0) throw new InvalidArgument('a job cancel takes no query parameters');
    return reply.code(202).send(await face.cancel(request.hermod as RequestState, request.params['*']));
  });
}
