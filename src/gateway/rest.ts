/**
 * The REST face: `POST /v1/{topic}/{method}` (body = the arguments object; controls as query
 * parameters or `X-Hermod-*` headers) and alias routes (`GET /users/:id` → users.get, path and
 * query parameters merged into the arguments; controls as headers only).
 */

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { InvalidArgument } from '../core/errors.js';
import { setOwn } from '../core/plain.js';
import type { AliasVerb, SchemaObject } from './config.js';
import { type CallControls, CONTROL_NAMES, type CompiledRoute, type Invoker, parseControls } from './invoker.js';
import { acceptedJob, type JobsFace, preferences, type StartMode, startMode, varyOnPrefer } from './jobs-http.js';
import type { RequestState } from './state.js';

const HEADERS = CONTROL_NAMES.map((k) => [k, `x-hermod-${k}`] as const);

/** `X-Hermod-Server` … from the headers. */
export function headerControls(request: FastifyRequest, maxTimeout: number): CallControls {
  const values: Record<string, unknown> = {};
  for (const [k, header] of HEADERS) {
    const v = request.headers[header];
    if (v === undefined) continue;
    // Node joins a header sent twice with ", ": refused as the query's repeated key is, naming
    // the header, not as a value no check takes ("version must look like X.Y, got 1.0, 1.0").
    if (typeof v === 'string' && v.includes(', ')) {
      const times = timesGiven(request.raw.rawHeaders, header);
      if (times > 1) throw new InvalidArgument(`the ${header} header is given ${times} times; give it once`);
    }
    values[k] = v;
  }
  return parseControls(values, maxTimeout);
}

/** How many times the raw header list (name, value, name, …) holds `name` (lower case). */
function timesGiven(raw: string[], name: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) n++;
  return n;
}

/**
 * The controls of a REST or JSON-RPC request: the `X-Hermod-*` headers, then the query (which
 * wins). Any other query parameter is refused: arguments go in the body.
 */
export function requestControls(request: FastifyRequest, maxTimeout: number): CallControls {
  const query = (request.query ?? {}) as Record<string, unknown>;
  for (const k of Object.keys(query)) {
    if (!(CONTROL_NAMES as readonly string[]).includes(k)) {
      // Bounded: the name is the client's text, sent back to it.
      const name = k.length > 100 ? `${k.slice(0, 100)}… (${k.length} characters)` : k;
      throw new InvalidArgument(`unknown query parameter ${name}; the arguments go in the body (query: ${CONTROL_NAMES.join(', ')})`);
    }
  }
  return { ...headerControls(request, maxTimeout), ...parseControls(query, maxTimeout) };
}

function bodyObject(body: unknown, route: CompiledRoute): Record<string, unknown> {
  // No body is {}; `null` is a body, and not an object (it was taken as {}).
  if (body === undefined) return {};
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new InvalidArgument(`the body of ${route.name} must be a JSON object of named arguments`);
  }
  return body as Record<string, unknown>;
}

// Path and query values are text; where the route's schema says a property is a number or a
// boolean, the text is read as one (and left as text when it is not one, for the schema to refuse).
function coerceScalar(value: unknown, schema: SchemaObject | undefined): unknown {
  if (typeof value !== 'string' || !schema) return value;
  const types = ([] as unknown[]).concat(schema.type ?? []);
  if ((types.includes('integer') || types.includes('number')) && /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(value)) return Number(value);
  if (types.includes('boolean') && (value === 'true' || value === 'false')) return value === 'true';
  return value;
}

/**
 * A path or query value read as the property's schema says, as fastify's querystring coercion
 * would: where the schema is an array, a repeated key (`?ids=1&ids=2`, which the query parser
 * makes a list) and a single value (`?ids=1`, wrapped) are a list, and each item is read by the
 * schema of `items`. Before, the OpenAPI document listed such parameters and every way of sending
 * them was a 400.
 */
function coerceTo(value: unknown, schema: SchemaObject | undefined, root: SchemaObject): unknown {
  if (!schema) return value;
  const types = ([] as unknown[]).concat(schema.type ?? []);
  if (!types.includes('array')) return coerceScalar(value, schema);
  // A text the schema also accepts as text stays text (`type: ["string", "array"]`).
  if (typeof value === 'string' && types.includes('string')) return value;
  const list = Array.isArray(value) ? value : typeof value === 'string' ? [value] : undefined;
  if (!list) return value;
  const items = schema.items !== null && typeof schema.items === 'object' ? localSchema(root, schema.items as SchemaObject) : undefined;
  return list.map((v) => coerceScalar(v, items));
}

async function respond(
  invoker: Invoker,
  route: CompiledRoute,
  request: FastifyRequest,
  reply: FastifyReply,
  args: unknown,
  controls: CallControls,
  jobs: JobsFace | undefined,
) {
  const state = request.hermod as RequestState;
  invoker.authorize(route, state.identity);
  const checked = invoker.checkArgs(route, args);
  let mode: StartMode = { asked: false };
  if (jobs) {
    // A GET's answer may be cached: it depends on the header, sent or not. (POSTs are not cached.)
    if (request.method === 'GET') varyOnPrefer(reply);
    const prefer = request.headers.prefer === undefined ? undefined : preferences(request, jobs.options.maxWaitMs);
    mode = startMode(prefer, route.route.job === true);
  }
  const { startJob, asked } = mode;
  const outcome = await invoker.invoke(route, state.context(), checked, { ...controls, client: state.client }, startJob);
  if (outcome.kind === 'accepted') return reply.code(202).send({ accepted: true, requestId: request.id });
  if (outcome.kind === 'job') return acceptedJob(reply, jobs!, route, outcome.token, request, asked);
  // Always an object, so that a string or null result is still JSON (and unambiguous).
  return reply.code(200).send({ result: outcome.result ?? null });
}

/** Registers the REST routes on `app`. */
export function registerRest(app: FastifyInstance, invoker: Invoker, maxTimeout: number, jobs?: JobsFace): void {
  app.post<{ Params: { topic: string; method: string }; Querystring: Record<string, unknown> }>(
    '/v1/:topic/:method',
    async (request, reply) => {
      const route = invoker.byPath(request.params.topic, request.params.method);
      return respond(invoker, route, request, reply, bodyObject(request.body, route), requestControls(request, maxTimeout), jobs);
    },
  );

  for (const route of invoker.routes) {
    if (!route.route.alias) continue;
    const [verb, url] = route.route.alias.split(' ') as [AliasVerb, string];
    app.route<{ Params: Record<string, string>; Querystring: Record<string, unknown> }>({
      method: verb,
      url,
      // fastify answers HEAD with a GET route by default: a HEAD ran the call (and with Prefer:
      // respond-async started a job) to throw its answer away. HEAD is not an RPC verb here.
      exposeHeadRoute: false,
      handler: async (request, reply) => {
        // Read per request: a contract the route adopts from its servers arrives after registration.
        const schema = (route.route.args ?? route.contract?.args) as SchemaObject | undefined;
        const props = (schema?.properties ?? {}) as Record<string, SchemaObject>;
        const coerce = (k: string, v: unknown) => (Object.hasOwn(props, k) ? coerceTo(v, localSchema(schema!, props[k]), schema!) : v);
        const args: Record<string, unknown> = { ...bodyObject(request.body, route) };
        // setOwn: `?__proto__=…` is a key the arguments then refuse, not a prototype set in passing.
        for (const [k, v] of Object.entries(request.query ?? {})) setOwn(args, k, coerce(k, v));
        for (const [k, v] of Object.entries(request.params ?? {})) setOwn(args, k, coerce(k, v));
        return respond(invoker, route, request, reply, args, headerControls(request, maxTimeout), jobs);
      },
    });
  }
}

/**
 * `s` with its `#/$defs/…` (or `#/definitions/…`) references followed within `root`, so that a
 * path or query parameter declared as `{"$ref": "#/$defs/id"}` is coerced by the type it names.
 */
function localSchema(root: SchemaObject, s: SchemaObject | undefined): SchemaObject | undefined {
  let out = s;
  for (let hops = 0; hops < 8 && out && typeof out.$ref === 'string'; hops++) {
    const m = /^#\/(\$defs|definitions)\/([^/]+)$/.exec(out.$ref as string);
    const defs = m ? (root[m[1]!] as Record<string, SchemaObject> | undefined) : undefined;
    const name = m ? decodeURIComponent(m[2]!).replace(/~1/g, '/').replace(/~0/g, '~') : '';
    if (!defs || !Object.hasOwn(defs, name)) break;
    out = defs[name];
  }
  return out;
}
