/**
 * The OpenAPI 3.1 document of a gateway, built from its route table: one operation per REST
 * path and alias, the JSON-RPC endpoint, the error shape and the security schemes. OpenAPI 3.1
 * takes JSON Schema 2020-12 as it is, so the routes' schemas go in unchanged.
 */

import { aliasPath, type ResolvedGatewayConfig, type SchemaObject, schemaObject, VERSION_PATTERN } from './config.js';
import type { CompiledRoute } from './invoker.js';

const ERROR_REF = { $ref: '#/components/schemas/Error' };
const errorResponse = (description: string) => ({ description, content: { 'application/json': { schema: ERROR_REF } } });

const ERRORS = {
  '400': errorResponse('Arguments or controls are invalid (schema violation, bad timeout, …)'),
  '401': errorResponse('No or unknown credentials'),
  '403': errorResponse('The caller lacks the roles this method needs'),
  '404': errorResponse('Not exposed, or the server has no such method'),
  '409': errorResponse('No server supports the requested version'),
  '413': errorResponse('Body larger than the limit'),
  '415': errorResponse('A body that is not application/json'),
  '429': errorResponse('Rate limit reached, or this client has maxInFlightPerClient calls running (see Retry-After)'),
  '502': errorResponse('The remote method raised, or broke its result schema'),
  '503': errorResponse('Transport down, gateway stopping or overloaded (see Retry-After)'),
  '504': errorResponse('No reply within the call timeout'),
};

/** {@link ERRORS} with the statuses `remoteErrors` gives servers' own errors, each naming its classes. */
function errorsWith(rules: ResolvedGatewayConfig['remoteErrors']): Record<string, ReturnType<typeof errorResponse>> {
  const byStatus = new Map<string, string[]>();
  for (const [cls, rule] of Object.entries(rules)) {
    const list = byStatus.get(String(rule.status)) ?? [];
    list.push(cls);
    byStatus.set(String(rule.status), list);
  }
  const out: Record<string, ReturnType<typeof errorResponse>> = { ...ERRORS };
  for (const [status, classes] of [...byStatus].sort(([a], [b]) => Number(a) - Number(b))) {
    const raised = `the remote method raised ${classes.join(', ')}`;
    const known = out[status];
    out[status] = errorResponse(known ? `${known.description}; or ${raised}` : raised.charAt(0).toUpperCase() + raised.slice(1));
  }
  return out;
}

const CONTROL_PARAMS = [
  { name: 'server', schema: { type: 'string' }, description: 'Send to this server of the topic' },
  { name: 'namespace', schema: { type: 'string' }, description: "The endpoint's namespace" },
  { name: 'version', schema: { type: 'string', pattern: VERSION_PATTERN }, description: 'API version X.Y or X.Y.Z' },
  { name: 'timeout', schema: { type: 'integer', minimum: 1 }, description: 'Call timeout in ms' },
  { name: 'cast', schema: { type: 'boolean' }, description: 'Send without waiting for a result (202)' },
];

/** Route schemas' `$defs`, hoisted into `components.schemas` while a document is built. */
interface Hoisted {
  schemas: Record<string, unknown>;
  /** The component name of each hoisted schema, by its full name (`<topic>.<method>.args.<def>`). */
  names: Map<string, string>;
  taken: Set<string>;
}

/** The route as documented: its own schemas, else those of its method's published contract. */
function documented(route: CompiledRoute, defs: Hoisted) {
  const r = route.route;
  const c = route.contract;
  const args = schemaObject(r.args ?? c?.args);
  const result = schemaObject(r.result ?? c?.result);
  return {
    ...r,
    ...(args ? { args: hoist(args, `${route.name}.args`, defs) } : {}),
    ...(result ? { result: hoist(result, `${route.name}.result`, defs) } : {}),
    ...(r.summary || !c?.description ? {} : { summary: c.description }),
  };
}

/**
 * The component name of the schema named `full`: OpenAPI allows letters, digits, `.`, `-` and
 * `_`, the others become `_`, and a name another schema has already (`a:b.m…` and `a_b.m…`) gets
 * `_2`, `_3`, …: one took the other's place, and its references with it.
 */
function componentName(full: string, defs: Hoisted): string {
  let name = defs.names.get(full);
  if (name !== undefined) return name;
  const base = full.replace(/[^A-Za-z0-9._-]/g, '_');
  name = base;
  for (let n = 2; defs.taken.has(name); n++) name = `${base}_${n}`;
  defs.names.set(full, name);
  defs.taken.add(name);
  return name;
}

/**
 * `schema` as it may stand inside the document: its `$defs` (and draft-07 `definitions`) moved to
 * `components.schemas` as `<prefix>.<name>`, and its `#/$defs/…` references pointed there. Pasted
 * as it was, a reference resolved against the document's root, where there is no `$defs`.
 */
function hoist(schema: SchemaObject, prefix: string, defs: Hoisted): SchemaObject {
  const self = componentName(prefix, defs);
  let rooted = false;
  const rewrite = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(rewrite);
    if (!v || typeof v !== 'object') return v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      let value: unknown;
      const local = k === '$ref' && typeof x === 'string' && x.startsWith('#') ? x : undefined;
      const def = local ? /^#\/(\$defs|definitions)\/([^/]+)(.*)$/.exec(local) : null;
      if (def) {
        const name = decodeURIComponent(def[2]!).replace(/~1/g, '/').replace(/~0/g, '~');
        value = `#/components/schemas/${componentName(`${prefix}.${name}`, defs)}${def[3]}`;
      } else if (local !== undefined) {
        // Any other place in the schema (`#` itself for a recursive one, `#/properties/…`): the
        // schema becomes a component of its own, and the reference points into it.
        rooted = true;
        value = `#/components/schemas/${self}${local.slice(1)}`;
      } else value = rewrite(x);
      Object.defineProperty(out, k, { value, enumerable: true, writable: true, configurable: true });
    }
    return out;
  };
  const out = rewrite(schema) as Record<string, unknown>;
  for (const key of ['$defs', 'definitions']) {
    const found = out[key];
    if (!found || typeof found !== 'object') continue;
    for (const [name, def] of Object.entries(found as Record<string, unknown>))
      defs.schemas[componentName(`${prefix}.${name}`, defs)] = def;
    delete out[key];
  }
  if (rooted) defs.schemas[self] = out;
  return out as SchemaObject;
}

/**
 * The schema of an alias's path parameter: the property's in the route's `args`, constrained by
 * the parameter's regular expression if it has one (the router refuses a value that does not
 * match it: the expression was dropped from the document when `args` named the property).
 */
function aliasParamSchema(prop: SchemaObject | undefined, pattern: string | undefined): SchemaObject {
  if (!prop) return { type: 'string', ...(pattern ? { pattern } : {}) };
  if (!pattern) return prop;
  // A property with a pattern of its own keeps it: the value has to match both.
  return Object.hasOwn(prop, 'pattern') ? { allOf: [prop, { pattern }] } : { ...prop, pattern };
}

function success(route: CompiledRoute | undefined, defs: Hoisted) {
  const result = (route ? documented(route, defs).result : undefined) ?? {};
  return {
    description: 'The method returned',
    content: {
      'application/json': { schema: { type: 'object', required: ['result'], properties: { result }, additionalProperties: false } },
    },
  };
}

const CAST_ACCEPTED = { type: 'object', required: ['accepted'], properties: { accepted: { const: true }, requestId: { type: 'string' } } };
const ACCEPTED = {
  description: 'Cast accepted by the broker',
  content: { 'application/json': { schema: CAST_ACCEPTED } },
};
const JOB_STARTED = {
  type: 'object',
  required: ['job', 'href'],
  properties: {
    job: { type: 'string', description: 'The job reference' },
    href: { type: 'string', description: 'Where to poll it (also the Location header)' },
    method: { type: 'string' },
    requestId: { type: 'string' },
  },
};
/** A call's 202 where jobs are served: a cast (`?cast=1`), or a job started by `Prefer: respond-async`. */
const ACCEPTED_OR_JOB = {
  description: 'Cast accepted by the broker, or (Prefer: respond-async) the call started as a job: poll the Location',
  headers: { Location: { description: "The job's URL (jobs only)", schema: { type: 'string' } } },
  content: { 'application/json': { schema: { oneOf: [CAST_ACCEPTED, JOB_STARTED] } } },
};
const JOB_ACCEPTED = {
  description: 'The call started as a job (it did not end within the wait): poll the Location',
  headers: { Location: { description: "The job's URL", schema: { type: 'string' } } },
  content: { 'application/json': { schema: JOB_STARTED } },
};
const PREFER = {
  name: 'Prefer',
  in: 'header',
  required: false,
  schema: { type: 'string', examples: ['respond-async', 'respond-async, wait=5'] },
  description: 'respond-async: run the call as a job and answer 202 with its reference at once (wait=N: unless it ends within N seconds)',
};
const JOB_REF = { name: 'ref', in: 'path', required: true, schema: { type: 'string' }, description: 'The job reference of the 202' };
const JOB_REF_SCHEMA = { $ref: '#/components/schemas/Job' };
const JOB_SCHEMA = {
  type: 'object',
  required: ['job', 'method', 'state', 'done'],
  properties: {
    job: { type: 'string' },
    method: { type: 'string' },
    state: { enum: ['pending', 'running', 'succeeded', 'failed', 'cancelled'] },
    done: { type: 'boolean' },
    progress: { type: ['number', 'null'] },
    message: { type: ['string', 'null'] },
    createdAt: { type: 'string' },
    startedAt: { type: ['string', 'null'] },
    endedAt: { type: ['string', 'null'] },
    cancelRequested: { type: 'boolean' },
    result: { description: 'The result, once the job succeeded' },
    error: { description: 'Why it failed or was cancelled, shaped as the error of a call', $ref: '#/components/schemas/ErrorDetail' },
  },
};

/** The job routes' operations. */
function jobPaths(maxWaitSeconds: number) {
  const found = (description: string, status: string) => ({
    [status]: { description, content: { 'application/json': { schema: JOB_REF_SCHEMA } } },
    '400': ERRORS['400'],
    '401': ERRORS['401'],
    '403': errorResponse("The caller no longer holds any of the route's roles"),
    '404': errorResponse('No such job: unknown, expired, lost with its server, or started by another caller'),
    '429': ERRORS['429'],
    '503': errorResponse("The job's server did not answer, or the gateway is overloaded (see Retry-After)"),
    // The gateway's stop deadline cut the request (CallCut), or a job's server answered too slowly
    // for a wait (JobTimeout): declared, as every status a client may be given is.
    '504': errorResponse(
      'The gateway stopped before the request was answered, or the job did not answer in time; the reference stays valid',
    ),
  });
  return {
    get: {
      operationId: 'job:get',
      summary: "A job's state; once it ended, its result or error",
      tags: ['jobs'],
      parameters: [
        JOB_REF,
        {
          name: 'wait',
          in: 'query',
          required: false,
          schema: { type: 'integer', minimum: 0, maximum: maxWaitSeconds },
          description: 'Wait up to this many seconds for the job to end first (also Prefer: wait=N)',
        },
        { ...PREFER, description: 'wait=N: as ?wait=N' },
      ],
      responses: found('The job', '200'),
    },
    delete: {
      operationId: 'job:cancel',
      summary: 'Ask a job to stop (cooperative)',
      tags: ['jobs'],
      parameters: [JOB_REF],
      responses: { ...found('Cancellation requested', '202'), '409': errorResponse('The job had already ended') },
    },
  };
}

function operation(
  route: CompiledRoute,
  extra: Record<string, unknown>,
  jobs: boolean,
  defs: Hoisted,
  errors: Record<string, ReturnType<typeof errorResponse>>,
) {
  const r = documented(route, defs);
  return {
    operationId: route.name,
    summary: r.summary ?? `${r.method} on topic ${r.topic}`,
    tags: [r.topic],
    ...extra,
    // A job route takes no cast, so its 202 is only ever a job.
    responses: {
      ...(r.cast ? { '202': ACCEPTED } : { '200': success(route, defs), '202': r.job ? JOB_ACCEPTED : jobs ? ACCEPTED_OR_JOB : ACCEPTED }),
      ...errors,
    },
    ...(route.roles.length ? { 'x-hermod-roles': route.roles } : {}),
    ...(r.job ? { 'x-hermod-job': true } : {}),
  };
}

/** Builds the document. */
export function openApiDocument(
  config: ResolvedGatewayConfig,
  routes: CompiledRoute[],
  authOn: boolean,
  prefix = '',
): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  // Two operations on one path and verb are two routes the router could not both serve: the
  // configuration refuses them, and a second one here would silently replace the first.
  const add = (path: string, verb: string, op: unknown) => {
    paths[path] ??= {};
    if (Object.hasOwn(paths[path], verb)) throw new Error(`OpenAPI document: ${verb.toUpperCase()} ${path} is documented twice`);
    paths[path][verb] = op;
  };
  const jobs = config.jobs.enabled;
  const errors = errorsWith(config.remoteErrors);
  // The document's own components first: no route schema takes their names.
  const defs: Hoisted = { schemas: {}, names: new Map(), taken: new Set(['Error', 'ErrorDetail', 'Job']) };
  for (const route of routes) {
    const r = documented(route, defs);
    const prefer = jobs && !r.cast ? [PREFER] : [];
    // A job route refuses `?cast` (and its configuration refuses `fanout`): not offered.
    const controls = r.job ? CONTROL_PARAMS.filter((p) => p.name !== 'cast') : CONTROL_PARAMS;
    const params = [
      ...controls
        .concat(r.fanout ? [{ name: 'fanout', schema: { type: 'boolean' }, description: 'Cast to every server of the topic (202)' }] : [])
        .map((p) => ({ ...p, in: 'query', required: false })),
      ...prefer,
    ];
    add(
      `/v1/${r.topic}/${r.method}`,
      'post',
      operation(
        route,
        {
          parameters: params,
          requestBody: { required: false, content: { 'application/json': { schema: r.args ?? { type: 'object' } } } },
        },
        jobs,
        defs,
        errors,
      ),
    );
    if (r.alias) {
      const [verb, url] = r.alias.split(' ') as [string, string];
      const props = ((schemaObject(r.args)?.properties as Record<string, SchemaObject> | undefined) ?? {}) as Record<string, SchemaObject>;
      const alias = aliasPath(url);
      // fastify's wildcard (`/files/*`) is the path parameter `*`: the rest of the path. It was a
      // literal `*` in the document's path, with the parameter listed in the query.
      const wildcard = alias.template.endsWith('*');
      const template = wildcard ? `${alias.template.slice(0, -1)}{*}` : alias.template;
      const pathParams = wildcard ? [...alias.params, { name: '*' }] : alias.params;
      const pathNames = pathParams.map((p) => p.name);
      const parameters: unknown[] = pathParams.map(({ name, pattern }: { name: string; pattern?: string }) => ({
        name,
        in: 'path',
        required: true,
        schema: aliasParamSchema(props[name], pattern),
        ...(name === '*' ? { description: 'The rest of the path, slashes included' } : {}),
      }));
      const hasBody = verb === 'POST' || verb === 'PUT' || verb === 'PATCH';
      if (!hasBody) {
        const required = (schemaObject(r.args)?.required as string[] | undefined) ?? [];
        for (const [name, schema] of Object.entries(props)) {
          if (!pathNames.includes(name)) parameters.push({ name, in: 'query', required: required.includes(name), schema });
        }
      }
      parameters.push(...prefer);
      add(
        template,
        verb.toLowerCase(),
        operation(
          route,
          {
            operationId: `${route.name}:alias`,
            parameters,
            ...(hasBody ? { requestBody: { content: { 'application/json': { schema: r.args ?? { type: 'object' } } } } } : {}),
          },
          jobs,
          defs,
          errors,
        ),
      );
    }
  }
  if (config.mappingPolicy === 'any') {
    add('/v1/{topic}/{method}', 'post', {
      operationId: 'any',
      summary: 'Any method on any topic (mappingPolicy "any")',
      parameters: [
        { name: 'topic', in: 'path', required: true, schema: { type: 'string' } },
        { name: 'method', in: 'path', required: true, schema: { type: 'string' } },
        ...CONTROL_PARAMS.map((p) => ({ ...p, in: 'query', required: false })),
        ...(jobs ? [PREFER] : []),
      ],
      requestBody: { content: { 'application/json': { schema: { type: 'object' } } } },
      responses: { '200': success(undefined, defs), '202': jobs ? ACCEPTED_OR_JOB : ACCEPTED, ...errors },
    });
  }
  if (jobs) paths['/v1/jobs/{ref}'] = jobPaths(Math.floor(config.maxCallTimeout / 1000));
  const methods = [
    // A route on topic `rpc` is called by its rpcName: `rpc.…` names are the gateway's own.
    ...routes.flatMap((r) => [r.name, ...(r.route.rpcName ? [r.route.rpcName] : [])]).filter((n) => !n.startsWith('rpc.')),
    ...(jobs ? ['rpc.job', 'rpc.cancel_job'] : []),
  ];
  const request = {
    type: 'object',
    required: ['jsonrpc', 'method'],
    properties: {
      jsonrpc: { const: '2.0' },
      method: methods.length && config.mappingPolicy === 'declared' ? { enum: methods } : { type: 'string' },
      params: { type: 'object' },
      id: { type: ['string', 'number', 'null'] },
    },
  };
  // An example the first route's schema takes as it is: one without required arguments.
  const plain = routes.find((r) => !((schemaObject(r.route.args)?.required as unknown[] | undefined)?.length ?? 0) && !r.route.cast);
  const body = { schema: { oneOf: [request, { type: 'array', items: request, minItems: 1 }] } };
  const refused = (description: string) => ({
    description,
    content: { 'application/json': { schema: { $ref: '#/components/schemas/JsonRpcError' } } },
  });
  add('/jsonrpc', 'post', {
    operationId: 'jsonrpc',
    summary: 'JSON-RPC 2.0: one request, a notification (no id) or a batch',
    tags: ['jsonrpc'],
    parameters: [
      ...CONTROL_PARAMS.map((p) => ({ ...p, in: 'query', required: false })),
      ...(jobs
        ? [
            {
              ...PREFER,
              description:
                'respond-async: run each call as a job; its result is then {job, href, method}, the reference to poll (wait=N: unless it ends within N seconds)',
            },
          ]
        : []),
    ],
    requestBody: {
      required: true,
      content: {
        'application/json': { ...body, ...(plain ? { example: { jsonrpc: '2.0', method: plain.name, params: {}, id: 1 } } : {}) },
        'application/json-rpc': body,
        'application/jsonrequest': body,
      },
    },
    responses: {
      '200': {
        description: 'A response object, or an array of them for a batch (whatever the calls came to)',
        content: { 'application/json': { schema: { type: ['object', 'array'] } } },
      },
      '204': { description: 'Only notifications were sent' },
      '400': refused('Refused as a whole: arguments nested too deep, an unknown query parameter'),
      '401': refused('No or unknown credentials'),
      '413': refused('Body larger than the limit'),
      '415': refused('A content type other than application/json, application/json-rpc or application/jsonrequest'),
      '429': refused('Rate limit reached (see Retry-After)'),
    },
  });
  return {
    openapi: '3.1.0',
    info: { title: 'hermod gateway', version: '1', description: 'RPC methods exposed over HTTP by hermod-gateway' },
    // Mounted under a prefix in an application's server, the paths below are relative to it.
    ...(prefix ? { servers: [{ url: prefix }] } : {}),
    paths,
    components: {
      schemas: {
        ...defs.schemas,
        Error: { type: 'object', required: ['error'], properties: { error: { $ref: '#/components/schemas/ErrorDetail' } } },
        ErrorDetail: {
          type: 'object',
          required: ['code', 'type', 'message'],
          properties: {
            code: { type: 'string' },
            type: { type: 'string' },
            message: { type: 'string' },
            requestId: { type: 'string' },
            data: { type: 'object', description: "The server error's keyword arguments, where the gateway's remoteErrors say so" },
            remote: {
              type: 'object',
              properties: {
                module: { type: 'string' },
                type: { type: 'string' },
                traceback: { type: 'array', items: { type: 'string' } },
              },
            },
          },
        },
        JsonRpcError: {
          type: 'object',
          required: ['jsonrpc', 'error', 'id'],
          properties: {
            jsonrpc: { const: '2.0' },
            error: {
              type: 'object',
              required: ['code', 'message'],
              properties: { code: { type: 'integer' }, message: { type: 'string' }, data: { $ref: '#/components/schemas/ErrorDetail' } },
            },
            id: { type: 'null' },
          },
        },
        ...(jobs ? { Job: JOB_SCHEMA } : {}),
      },
      ...(authOn
        ? {
            securitySchemes: {
              bearer: { type: 'http', scheme: 'bearer' },
              apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
            },
          }
        : {}),
    },
    ...(authOn ? { security: [{ bearer: [] }, { apiKey: [] }] } : {}),
  };
}
