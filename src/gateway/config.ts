/**
 * The gateway's configuration as data: which topics and methods are exposed, under which paths,
 * with which schemas and roles, and the HTTP limits. Validated strictly (unknown keys name the
 * nearest known one, like hermod's own configuration).
 */

import path from 'node:path';
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import { assertKnownKey, CONFIG_KEYS, closeKey } from '../config/index.js';
import type { JsonSchema as ContractSchema } from '../contracts/contract.js';
import { ConfigError } from '../core/errors.js';
import { parseConfigJson, readUtf8File } from '../core/json.js';

/**
 * A JSON Schema (2020-12) object, as OpenAPI 3.1 uses it: a plain object literal or a TypeBox
 * type, the same objects a method's contract takes (tsc refused a `Type.Object({...})` here).
 */
export type JsonSchema = ContractSchema;
/** A schema as the gateway reads it: at run time every {@link JsonSchema} is a plain object. */
export type SchemaObject = Record<string, unknown>;
/** `schema` read as the plain object it is (a TypeBox type's own keys are JSON Schema's). */
export const schemaObject = (schema: JsonSchema | undefined): SchemaObject | undefined => schema as SchemaObject | undefined;

/** HTTP methods an alias route may use. */
export type AliasVerb = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** One exposed RPC method. */
export interface GatewayRoute {
  /** Topic the call goes to. */
  topic: string;
  /** Remote method name. */
  method: string;
  /** Extra REST path for this method, `"GET /users/:id"`; path and query parameters become arguments. */
  alias?: string;
  /** Extra JSON-RPC method name (default name: `topic.method`). */
  rpcName?: string;
  /** JSON Schema of the arguments object; validated before any message is sent (400 / -32602). */
  args?: JsonSchema;
  /** JSON Schema of the result; a result that fails it is a 502 (the server broke its contract). */
  result?: JsonSchema;
  /** Roles of which the caller must hold at least one. @default none (any authenticated caller) */
  roles?: string[];
  /** Always send as a cast (no result; 202). @default false */
  cast?: boolean;
  /** Allow fanout casts (`?fanout=1`). @default false */
  fanout?: boolean;
  /**
   * Always start the call as a job (202 and a job reference), as if every request sent
   * `Prefer: respond-async`; a request's `Prefer: wait=N` still waits up to N s for the result.
   * Needs `jobs.enabled`. @default false
   */
  job?: boolean;
  /** Target fields; the request may override `server`, `namespace` and `version`. */
  exchange?: string;
  /** Send to this server of the topic; the request may name another. */
  server?: string;
  /** The endpoint namespace; the request may name another. */
  namespace?: string;
  /** The version to ask for; the request may name another. */
  version?: string;
  /**
   * Default call timeout of this route in ms, at most `maxCallTimeout` (a larger one is a
   * ConfigError); a request may ask for another, up to `maxCallTimeout`.
   */
  timeout?: number;
  /** One line for the OpenAPI document and the docs page. */
  summary?: string;
}

/** How one class of server errors is answered over HTTP (see {@link GatewayConfig.remoteErrors}). */
export interface RemoteErrorRule {
  /** The HTTP status, 400–599; JSON-RPC answers keep their code and carry it as `data.status`. */
  status: number;
  /** Send the error's keyword arguments as `error.data` (they are the server's data: expose them knowingly). @default false */
  data?: boolean;
}

/** The gateway's configuration file (`hermod-gateway --config-file gw.json`). */
export interface GatewayConfig {
  /** Where to listen. @default { host: '127.0.0.1', port: 8080 } */
  listen?: { host?: string; port?: number };
  /** `declared`: only the routes below; `any`: also any `topic.method` (no schemas). @default 'declared' */
  mappingPolicy?: 'declared' | 'any';
  /** Roles required for undeclared methods under `mappingPolicy: 'any'`. @default none */
  anyRoles?: string[];
  /** The exposed methods, each under its paths. */
  routes?: GatewayRoute[];
  /** API keys / bearer tokens. Without `keysFile` (and without an `authenticate` hook) the API is open. */
  auth?: { keysFile?: string; allowAnonymous?: boolean };
  /** CORS (off by default): allowed origins. */
  cors?: { origins: string[]; credentials?: boolean; maxAgeSeconds?: number };
  /** Per-client rate limit (off by default): `max` requests per `windowMs`. */
  rateLimit?: { max: number; windowMs: number };
  /** Largest request body in bytes (413 above). @default 1 MiB */
  bodyLimit?: number;
  /** Time to receive a whole request in ms (408 above; slow clients). @default 10 000 */
  requestTimeout?: number;
  /**
   * Open HTTP connections at most (per worker); a connection beyond it is closed as it is
   * accepted, so a flood of clients cannot take the file descriptors the transport needs to
   * reconnect. @default 1000
   */
  maxConnections?: number;
  /**
   * Open HTTP connections from one client address at most; 0 = no such limit (behind a proxy
   * that connects from one address). One client cannot take every slot of `maxConnections`
   * with idle or slow connections. @default 256
   */
  maxConnectionsPerAddress?: number;
  /**
   * Which proxies in front of the gateway to believe about the client's address
   * (`X-Forwarded-For`), as fastify's option of that name: `true` (any), a number of hops, or
   * the proxies' addresses and CIDR ranges (`"10.0.0.0/8"`, `["127.0.0.1", "loopback"]`). The
   * address counts for rate limits, failed credentials, per-client in-flight shares and the
   * access log. Without it, every client behind a proxy is the proxy. @default false
   */
  trustProxy?: boolean | number | string | string[];
  /**
   * Requests one connection may have waiting for their answers at once (HTTP pipelining); a
   * connection that sends more is closed. Node parses every request a client pipelines and
   * holds each answer until the ones before it are sent, so a client that sends thousands and
   * never reads would make the gateway hold them all. @default 16
   */
  maxPipelined?: number;
  /** How long an idle keep-alive connection stays open, in ms (fastify's default). @default 72 000 */
  keepAliveTimeout?: number;
  /** Default call timeout in ms. @default 30 000 */
  callTimeout?: number;
  /** Largest call timeout a request or route may ask for, in ms (a route's `timeout` above it is a ConfigError). @default 60 000 */
  maxCallTimeout?: number;
  /** RPC calls and casts in flight at once; beyond it requests get 503 with Retry-After. @default 256 */
  maxInFlight?: number;
  /**
   * RPC calls and casts one client may have in flight at once (a client: the identity's user and
   * project, or the address without credentials); beyond it its requests get 429 with
   * Retry-After, so that one client cannot take every `maxInFlight` slot. Off unless set.
   */
  maxInFlightPerClient?: number;
  /** Largest JSON-RPC batch. @default 100 */
  maxBatch?: number;
  /** Send remote tracebacks to HTTP clients (they reveal server internals). @default false */
  exposeTracebacks?: boolean;
  /**
   * How servers' own errors reach HTTP clients, by their class: `"UserNotFound"` (from any module)
   * or `"nova.exception.InstanceNotFound"` (that module's; it wins over the class alone). `status`
   * (400–599) replaces the 502 every other server error gets; `data: true` adds the error's
   * keyword arguments (oslo's `kwargs`, a hermod error's `kwargs` field) as `error.data`.
   * @default {}
   */
  remoteErrors?: Record<string, RemoteErrorRule>;
  /** Serve /openapi.json and /docs. @default true */
  docs?: boolean;
  /**
   * At start, ask the servers of each declared route without an `args` schema for its contract
   * (`hermod.describe`, waiting at most this many ms per topic) and use it for request checks and
   * the OpenAPI document; 0 = off. @default 0
   */
  contractTimeout?: number;
  /**
   * Long operations over HTTP (README "Gateway", "Jobs over HTTP"): a request with
   * `Prefer: respond-async` starts its call as a job and gets `202` with a job reference to poll
   * at `/v1/jobs/{ref}`.
   */
  jobs?: {
    /** Serve `/v1/jobs/{ref}` and honour `Prefer: respond-async`. @default true */
    enabled?: boolean;
    /**
     * A file holding the key job references are sealed with (at least 32 characters, e.g.
     * `openssl rand -base64 32`); relative to the configuration file. Without it, the
     * `HERMOD_GATEWAY_JOBS_KEY` variable, else a random key per process (and per `--workers`
     * run): references then stop working when the gateway restarts.
     */
    keyFile?: string;
  };
  /**
   * `hermod-gateway` logs one line per request at info (method, path, status, time, request id,
   * client address, user). A library user subscribes to the `hermod:gateway:request` diagnostics
   * channel instead. @default false
   */
  accessLog?: boolean;
  /** hermod's own configuration (transport options), used by `hermod-gateway` only. */
  hermod?: Record<string, unknown>;
}

/** What a call's `version` looks like, a route's or a request's: `X.Y` or `X.Y.Z`. */
export const VERSION_PATTERN = '^\\d+\\.\\d+(\\.\\d+)?$';

const NAME = '^[A-Za-z0-9_][A-Za-z0-9_.:-]*$';
const ms = { type: 'integer', minimum: 1, maximum: 86_400_000 };
const roles = { type: 'array', items: { type: 'string', minLength: 1 } };

const ROUTE = {
  type: 'object',
  additionalProperties: false,
  required: ['topic', 'method'],
  properties: {
    topic: { type: 'string', pattern: NAME },
    method: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
    alias: { type: 'string', pattern: '^(GET|POST|PUT|PATCH|DELETE) /[^\\s]*$' },
    rpcName: { type: 'string', pattern: NAME },
    args: { type: 'object' },
    result: { type: 'object' },
    roles,
    cast: { type: 'boolean' },
    fanout: { type: 'boolean' },
    job: { type: 'boolean' },
    exchange: { type: 'string', pattern: NAME },
    server: { type: 'string', pattern: NAME },
    namespace: { type: 'string', pattern: NAME },
    version: { type: 'string', pattern: VERSION_PATTERN },
    timeout: ms,
    summary: { type: 'string' },
  },
};

const SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    listen: {
      type: 'object',
      additionalProperties: false,
      properties: { host: { type: 'string' }, port: { type: 'integer', minimum: 0, maximum: 65535 } },
    },
    mappingPolicy: { enum: ['declared', 'any'] },
    anyRoles: roles,
    routes: { type: 'array', items: ROUTE },
    auth: {
      type: 'object',
      additionalProperties: false,
      properties: { keysFile: { type: 'string', minLength: 1 }, allowAnonymous: { type: 'boolean' } },
    },
    cors: {
      type: 'object',
      additionalProperties: false,
      required: ['origins'],
      properties: {
        origins: { type: 'array', items: { type: 'string', minLength: 1 } },
        credentials: { type: 'boolean' },
        maxAgeSeconds: { type: 'integer', minimum: 0 },
      },
    },
    rateLimit: {
      type: 'object',
      additionalProperties: false,
      required: ['max', 'windowMs'],
      properties: { max: { type: 'integer', minimum: 1 }, windowMs: ms },
    },
    bodyLimit: { type: 'integer', minimum: 2, maximum: 1 << 30 },
    requestTimeout: ms,
    maxConnections: { type: 'integer', minimum: 1, maximum: 1_000_000 },
    maxConnectionsPerAddress: { type: 'integer', minimum: 0, maximum: 1_000_000 },
    maxPipelined: { type: 'integer', minimum: 1, maximum: 10_000 },
    trustProxy: {
      anyOf: [
        { type: 'boolean' },
        { type: 'integer', minimum: 1, maximum: 100 },
        { type: 'string', minLength: 1 },
        { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
      ],
    },
    keepAliveTimeout: ms,
    callTimeout: ms,
    maxCallTimeout: ms,
    maxInFlight: { type: 'integer', minimum: 1 },
    maxInFlightPerClient: { type: 'integer', minimum: 1 },
    maxBatch: { type: 'integer', minimum: 1, maximum: 10_000 },
    exposeTracebacks: { type: 'boolean' },
    remoteErrors: {
      type: 'object',
      propertyNames: { minLength: 1, maxLength: 512 },
      additionalProperties: {
        type: 'object',
        required: ['status'],
        additionalProperties: false,
        properties: { status: { type: 'integer', minimum: 400, maximum: 599 }, data: { type: 'boolean' } },
      },
    },
    docs: { type: 'boolean' },
    contractTimeout: { type: 'integer', minimum: 0, maximum: 60_000 },
    jobs: {
      type: 'object',
      additionalProperties: false,
      properties: { enabled: { type: 'boolean' }, keyFile: { type: 'string', minLength: 1 } },
    },
    accessLog: { type: 'boolean' },
    hermod: { type: 'object' },
  },
};

/** The configuration with every default filled in. */
export type ResolvedGatewayConfig = Required<
  Omit<GatewayConfig, 'cors' | 'rateLimit' | 'hermod' | 'listen' | 'auth' | 'jobs' | 'maxInFlightPerClient'>
> & {
  listen: { host: string; port: number };
  jobs: { enabled: boolean; keyFile?: string };
  auth: { keysFile?: string; allowAnonymous: boolean };
  cors?: GatewayConfig['cors'];
  rateLimit?: GatewayConfig['rateLimit'];
  maxInFlightPerClient?: number;
};

/**
 * {@link SCHEMA} as each of several `--config-file`s is checked: sections merge key by key, so a
 * section's required keys may come from different files and are checked on the merge alone.
 */
const FILE_SCHEMA = {
  ...SCHEMA,
  properties: Object.fromEntries(
    Object.entries(SCHEMA.properties as Record<string, Record<string, unknown>>).map(([k, { required: _, ...rest }]) => [k, rest]),
  ),
};

// verbose: errors carry their parentSchema, whose known keys the "did you mean" picks from.
// allErrors: ajv checks `required` before `additionalProperties`, so with the first error alone a
// misspelt required key (`rateLimit.window`) was reported missing, never by its name.
const ajv = new Ajv2020({ allErrors: true, strict: true, verbose: true });
const validate = ajv.compile(SCHEMA);
const validateFile = ajv.compile(FILE_SCHEMA);

function checkShape(check: typeof validate, input: unknown, source: string): void {
  if (!check(input)) {
    // An unknown key first: it is often why a required one is missing.
    const err = check.errors!.find((e) => e.keyword === 'additionalProperties') ?? check.errors![0]!;
    throw new ConfigError(describe(err, source), { key: err.instancePath || undefined });
  }
}

function describe(err: ErrorObject, source: string): string {
  const at = err.instancePath
    ? err.instancePath
        .slice(1)
        .split('/')
        .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`))
        .join('')
        .replace(/^\./, '')
    : '';
  if (err.keyword === 'additionalProperties') {
    const key = (err.params as { additionalProperty: string }).additionalProperty;
    const known = Object.keys((err.parentSchema as { properties: Record<string, unknown> }).properties);
    const full = at ? `${at}.${key}` : key;
    const guess = closeKey(key, known);
    return `unknown gateway configuration key '${full}' (from ${source})${guess ? `; did you mean '${guess}'?` : ''}`;
  }
  return `invalid gateway configuration at '${at || '(top)'}' (from ${source}): ${err.message}`;
}

/** Paths (and everything under them) an alias may not take: the gateway serves them itself. */
const RESERVED_PATHS = ['/healthz', '/readyz', '/openapi.json', '/docs', '/jsonrpc', '/v1/jobs'] as const;

/**
 * An alias's URL, in the router's (find-my-way's) syntax, as an OpenAPI path template and its
 * parameters: `:id` is `{id}`; a parameter's regular expression (`:id(^\d+$)`) constrains its
 * value, so it goes to the parameter's `pattern`, anchored as the router anchors it, not into the
 * path; `::` is a literal `:`.
 */
export function aliasPath(url: string): { template: string; params: Array<{ name: string; pattern?: string }> } {
  let template = '';
  const params: Array<{ name: string; pattern?: string }> = [];
  let i = 0;
  while (i < url.length) {
    if (url[i] !== ':') {
      template += url[i++];
      continue;
    }
    if (url[i + 1] === ':') {
      template += ':';
      i += 2;
      continue;
    }
    let j = i + 1;
    while (j < url.length && !'(-./'.includes(url[j]!)) j++;
    const name = url.slice(i + 1, j);
    let pattern: string | undefined;
    if (url[j] === '(') {
      const end = closingParenthesis(url, j);
      pattern = `^(?:${url
        .slice(j + 1, end)
        .replace(/^\^/, '')
        .replace(/\$$/, '')})$`;
      j = end + 1;
    }
    params.push(pattern === undefined ? { name } : { name, pattern });
    template += `{${name}}`;
    i = j;
  }
  return { template, params };
}

/** Where the parenthesis opened at `open` closes, nested ones and `\`-escaped characters skipped (as find-my-way reads it). */
function closingParenthesis(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '(') depth++;
    else if (text[i] === ')' && --depth === 0) return i;
  }
  // fastify refused the route already ("Invalid regexp expression").
  return text.length - 1;
}

/**
 * Why a route's `args` schema refuses an argument named `name` whatever its value, or undefined
 * when it may take one: `additionalProperties: false` without a property (or a pattern) of that
 * name, or the property's schema `false`. Other keywords (`allOf`, `$ref`, `unevaluatedProperties`)
 * are not followed: a schema they make refuse it is not caught here.
 */
function refusedArgument(schema: SchemaObject, name: string): string | undefined {
  const props = schema.properties;
  if (props !== null && typeof props === 'object' && Object.hasOwn(props, name))
    return (props as Record<string, unknown>)[name] === false ? `its args schema has properties.${name}: false` : undefined;
  const patterns = schema.patternProperties;
  if (patterns !== null && typeof patterns === 'object') {
    for (const [pattern, sub] of Object.entries(patterns)) {
      let matches = true;
      try {
        matches = new RegExp(pattern, 'u').test(name);
      } catch {
        // Not a pattern ajv takes either: compiling the schema names the mistake.
      }
      if (matches) return sub === false ? `its args schema refuses it by patternProperties ${pattern}` : undefined;
    }
  }
  return schema.additionalProperties === false ? `its args schema has additionalProperties: false and no property ${name}` : undefined;
}

/** Checks `input` strictly and fills the defaults; throws {@link ConfigError} naming the key. */
export function resolveGatewayConfig(input: unknown, source = 'options'): ResolvedGatewayConfig {
  checkShape(validate, input, source);
  const c = input as GatewayConfig;
  const callTimeout = c.callTimeout ?? 30_000;
  const maxCallTimeout = c.maxCallTimeout ?? Math.max(60_000, callTimeout);
  if (callTimeout > maxCallTimeout)
    throw new ConfigError(`callTimeout (${callTimeout}) exceeds maxCallTimeout (${maxCallTimeout}) (from ${source})`, {
      key: 'callTimeout',
    });
  // A batch's calls start together and count one by one: below maxBatch, an idle client's full
  // batch would be refused in part.
  const maxBatch = c.maxBatch ?? 100;
  if (c.maxInFlightPerClient !== undefined && c.maxInFlightPerClient < maxBatch) {
    throw new ConfigError(
      `maxInFlightPerClient (${c.maxInFlightPerClient}) is below maxBatch (${maxBatch}): a JSON-RPC batch's calls count one by one, so an idle client's full batch would be refused in part; raise it or lower maxBatch (from ${source})`,
      { key: 'maxInFlightPerClient' },
    );
  }
  const seen = new Set<string>();
  const aliases = new Map<string, number>();
  for (const [i, r] of (c.routes ?? []).entries()) {
    if (r.alias) {
      const [verb, url] = r.alias.split(' ') as [string, string];
      const reserved = RESERVED_PATHS.find((p) => url === p || url.startsWith(`${p}/`));
      if (reserved)
        throw new ConfigError(`routes[${i}] (from ${source}): alias ${r.alias}: ${reserved} is the gateway's own; choose another path`, {
          key: `routes[${i}].alias`,
        });
      // The router's view: parameter names do not tell routes apart (`/u/:id` is `/u/:name`).
      const shape = `${verb} ${url.replace(/:[^/]*/g, ':')}`;
      const other = aliases.get(shape);
      if (other !== undefined)
        throw new ConfigError(`routes[${i}] (from ${source}): alias ${r.alias} is the same route as routes[${other}]'s alias`, {
          key: `routes[${i}].alias`,
        });
      aliases.set(shape, i);
      // Path parameters become arguments of the same name at every request: one the route's own
      // schema refuses made the alias a 400 for every URL it matched, while /openapi.json listed it.
      if (r.args) {
        const { template, params } = aliasPath(url);
        const names = [...params.map((p) => p.name), ...(template.includes('*') ? ['*'] : [])];
        for (const name of names) {
          const why = refusedArgument(schemaObject(r.args)!, name);
          if (why)
            throw new ConfigError(
              `routes[${i}] (from ${source}): alias ${r.alias}: its path parameter ${name} is an argument the route refuses (${why}), so every request to it would be a 400; add the property or rename the parameter`,
              { key: `routes[${i}].alias` },
            );
        }
      }
      // Any POST /v1/x/y is a URL POST /v1/{topic}/{method} answers too, and the router prefers
      // the more static route: `/v1/demo/:any` or `/v1/demo/*` took demo.add's endpoint from it.
      const segments = url.split('/').slice(1);
      const inRestSpace =
        segments[0] === 'v1' && (segments.length === 3 || (segments.length <= 3 && segments.slice(1).some((s) => s.includes('*'))));
      if (verb === 'POST' && inRestSpace)
        throw new ConfigError(
          `routes[${i}] (from ${source}): alias ${r.alias} is within the gateway's POST /v1/{topic}/{method}, where it would take other routes' calls; choose another path`,
          { key: `routes[${i}].alias` },
        );
    }
    // The cap applies to every call, so a larger route timeout was cut to it at each request
    // without a word: a 65 s call to a route of 120 000 ms got 504 after 60 000 ms.
    if (r.timeout !== undefined && r.timeout > maxCallTimeout)
      throw new ConfigError(
        `routes[${i}] (from ${source}): timeout (${r.timeout}) exceeds maxCallTimeout (${maxCallTimeout}); raise maxCallTimeout or lower the route's timeout`,
        { key: `routes[${i}].timeout` },
      );
    if (r.job && r.cast)
      throw new ConfigError(`routes[${i}] (from ${source}): a route is either a cast or a job, not both`, { key: `routes[${i}]` });
    // Every fanout request of a job route would be refused (a job is a call): refused here once.
    if (r.job && r.fanout)
      throw new ConfigError(`routes[${i}] (from ${source}): a job route takes no fanout casts (fanout: true)`, {
        key: `routes[${i}].fanout`,
      });
    if (r.job && c.jobs?.enabled === false)
      throw new ConfigError(`routes[${i}] (from ${source}): job routes need jobs.enabled (it is false)`, { key: `routes[${i}].job` });
    // JSON-RPC 2.0 reserves the method names beginning with "rpc." (the gateway answers them
    // itself: rpc.job, …): a route known by such a name alone was listed and never reached.
    if (r.rpcName?.startsWith('rpc.'))
      throw new ConfigError(
        `routes[${i}] (from ${source}): rpcName ${r.rpcName} begins with "rpc.", which JSON-RPC reserves; choose another`,
        { key: `routes[${i}].rpcName` },
      );
    if (!r.rpcName && `${r.topic}.${r.method}`.startsWith('rpc.'))
      throw new ConfigError(
        `routes[${i}] (from ${source}): its JSON-RPC name ${r.topic}.${r.method} begins with "rpc.", which JSON-RPC reserves; give the route an rpcName`,
        { key: `routes[${i}]` },
      );
    for (const name of [`${r.topic}.${r.method}`, ...(r.rpcName ? [r.rpcName] : [])]) {
      if (seen.has(name))
        throw new ConfigError(
          `routes[${i}] (from ${source}): ${name} is declared twice (one route per method: a job route and a plain one cannot share it)`,
          { key: `routes[${i}]` },
        );
      seen.add(name);
    }
  }
  return {
    listen: { host: c.listen?.host ?? '127.0.0.1', port: c.listen?.port ?? 8080 },
    mappingPolicy: c.mappingPolicy ?? 'declared',
    anyRoles: c.anyRoles ?? [],
    routes: c.routes ?? [],
    auth: { ...(c.auth?.keysFile ? { keysFile: c.auth.keysFile } : {}), allowAnonymous: c.auth?.allowAnonymous ?? false },
    ...(c.cors ? { cors: c.cors } : {}),
    ...(c.rateLimit ? { rateLimit: c.rateLimit } : {}),
    bodyLimit: c.bodyLimit ?? 1 << 20,
    requestTimeout: c.requestTimeout ?? 10_000,
    maxConnections: c.maxConnections ?? 1000,
    maxConnectionsPerAddress: c.maxConnectionsPerAddress ?? 256,
    maxPipelined: c.maxPipelined ?? 16,
    trustProxy: c.trustProxy ?? false,
    keepAliveTimeout: c.keepAliveTimeout ?? 72_000,
    callTimeout,
    maxCallTimeout,
    maxInFlight: c.maxInFlight ?? 256,
    ...(c.maxInFlightPerClient !== undefined ? { maxInFlightPerClient: c.maxInFlightPerClient } : {}),
    maxBatch: c.maxBatch ?? 100,
    exposeTracebacks: c.exposeTracebacks ?? false,
    remoteErrors: c.remoteErrors ?? {},
    docs: c.docs ?? true,
    contractTimeout: c.contractTimeout ?? 0,
    jobs: { enabled: c.jobs?.enabled ?? true, ...(c.jobs?.keyFile ? { keyFile: c.jobs.keyFile } : {}) },
    accessLog: c.accessLog ?? false,
  };
}

/**
 * `over` laid on `base` as repeated `--config-file`s are: key by key, into sections
 * (`listen`, `auth`, `cors`, `rateLimit`, `jobs`, …) as deep as they go; a list (`routes`,
 * `cors.origins`) is replaced whole. A shallow merge let a later file's `{"auth":
 * {"allowAnonymous": false}}` drop the earlier `keysFile`, and with it authentication.
 */
export function mergeGatewayConfig(base: GatewayConfig, over: GatewayConfig): GatewayConfig {
  return mergeObjects(base as Record<string, unknown>, over as Record<string, unknown>) as GatewayConfig;
}

function isSection(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function mergeObjects(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = Object.hasOwn(out, k) ? out[k] : undefined;
    // Defined, not assigned: a key named __proto__ stays a key (and is refused by validation).
    Object.defineProperty(out, k, {
      value: isSection(b) && isSection(v) ? mergeObjects(b, v) : v,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

/**
 * Reads a gateway configuration file (JSON); a relative `auth.keysFile` is taken from the file's
 * directory. Checks the file's keys and values, not what needs the whole configuration (a
 * section's required keys, `maxInFlightPerClient` against `maxBatch`, …): another file may
 * complete it. {@link resolveGatewayConfig} (and `createGateway`) check the merged configuration.
 */
export function readGatewayConfig(file: string): GatewayConfig {
  let data: unknown;
  try {
    data = parseConfigJson(readUtf8File(file));
  } catch (err) {
    throw new ConfigError(`cannot read gateway config file ${file}: ${(err as Error).message}`, { cause: err, key: file });
  }
  checkShape(validateFile, data, `file ${file}`);
  let config = data as GatewayConfig;
  // A relative keys file is next to the file that names it, whatever directory the gateway
  // is started from (a service manager's is rarely the configuration's).
  const near = (f: string) => (path.isAbsolute(f) ? f : path.resolve(path.dirname(file), f));
  const keysFile = config.auth?.keysFile;
  if (keysFile) config = { ...config, auth: { ...config.auth, keysFile: near(keysFile) } };
  const jobsKeyFile = config.jobs?.keyFile;
  if (jobsKeyFile) config = { ...config, jobs: { ...config.jobs, keyFile: near(jobsKeyFile) } };
  return config;
}

/**
 * The `hermod` section of a gateway file as dotted keys (`{ rpc: { retry: 2 } }` →
 * `{ 'rpc.retry': 2 }`), each checked against hermod's own configuration keys.
 */
export function hermodSection(section: Record<string, unknown> | undefined, source: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const walk = (o: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(o)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (v && typeof v === 'object' && !Array.isArray(v) && !CONFIG_KEYS.includes(key)) walk(v as Record<string, unknown>, key);
      else {
        assertKnownKey(key, source);
        if (key in out) throw new ConfigError(`configuration key ${key} is given twice in ${source} (dotted and nested)`, { key });
        out[key] = v;
      }
    }
  };
  walk(section ?? {}, '');
  return out;
}
