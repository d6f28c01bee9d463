// The gateway cases every transport passes (memory, the embedded router, RabbitMQ): real HTTP
// on 127.0.0.1 port 0 against real RPC servers. Imported by gateway-*.test.ts files.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  createGateway,
  type Gateway,
  type GatewayOptions,
  type GatewayPluginOptions,
  gatewayRequestId,
  hashApiKey,
  hermodGateway,
  type KeyEntry,
} from '../../src/gateway/index.js';
import {
  type Context,
  defaultConfig,
  ENDPOINT_MODULE,
  getTransport,
  MessagingTimeout,
  RPCServer,
  registerRemoteError,
  Target,
  type Transport,
} from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { sleep, until } from '../support/assert.js';
import { Versioned } from '../support/endpoints.js';
import { scratchDir } from '../support/scratch.js';

/**
 * An app's error class, rebuilt by the gateway's client (registered below): no HermodError, and a
 * `statusCode` field, as errors of HTTP libraries have, that must not become the gateway's status.
 */
class OutOfStock extends Error {
  override name = 'OutOfStock';
  statusCode = 418;
}
registerRemoteError(ENDPOINT_MODULE, 'OutOfStock', (f) => new OutOfStock(f.message));

/** Waits `ms`, or throws the reason once the server abandons the call (its ctx.signal aborts). */
async function sleepUnlessAbandoned(ctx: Context, ms: number, onAbort?: () => void): Promise<number> {
  const signal = (ctx as { signal: AbortSignal }).signal;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      onAbort?.();
      resolve();
    });
  });
  if (signal.aborted) throw signal.reason;
  return ms;
}

/** A users service for the gateway tests. */
export class Users {
  /** `render` answers with a job token once it runs past the server's deferAfter (1 s). */
  static long = ['render'];
  seen: Context[] = [];
  /** Renders whose job was cancelled (their ctx.signal aborted). */
  cancelled = 0;
  touched: Array<{ ctx: Context; args: Record<string, unknown> }> = [];
  constructor(readonly name = 'u1') {}
  async get(ctx: Context, args: { id: number; verbose?: boolean }) {
    this.seen.push(ctx);
    return { id: args.id, name: `user-${args.id}`, verbose: args.verbose ?? false, by: this.name };
  }
  async touch(ctx: Context, args: Record<string, unknown>) {
    this.touched.push({ ctx, args });
  }
  async fail(_ctx: Context, args: { message: string; timeout?: boolean; app?: boolean }) {
    // As a method whose own call to another service timed out would.
    if (args.timeout) throw new MessagingTimeout(args.message);
    if (args.app) throw new OutOfStock(args.message);
    throw new TypeError(args.message);
  }
  async sleep(ctx: Context, args: { ms: number }) {
    // Ends when the server abandons the call (a stop's deadline, abort()): else the test
    // process waited out a 5 s sleep after its last test.
    return sleepUnlessAbandoned(ctx, args.ms);
  }
  async broken() {
    return { id: 'not a number' };
  }
  async ctx(ctx: Context) {
    return ctx;
  }
  async text() {
    return 'plain';
  }
  echoes = 0;
  /** Answers what it was sent, whatever its shape. */
  async echo(_ctx: Context, args: { value: unknown }) {
    this.echoes++;
    return args.value;
  }
  async render(ctx: Context, args: { ms: number }) {
    return sleepUnlessAbandoned(ctx, args.ms, () => this.cancelled++);
  }
}

export const USER_ARGS = {
  type: 'object',
  properties: { id: { type: 'integer', minimum: 1 }, verbose: { type: 'boolean' } },
  required: ['id'],
  additionalProperties: false,
};
export const USER_RESULT = {
  type: 'object',
  properties: { id: { type: 'integer' }, name: { type: 'string' } },
  required: ['id', 'name'],
};

/** The routes of the users service on `topic`. */
export function userRoutes(topic: string): NonNullable<GatewayOptions['routes']> {
  return [
    { topic, method: 'get', alias: 'GET /users/:id', rpcName: 'getUser', args: USER_ARGS, result: USER_RESULT, summary: 'A user by id' },
    { topic, method: 'touch', cast: true, fanout: true },
    { topic, method: 'fail' },
    { topic, method: 'sleep' },
    { topic, method: 'broken', result: USER_RESULT },
    { topic, method: 'ctx' },
    { topic, method: 'text' },
    { topic, method: 'missing' },
    { topic, method: 'mul', namespace: 'math', version: '1.3' },
  ];
}

/**
 * A keys file (in a temp dir) for `entries`, each with a fresh random key; returns the file and
 * the keys by id.
 */
export function keysFileFor(entries: Array<Omit<KeyEntry, 'sha256'>>): { file: string; keys: Record<string, string> } {
  const keys: Record<string, string> = {};
  for (const e of entries) keys[e.id] = randomBytes(32).toString('base64url');
  const file = path.join(scratchDir('hermod-gw-keys-'), 'keys.json');
  writeFileSync(file, JSON.stringify({ keys: entries.map((e) => ({ ...e, sha256: hashApiKey(keys[e.id]!) })) }));
  return { file, keys };
}

/** Parsed JSON under test, probed field by field by the assertions. */
// biome-ignore lint/suspicious/noExplicitAny: a response body of any shape; every use is an assertion
export type Json = any;

/** One HTTP exchange over a real socket. */
export async function http(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; json: Json; text: string }> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
  }
  const res = await fetch(`${base}${path}`, init);
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json, text };
}

/** Where a gateway suite runs. */
export interface GatewayBroker {
  url: string;
  stop(): Promise<void>;
}

interface Ctx {
  broker: GatewayBroker;
  transports: Transport[];
  servers: RPCServer[];
  gateways: Gateway[];
  topic: string;
  users: Users;
  base: string;
}

/** The shared cases. */
export function gatewaySuite(name: string, broker: () => Promise<GatewayBroker>) {
  const t = suite<Ctx>(name, {} as Ctx);
  let n = 0;
  t.before(async (ctx) => {
    ctx.broker = await broker();
  });
  t.after(async (ctx) => {
    await ctx.broker?.stop();
  });
  t.before.each(async (ctx) => {
    ctx.transports = [];
    ctx.servers = [];
    ctx.gateways = [];
    ctx.topic = `users-${process.pid}-${++n}`;
    ctx.users = new Users();
    await serve(ctx, ctx.topic, 'u1', [ctx.users, new Versioned()]);
    ctx.base = (await gateway(ctx)).address!.url;
  });
  t.after.each(async (ctx) => {
    for (const g of ctx.gateways) await g.stop(1000);
    for (const s of ctx.servers) {
      await s.stop();
      await s.wait(1000);
    }
    for (const tr of ctx.transports) await tr.close();
  });

  async function transport(ctx: Ctx): Promise<Transport> {
    const tr = await getTransport(ctx.broker.url, { config: defaultConfig() });
    ctx.transports.push(tr);
    return tr;
  }
  async function serve(ctx: Ctx, topic: string, server: string, endpoints: object[]) {
    const s = new RPCServer(await transport(ctx), new Target({ topic, server }), endpoints);
    await s.start();
    ctx.servers.push(s);
    return s;
  }
  async function gateway(ctx: Ctx, options: GatewayOptions = {}): Promise<Gateway> {
    const g = createGateway(await transport(ctx), { listen: { host: '127.0.0.1', port: 0 }, routes: userRoutes(ctx.topic), ...options });
    ctx.gateways.push(g);
    await g.start();
    return g;
  }

  t('REST: POST /v1/{topic}/{method} calls and answers {result}; X-Request-Id echoed and sent as request_id', async (ctx) => {
    const r = await http(ctx.base, 'POST', `/v1/${ctx.topic}/get`, { id: 7 }, { 'x-request-id': 'abc-123' });
    assert.is(r.status, 200);
    assert.equal(r.json, { result: { id: 7, name: 'user-7', verbose: false, by: 'u1' } });
    assert.is(r.headers.get('x-request-id'), 'abc-123');
    assert.is(ctx.users.seen[0]!.request_id, 'abc-123');
    // A string result is still a JSON document.
    const s = await http(ctx.base, 'POST', `/v1/${ctx.topic}/text`);
    assert.is(s.status, 200);
    assert.equal(s.json, { result: 'plain' });
  });

  t(
    'nesting: arguments as deep as the server takes reach it; a level deeper is 400 before anything is sent (REST, cast, JSON-RPC, batch)',
    async (ctx) => {
      // The server counts its message's own levels around the arguments against maxJsonDepth: a
      // body that used all of it was sent and refused there (a cast's 502, a call's remote error).
      const g = await gateway(ctx, { routes: [{ topic: ctx.topic, method: 'echo' }, ...userRoutes(ctx.topic)] });
      const base = g.address!.url;
      const tr = ctx.transports.at(-1)!;
      const max = tr.config.maxJsonDepth - tr.driver.argsDepth;
      // `{"value": …}` with `depth` levels in all.
      const args = (depth: number) => `{"value":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`;
      const rest = await http(base, 'POST', `/v1/${ctx.topic}/echo`, args(max));
      assert.is(rest.status, 200, rest.text);
      assert.is(ctx.users.echoes, 1);
      const rpc = (depth: number, batch = false) => {
        const one = `{"jsonrpc":"2.0","method":"${ctx.topic}.echo","params":${args(depth)},"id":7}`;
        return http(base, 'POST', '/jsonrpc', batch ? `[${one}]` : one);
      };
      const single = await rpc(max);
      assert.is(single.status, 200, single.text);
      assert.ok(Array.isArray(single.json.result), single.text);
      const inBatch = await rpc(max, true);
      assert.ok(Array.isArray(inBatch.json?.[0]?.result), inBatch.text);
      assert.is(ctx.users.echoes, 3);
      const refused = await http(base, 'POST', `/v1/${ctx.topic}/echo`, args(max + 1));
      assert.is(refused.status, 400, refused.text);
      assert.is(refused.json.error.code, 'HERMOD_ERR_NESTING_TOO_DEEP');
      assert.match(
        refused.json.error.message,
        new RegExp(
          `deeper than ${max} levels \\(maxJsonDepth ${tr.config.maxJsonDepth}, less ${tr.driver.argsDepth} for the message around the arguments\\)`,
        ),
      );
      const cast = await http(base, 'POST', `/v1/${ctx.topic}/touch`, args(max + 1));
      assert.is(cast.status, 400, cast.text);
      for (const r of [await rpc(max + 1), await rpc(max + 1, true)]) {
        assert.is(r.status, 400, r.text);
        assert.equal([r.json.error.code, r.json.error.data.code, r.json.id], [-32600, 'HERMOD_ERR_NESTING_TOO_DEEP', null]);
      }
      await sleep(100);
      assert.is(ctx.users.echoes, 3, 'nothing deeper was sent');
      assert.is(ctx.users.touched.length, 0);
    },
  );

  t('HEAD: a GET alias is not called for it (404, nothing sent); the health probes answer it', async (ctx) => {
    // fastify's default HEAD route for each GET ran the call and threw the answer away.
    const head = await fetch(`${ctx.base}/users/7`, { method: 'HEAD' });
    assert.is(head.status, 404);
    assert.is(ctx.users.seen.length, 0, 'nothing called');
    assert.is((await http(ctx.base, 'GET', '/users/7')).status, 200);
    for (const probe of ['/healthz', '/readyz']) assert.is((await fetch(`${ctx.base}${probe}`, { method: 'HEAD' })).status, 200, probe);
  });

  t('context: request id generated when absent, traceparent passed, client context fields ignored', async (ctx) => {
    const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const r = await http(ctx.base, 'POST', `/v1/${ctx.topic}/ctx`, {}, { traceparent: tp, 'x-request-id': 'bad id with spaces' });
    assert.is(r.status, 200);
    const id = r.headers.get('x-request-id')!;
    assert.match(id, /^req-[0-9a-f-]{36}$/);
    assert.equal(r.json.result, { request_id: id, traceparent: tp });
    // Context fields in the body stay arguments: they never reach the context.
    const forged = await http(ctx.base, 'POST', `/v1/${ctx.topic}/ctx`, { user_id: 'admin', roles: ['admin'] });
    assert.is(forged.status, 200);
    assert.is(forged.json.result.user_id, undefined);
    assert.is(forged.json.result.roles, undefined);
  });

  t('REST alias: GET /users/:id merges path and query into the arguments, typed by the schema', async (ctx) => {
    const r = await http(ctx.base, 'GET', '/users/42?verbose=true');
    assert.is(r.status, 200);
    assert.equal(r.json.result, { id: 42, name: 'user-42', verbose: true, by: 'u1' });
    const bad = await http(ctx.base, 'GET', '/users/x');
    assert.is(bad.status, 400);
    assert.is(bad.json.error.code, 'HERMOD_ERR_INVALID_ARGUMENT');
    assert.match(bad.json.error.message, /args\/id must be integer/);
  });

  t('REST bodies: none, or an empty one whatever its content type, is {}; null or any other non-object is a 400', async (ctx) => {
    const { topic } = ctx;
    const g = await gateway(ctx, {
      routes: [
        { topic, method: 'get', alias: 'DELETE /users/:id', args: USER_ARGS },
        { topic, method: 'ctx', alias: 'POST /whoami' },
        { topic, method: 'text' },
      ],
    });
    const base = g.address!.url;
    // Before: 400 FST_ERR_CTP_EMPTY_JSON_BODY, though the document says the body is optional.
    for (const [verb, path] of [
      ['POST', `/v1/${topic}/text`],
      ['DELETE', '/users/5'],
      ['POST', '/whoami'],
    ] as const) {
      const r = await http(base, verb, path, '');
      assert.is(r.status, 200, `${verb} ${path}: ${r.text}`);
    }
    assert.is((await http(base, 'DELETE', '/users/5', '')).json.result.id, 5);
    // Whatever its content type (before: 415 for any but JSON, though the README says so). A
    // body with something in it still has to be JSON, and /jsonrpc takes JSON types only.
    const empty = () =>
      new ReadableStream({
        start: (c) => c.close(),
      });
    for (const [verb, path, type, body] of [
      ['POST', `/v1/${topic}/text`, 'application/x-www-form-urlencoded', ''],
      ['POST', `/v1/${topic}/text`, 'text/plain', ''],
      ['POST', `/v1/${topic}/text`, 'text/plain', empty()],
      ['DELETE', '/users/5', 'text/plain; charset=utf-8', ''],
      ['POST', '/whoami', 'application/octet-stream', empty()],
    ] as const) {
      const r = await fetch(`${base}${path}`, { method: verb, headers: { 'content-type': type }, body, duplex: 'half' } as RequestInit);
      assert.is(r.status, 200, `${verb} ${path} as ${type}: ${await r.text()}`);
    }
    for (const [path, type, body, status] of [
      [`/v1/${topic}/text`, 'text/plain', '{}', 415],
      [`/v1/${topic}/text`, 'application/x-www-form-urlencoded', 'a=1', 415],
      ['/jsonrpc', 'text/plain', '', 415],
      ['/nowhere', 'text/plain', 'x', 404],
    ] as const) {
      const r = await http(base, 'POST', path, body, { 'content-type': type });
      assert.is(r.status, status, `${path} ${type} ${JSON.stringify(body)}: ${r.text}`);
    }
    // Before: null was taken as {} (200).
    for (const [path, body] of [
      [`/v1/${topic}/text`, 'null'],
      ['/whoami', 'null'],
      [`/v1/${topic}/text`, '[]'],
      ['/whoami', '3'],
    ]) {
      const r = await http(base, 'POST', path!, body);
      assert.equal([r.status, r.json.error.code], [400, 'HERMOD_ERR_INVALID_ARGUMENT'], `${path} ${body}`);
      assert.match(r.json.error.message, /must be a JSON object of named arguments/);
    }
  });

  t('casts: a cast route and ?cast=1 answer 202 once the broker took it; fanout where the route allows', async (ctx) => {
    const other = new Users('u2');
    await serve(ctx, ctx.topic, 'u2', [other]);
    const r = await http(ctx.base, 'POST', `/v1/${ctx.topic}/touch`, { n: 1 });
    assert.is(r.status, 202);
    assert.is(r.json.accepted, true);
    await until(() => ctx.users.touched.length + other.touched.length === 1, 'the cast');
    const f = await http(ctx.base, 'POST', `/v1/${ctx.topic}/touch?fanout=1`, { n: 2 });
    assert.is(f.status, 202);
    await until(() => ctx.users.touched.some((x) => x.args.n === 2) && other.touched.some((x) => x.args.n === 2), 'the fanout on both');
    const c = await http(ctx.base, 'POST', `/v1/${ctx.topic}/get?cast=1`, { id: 3 });
    assert.is(c.status, 202);
    await until(() => ctx.users.seen.length + other.seen.length === 1, 'the ?cast=1 call');
    const noFan = await http(ctx.base, 'POST', `/v1/${ctx.topic}/get?fanout=1`, { id: 3 });
    assert.is(noFan.status, 400);
  });

  t('errors: not exposed 404, NoSuchMethod 404, bad args 400 (nothing sent), remote 502, bad result 502', async (ctx) => {
    const ne = await http(ctx.base, 'POST', `/v1/${ctx.topic}/secret`, {});
    assert.is(ne.status, 404);
    assert.is(ne.json.error.code, 'HERMOD_ERR_NOT_EXPOSED');
    const nsm = await http(ctx.base, 'POST', `/v1/${ctx.topic}/missing`, {});
    assert.is(nsm.status, 404);
    assert.is(nsm.json.error.code, 'HERMOD_ERR_NO_SUCH_METHOD');
    const bad = await http(ctx.base, 'POST', `/v1/${ctx.topic}/get`, { id: 0, extra: 1 });
    assert.is(bad.status, 400);
    assert.is(bad.json.error.code, 'HERMOD_ERR_INVALID_ARGUMENT');
    assert.is(ctx.users.seen.length, 0, 'a refused call is never sent');
    const notObject = await http(ctx.base, 'POST', `/v1/${ctx.topic}/get`, [1, 2]);
    assert.is(notObject.status, 400);
    const remote = await http(ctx.base, 'POST', `/v1/${ctx.topic}/fail`, { message: 'boom' });
    assert.is(remote.status, 502);
    assert.is(remote.json.error.code, 'HERMOD_ERR_REMOTE');
    assert.is(remote.json.error.type, 'TypeError');
    assert.is(remote.json.error.message, 'boom');
    assert.is(remote.json.error.remote.traceback, undefined, 'no traceback unless configured');
    // The app's own class, rebuilt on the gateway: a 502 as any server failure (it was a 500
    // "internal gateway error" over REST, and code HERMOD_ERR over JSON-RPC).
    const app = await http(ctx.base, 'POST', `/v1/${ctx.topic}/fail`, { message: 'no eggs', app: true });
    assert.is(app.status, 502, JSON.stringify(app.json));
    assert.equal(
      [app.json.error.code, app.json.error.type, app.json.error.message, app.json.error.remote],
      ['HERMOD_ERR_REMOTE', 'OutOfStock', 'no eggs', { module: 'hermod.endpoint', type: 'OutOfStock' }],
    );
    const appRpc = await http(ctx.base, 'POST', '/jsonrpc', {
      jsonrpc: '2.0',
      method: `${ctx.topic}.fail`,
      params: { message: 'no eggs', app: true },
      id: 1,
    });
    assert.is(appRpc.json.error.code, -32001, JSON.stringify(appRpc.json));
    assert.equal(
      [appRpc.json.error.data.code, appRpc.json.error.data.type, appRpc.json.error.data.status],
      ['HERMOD_ERR_REMOTE', 'OutOfStock', 502],
    );
    const broken = await http(ctx.base, 'POST', `/v1/${ctx.topic}/broken`, {});
    assert.is(broken.status, 502);
    assert.is(broken.json.error.code, 'HERMOD_ERR_BAD_RESULT');
    // The method raised MessagingTimeout itself: the server failed, this call did not time out.
    const inner = await http(ctx.base, 'POST', `/v1/${ctx.topic}/fail`, { message: 'inventory did not answer', timeout: true });
    assert.is(inner.status, 502, JSON.stringify(inner.json));
    assert.is(inner.json.error.type, 'MessagingTimeout');
    assert.is(inner.json.error.message, 'inventory did not answer');
    assert.ok(inner.json.error.remote, 'said to come from the server');
    // JSON sent as text: 415, as the README says (it was a 400 "not a JSON object").
    const text = await http(ctx.base, 'POST', `/v1/${ctx.topic}/get`, '{"id": 1}', { 'content-type': 'text/plain' });
    assert.is(text.status, 415, JSON.stringify(text.json));
    assert.is(text.json.error.code, 'FST_ERR_CTP_INVALID_MEDIA_TYPE');
  });

  t('errors: a server aborting the running call (ServerStopped) is 502 without Retry-After: the method may have run', async (ctx) => {
    const call = http(ctx.base, 'POST', `/v1/${ctx.topic}/sleep`, { ms: 1500 }); // the method runs on after the abort: short, so the process ends soon
    await until(() => ctx.servers[0]!.stats().inFlight === 1, 'the call running');
    await ctx.servers[0]!.abort();
    const r = await call;
    assert.is(r.status, 502, JSON.stringify(r.json));
    assert.is(r.json.error.code, 'HERMOD_ERR_SERVER_STOPPED');
    assert.is(r.headers.get('retry-after'), null);
  });

  t('errors: MessagingTimeout 504, UnsupportedVersion 409, bad timeout 400', async (ctx) => {
    // The gateway's transport connects in the background: one call first, so that the 150 ms
    // budget below is the call's, not a first connection's (a loaded CI machine took longer).
    assert.is((await http(ctx.base, 'POST', `/v1/${ctx.topic}/get`, { id: 1 })).status, 200);
    const t0 = Date.now();
    const slow = await http(ctx.base, 'POST', `/v1/${ctx.topic}/sleep?timeout=150`, { ms: 1500 });
    assert.is(slow.status, 504, JSON.stringify(slow.json));
    assert.is(slow.json.error.code, 'HERMOD_ERR_TIMEOUT');
    assert.ok(Date.now() - t0 < 1200, `answered after ${Date.now() - t0} ms: the timeout did not come from ?timeout`);
    const v = await http(ctx.base, 'POST', `/v1/${ctx.topic}/mul?version=2.0`, { a: 2, b: 3 });
    assert.is(v.status, 409);
    assert.is(v.json.error.code, 'HERMOD_ERR_UNSUPPORTED_VERSION');
    const ok = await http(ctx.base, 'POST', `/v1/${ctx.topic}/mul`, { a: 2, b: 3 }, { 'x-hermod-version': '1.1' });
    assert.equal(ok.json, { result: 6 });
    const badT = await http(ctx.base, 'POST', `/v1/${ctx.topic}/get?timeout=abc`, { id: 1 });
    assert.is(badT.status, 400);
    // A control given twice is refused, in the query as in the headers: the last one won, so
    // `?timeout=5000&timeout=300` used 300 and `?cast=1&cast=0` made a call.
    for (const query of ['server=u1&server=nope', 'timeout=5000&timeout=300', 'cast=1&cast=0', 'version=1.0&version=1.0']) {
      const twice = await http(ctx.base, 'POST', `/v1/${ctx.topic}/get?${query}`, { id: 1 });
      assert.equal([twice.status, twice.json.error?.code], [400, 'HERMOD_ERR_INVALID_ARGUMENT'], `${query}: ${twice.text}`);
      assert.match(twice.json.error.message, /is given 2 times; give it once/);
      const rpc = await http(ctx.base, 'POST', `/jsonrpc?${query}`, { jsonrpc: '2.0', method: 'getUser', params: { id: 1 }, id: 1 });
      assert.equal([rpc.status, rpc.json.error?.code], [400, -32602], `jsonrpc ${query}: ${rpc.text}`);
    }
    const twiceHeader = await fetch(`${ctx.base}/v1/${ctx.topic}/get`, {
      method: 'POST',
      headers: [
        ['content-type', 'application/json'],
        ['x-hermod-server', 'u1'],
        ['x-hermod-server', 'nope'],
      ],
      body: '{"id":1}',
    });
    assert.is(twiceHeader.status, 400);
    assert.is(ctx.users.seen.length, 1, 'none of them sent');
    const unknownQ = await http(ctx.base, 'POST', `/v1/${ctx.topic}/get?id=1`, { id: 1 });
    assert.is(unknownQ.status, 400);
    assert.match(unknownQ.json.error.message, /unknown query parameter id/);
  });

  t('JSON-RPC: one call by topic.method and by alias; errors by code', async (ctx) => {
    const r = await http(ctx.base, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: `${ctx.topic}.get`, params: { id: 5 }, id: 1 });
    assert.is(r.status, 200);
    assert.equal(r.json, { jsonrpc: '2.0', result: { id: 5, name: 'user-5', verbose: false, by: 'u1' }, id: 1 });
    const a = await http(ctx.base, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: 'getUser', params: { id: 6 }, id: 'x' });
    assert.is(a.json.result.id, 6);
    assert.is(a.json.id, 'x');
    const nf = await http(ctx.base, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: 'nope.nothing', id: 2 });
    assert.is(nf.json.error.code, -32601);
    assert.is(nf.json.id, 2);
    const ip = await http(ctx.base, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: 'getUser', params: { id: 'x' }, id: 3 });
    assert.is(ip.json.error.code, -32602);
    assert.is(ip.json.error.data.status, 400);
    const pos = await http(ctx.base, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: 'getUser', params: [1], id: 4 });
    assert.is(pos.json.error.code, -32602);
    const remote = await http(ctx.base, 'POST', '/jsonrpc', {
      jsonrpc: '2.0',
      method: `${ctx.topic}.fail`,
      params: { message: 'no' },
      id: 5,
    });
    assert.is(remote.json.error.code, -32001);
    assert.is(remote.json.error.data.type, 'TypeError');
    assert.is(remote.json.error.message, 'no');
    // The controls in the query, as on REST (they were silently dropped): the timeout applies...
    const slow = { jsonrpc: '2.0', method: `${ctx.topic}.sleep`, params: { ms: 1500 }, id: 6 };
    const t0 = Date.now();
    const timed = await http(ctx.base, 'POST', '/jsonrpc?timeout=300', slow);
    assert.is(timed.json.error?.code, -32000, JSON.stringify(timed.json));
    assert.ok(Date.now() - t0 < 1400, `answered after ${Date.now() - t0} ms with timeout=300`);
    // ...and an unknown query parameter is refused, its name bounded in the answer.
    const unknown = await http(ctx.base, 'POST', `/jsonrpc?${'z'.repeat(5000)}=1`, slow);
    assert.is(unknown.status, 400);
    assert.is(unknown.json.error.code, -32602);
    assert.ok(unknown.text.length < 2000, `${unknown.text.length} bytes`);
    const long = await http(ctx.base, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: `x.${'m'.repeat(100_000)}`, id: 7 });
    assert.is(long.json.error.code, -32601);
    assert.ok(long.text.length < 2000, `a 100 kB method name answered in ${long.text.length} bytes`);
  });

  t('JSON-RPC: a batch runs concurrently and answers one array matched by id; notifications are casts', async (ctx) => {
    const t0 = Date.now();
    const r = await http(ctx.base, 'POST', '/jsonrpc', [
      { jsonrpc: '2.0', method: `${ctx.topic}.sleep`, params: { ms: 1500 }, id: 'a' },
      { jsonrpc: '2.0', method: `${ctx.topic}.sleep`, params: { ms: 1500 }, id: 'b' },
      { jsonrpc: '2.0', method: 'getUser', params: { id: 9 }, id: 3 },
      { jsonrpc: '2.0', method: `${ctx.topic}.touch`, params: { n: 'note' } },
      { jsonrpc: '2.0', method: `${ctx.topic}.missing`, id: 4 },
      { foo: 'bar' },
      1,
    ]);
    const took = Date.now() - t0;
    assert.is(r.status, 200);
    // One after the other they take 3 s at least: under that, they ran together (calls of 300 ms
    // against a 600 ms bound left too little for a loaded machine).
    assert.ok(took < 2800, `concurrent: took ${took} ms for two 1500 ms calls`);
    assert.is(r.json.length, 6, 'one answer per request, none for the notification');
    const byId = new Map<unknown, Json>(r.json.filter((x: Json) => x.id !== null).map((x: Json) => [x.id, x]));
    assert.is(byId.get('a').result, 1500);
    assert.is(byId.get('b').result, 1500);
    assert.is(byId.get(3).result.id, 9);
    assert.is(byId.get(4).error.code, -32601);
    const invalid = r.json.filter((x: Json) => x.id === null);
    assert.is(invalid.length, 2);
    for (const x of invalid) assert.is(x.error.code, -32600);
    await until(() => ctx.users.touched.some((x) => x.args.n === 'note'), 'the notification cast');
  });

  t('JSON-RPC: ids beyond 2^53 and fractional ids come back with the digits the request sent', async (ctx) => {
    // JSON.parse rounds 9007199254740993 to …992: a client with 64-bit ids could not match its answer.
    const big = '9007199254740993';
    const single = await http(ctx.base, 'POST', '/jsonrpc', `{"jsonrpc":"2.0","method":"getUser","params":{"id":5},"id":${big}}`);
    assert.is(single.status, 200);
    assert.match(single.headers.get('content-type') ?? '', /^application\/json/);
    assert.ok(single.text.endsWith(`"id":${big}}`), single.text);
    assert.is(single.json.result.name, 'user-5');
    const batch = await http(
      ctx.base,
      'POST',
      '/jsonrpc',
      `[{"jsonrpc":"2.0","method":"getUser","params":{"id":1},"id":-12345678901234567890},
        {"jsonrpc":"2.0","method":"${ctx.topic}.touch","params":{"n":3}},
        {"jsonrpc":"2.0","method":"${ctx.topic}.missing","id":1.25e-3},
        {"jsonrpc":"2.0","method":"getUser","params":{"id":2},"\\u0069d":18446744073709551615},
        {"jsonrpc":"2.0","method":"getUser","params":{"id":3},"id":7}]`,
    );
    assert.is(batch.status, 200);
    assert.is(batch.json.length, 4);
    const at = ['"id":-12345678901234567890}', '"id":1.25e-3}', '"id":18446744073709551615}', '"id":7}'].map((s) => batch.text.indexOf(s));
    assert.ok(
      at.every((p, i) => p > 0 && (i === 0 || p > at[i - 1]!)),
      batch.text,
    );
    assert.equal(
      batch.json.map((a: Json) => a.result?.name ?? a.error.code),
      ['user-1', -32601, 'user-2', 'user-3'],
    );
    // Numbers JSON.parse cannot give back: 1e400 overflows (it was refused as an Invalid Request
    // with id null), 1e-400 underflows and -0 loses its sign (both came back as 0).
    for (const id of ['1e400', '-1e400', '1e-400', '-0']) {
      const one = await http(ctx.base, 'POST', '/jsonrpc', `{"jsonrpc":"2.0","method":"getUser","params":{"id":4},"id":${id}}`);
      assert.ok(one.text.endsWith(`"id":${id}}`), `${id}: ${one.text}`);
      assert.is(one.json.result?.name, 'user-4', one.text);
    }
    const odd = await http(
      ctx.base,
      'POST',
      '/jsonrpc',
      `[{"jsonrpc":"2.0","method":"getUser","params":{"id":1},"id":-1e400},{"jsonrpc":"2.0","method":"nope.x","id":1e-400},{"jsonrpc":"2.0","method":"getUser","params":{"id":2},"id":0}]`,
    );
    assert.ok(odd.text.includes('"id":-1e400}') && odd.text.includes('"id":1e-400}') && odd.text.endsWith('"id":0}]'), odd.text);
    assert.equal(
      odd.json.map((a: Json) => a.result?.name ?? a.error.code),
      ['user-1', -32601, 'user-2'],
    );
  });

  t('JSON-RPC: all-notification batch → 204 nothing; empty batch, invalid JSON, invalid request → one error', async (ctx) => {
    const none = await http(ctx.base, 'POST', '/jsonrpc', [
      { jsonrpc: '2.0', method: `${ctx.topic}.touch`, params: { n: 1 } },
      { jsonrpc: '2.0', method: `${ctx.topic}.touch`, params: { n: 2 } },
    ]);
    assert.is(none.status, 204);
    assert.is(none.text, '');
    await until(() => ctx.users.touched.length === 2, 'both notifications');
    const empty = await http(ctx.base, 'POST', '/jsonrpc', []);
    assert.equal(empty.json, { jsonrpc: '2.0', error: { code: -32600, message: 'Invalid Request: empty batch' }, id: null });
    const parse = await http(
      ctx.base,
      'POST',
      '/jsonrpc',
      '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},{"jsonrpc": "2.0", "method"',
    );
    assert.is(parse.json.error.code, -32700);
    assert.is(parse.json.id, null);
    const single = await http(ctx.base, 'POST', '/jsonrpc', { jsonrpc: '2.0', method: 1, params: 'bar' });
    assert.is(single.json.error.code, -32600);
    // An absolute-form target (as a client talking through a proxy sends) is the same route:
    // before, its errors came in the REST shape because the check read the URL's text.
    const raw = await new Promise<string>((resolve, reject) => {
      const body = 'not json';
      const s = net.connect(Number(new URL(ctx.base).port), '127.0.0.1', () =>
        s.end(
          `POST http://gateway.example/jsonrpc HTTP/1.1\r\nHost: gateway.example\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
        ),
      );
      let data = '';
      s.on('data', (d) => {
        data += d;
      });
      s.on('close', () => resolve(data));
      s.on('error', reject);
    });
    const answer = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4));
    assert.is(answer.jsonrpc, '2.0', raw);
    assert.equal([answer.error.code, answer.error.data.status], [-32600, 415]);
    // The JSON-RPC media types clients send besides JSON's. Before: 415.
    for (const type of ['application/json-rpc', 'application/jsonrequest', 'application/json-rpc; charset=utf-8']) {
      const r = await http(
        ctx.base,
        'POST',
        '/jsonrpc',
        { jsonrpc: '2.0', method: 'getUser', params: { id: 3 }, id: 9 },
        { 'content-type': type },
      );
      assert.equal([r.status, r.json?.result?.id, r.json?.id], [200, 3, 9], `${type}: ${r.text}`);
    }
  });
  return t;
}

/** A users service on its own topic and a gateway in front of it, on one broker URL; `close()` undoes it all. */
export interface Harness {
  base: string;
  topic: string;
  users: Users;
  gateway: Gateway;
  transport: Transport;
  close(): Promise<void>;
}

let harnesses = 0;

/** A users service (server u1) on a topic of its own, and a transport for its callers. */
async function usersService(url: string, prefix: string) {
  const topic = `${prefix}-${process.pid}-${++harnesses}`;
  const serverTransport = await getTransport(url, { config: defaultConfig() });
  const users = new Users();
  const server = new RPCServer(serverTransport, new Target({ topic, server: 'u1' }), [users]);
  await server.start();
  const transport = await getTransport(url, { config: defaultConfig() });
  return {
    topic,
    users,
    transport,
    async close() {
      await server.stop();
      await server.wait(1000);
      await transport.close();
      await serverTransport.close();
    },
  };
}

export async function harness(url: string, options: GatewayOptions | ((topic: string) => GatewayOptions) = {}): Promise<Harness> {
  const { topic, users, transport, close } = await usersService(url, 'h');
  const opts = typeof options === 'function' ? options(topic) : options;
  const gateway = createGateway(transport, { routes: userRoutes(topic), ...opts, listen: { host: '127.0.0.1', port: 0 } });
  const { url: base } = await gateway.start();
  return {
    base,
    topic,
    users,
    gateway,
    transport,
    async close() {
      await gateway.stop(1000);
      await close();
    },
  };
}

/** {@link Harness} with the gateway as a plugin in an application's fastify server, under `prefix`. */
export interface MountedHarness extends Omit<Harness, 'gateway'> {
  /** The application: its own `GET /app/hello` and `POST /app/echo`, and the gateway under the prefix. */
  app: FastifyInstance;
  /** The application's root URL (`base` is the gateway's: root + prefix). */
  root: string;
}

/**
 * The users service and an application of its own (two routes, its own error handler) with
 * `hermodGateway` registered under `prefix`, listening on 127.0.0.1 port 0.
 */
export async function mountedHarness(
  url: string,
  prefix: string,
  options: Omit<GatewayPluginOptions, 'transport'> | ((topic: string) => Omit<GatewayPluginOptions, 'transport'>) = {},
): Promise<MountedHarness> {
  const { topic, users, transport, close } = await usersService(url, 'm');
  const opts = typeof options === 'function' ? options(topic) : options;
  const app = Fastify({ genReqId: gatewayRequestId });
  app.setErrorHandler((err: Error, _request, reply) => reply.code(418).send({ app: 'error', message: err.message }));
  app.get('/app/hello', async () => ({ hello: 'app' }));
  app.post('/app/echo', async (request) => ({ body: request.body }));
  await app.register(hermodGateway, { routes: userRoutes(topic), ...opts, transport, prefix });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as { port: number };
  const root = `http://127.0.0.1:${port}`;
  return {
    app,
    root,
    base: `${root}${prefix}`,
    topic,
    users,
    transport,
    async close() {
      await app.close();
      await close();
    },
  };
}

/**
 * A suite on one broker, started before its tests and stopped after them, where each test keeps
 * its harness in `ctx.h` and has it closed after it, pass or fail.
 */
export function harnessSuite<H extends { close(): Promise<void> } = Harness>(title: string, broker: () => Promise<GatewayBroker>) {
  const t = suite<{ broker: GatewayBroker; h: H }>(title, {} as never);
  t.before(async (ctx) => {
    ctx.broker = await broker();
  });
  t.after(async (ctx) => {
    await ctx.broker.stop();
  });
  t.after.each(async (ctx) => {
    await ctx.h?.close();
  });
  return t;
}

/** The in-process brokers every gateway feature is tested on: memory and the embedded router. */
export const IN_PROCESS: Array<[string, () => Promise<GatewayBroker>]> = [
  ['memory', async () => ({ url: 'memory://', stop: async () => {} })],
  [
    'amqp1 via the embedded router',
    async () => {
      const router = new Router({ port: 0 });
      const port = await router.start();
      return { url: `amqp://127.0.0.1:${port}/`, stop: () => router.stop() };
    },
  ],
];

/** A raw keep-alive HTTP/1.1 connection (see {@link keepAlive}). */
export interface KeepAlive {
  socket: net.Socket;
  /** Resolves when the server closed the connection. */
  closed: Promise<void>;
  /** One GET; resolves with the response's head and body as read, or '' when the server closed instead. */
  get(path: string): Promise<string>;
  /** One request as written (its head and body, CRLFs included); resolves as {@link get} does. */
  send(request: string): Promise<string>;
}

/** Opens a raw keep-alive HTTP/1.1 connection, to see exactly when the gateway accepts and closes. */
export function keepAlive(port: number, localAddress?: string): Promise<KeepAlive> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', ...(localAddress ? { localAddress } : {}) });
    let data = '';
    let waiter: ((s: string) => void) | undefined;
    let ended = false;
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.on('data', (d) => {
      data += d;
      // Every response here is small and carries Content-Length: complete once the body is in.
      const head = data.indexOf('\r\n\r\n');
      const len = /content-length: (\d+)/i.exec(data)?.[1];
      if (waiter && head >= 0 && len !== undefined && data.length >= head + 4 + Number(len)) {
        const w = waiter;
        waiter = undefined;
        const out = data;
        data = '';
        w(out);
      }
    });
    socket.once('close', () => {
      ended = true;
      waiter?.(data);
      waiter = undefined;
    });
    socket.on('error', () => undefined);
    const send = (request: string) =>
      new Promise<string>((r) => {
        if (ended) return r('');
        waiter = r;
        socket.write(request);
      });
    socket.once('connect', () =>
      resolve({
        socket,
        closed,
        send,
        get: (path) => send(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n`),
      }),
    );
    socket.once('error', reject);
  });
}

/**
 * Sends the headers of a POST to `path` announcing 100 bytes of body and only part of it; resolves
 * with everything the gateway wrote back once it closes the connection (at most `guardMs`).
 */
export async function halfSentPost(port: number, path: string, guardMs = 3000): Promise<string> {
  let guard: NodeJS.Timeout | undefined;
  return new Promise<string>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"id":`);
    });
    let data = '';
    s.on('data', (d) => {
      data += d;
    });
    s.on('close', () => resolve(data));
    s.on('error', reject);
    guard = setTimeout(() => s.destroy(new Error(`still open after ${guardMs} ms`)), guardMs);
  }).finally(() => clearTimeout(guard));
}
