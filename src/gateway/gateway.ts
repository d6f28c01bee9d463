/**
 * `createGateway(transport, options)`: an HTTP server (fastify 5) that turns REST and JSON-RPC
 * requests into hermod calls and casts. It is an RPC client with an HTTP face: it talks to the
 * Transport only, so it works on every driver and with oslo.messaging servers alike.
 */

import { randomUUID } from 'node:crypto';
import { type IncomingMessage, maxHeaderSize, type ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyServerOptions } from 'fastify';
import { deferred } from '../core/deferred.js';
import { channels, type GatewayRefusedEvent } from '../core/diagnostics.js';
import { ClosedError } from '../core/errors.js';
import type { Transport } from '../transport.js';
import type { Authenticate } from './auth.js';
import type { GatewayConfig, ResolvedGatewayConfig } from './config.js';
import { gatewayRequestId } from './context.js';
import { RPC_CODES } from './errors.js';
import { MAX_REF_CHARS } from './job-refs.js';
import { gatewayParts, mountGateway } from './mount.js';

/** Options of {@link createGateway}: the configuration (as in the gateway config file) plus hooks. */
export interface GatewayOptions extends Omit<GatewayConfig, 'hermod'> {
  /**
   * Decides who the caller is. Replaces `auth.keysFile`. Return null/undefined for no (or bad)
   * credentials: the request gets 401 unless `auth.allowAnonymous`.
   */
  authenticate?: Authenticate;
  /**
   * Key material for job references (at least 32 characters), in place of `jobs.keyFile` and
   * the `HERMOD_GATEWAY_JOBS_KEY` variable: gateways that share it read each other's references.
   */
  jobsKey?: string;
  /** fastify's logger option. @default false */
  logger?: FastifyServerOptions['logger'];
  /**
   * Told of each connection closed for `maxConnections`, `maxConnectionsPerAddress` or
   * `maxPipelined` (the bin logs a line per burst). It runs on the accepting path: keep it cheap.
   */
  onConnectionRefused?: (event: ConnectionRefusedEvent) => void;
}

/** A connection the gateway closed: `maxConnections` (or `maxConnectionsPerAddress`) were open, or it pipelined past `maxPipelined`. */
export interface ConnectionRefusedEvent {
  /** The limit in force. */
  limit: number;
  /** The client's address had `maxConnectionsPerAddress` open. */
  perAddress?: boolean;
  /** The connection had more than `maxPipelined` requests unanswered (it was open until then). */
  pipelined?: boolean;
  /** Connections refused since the gateway was created, this one included. */
  refused: number;
  /** The client's address, when the socket still knows it. */
  remoteAddress?: string;
}

/** Where a started gateway listens. */
export interface GatewayAddress {
  /** The address it listens on. */
  host: string;
  /** The port it listens on (the one the OS gave for port 0). */
  port: number;
  /** `http://host:port` */
  url: string;
}

/** A gateway; see {@link createGateway}. */
export interface Gateway {
  /** The fastify instance (for `inject`, or to add routes of your own before `start`). */
  readonly app: FastifyInstance;
  /** Where it listens once started. */
  readonly address: GatewayAddress | undefined;
  /** The effective configuration. */
  readonly config: ResolvedGatewayConfig;
  /** Calls and casts sent and not yet answered (what a stop waits for). */
  readonly inFlight: number;
  /**
   * HTTP connections open now, refused so far for `maxConnections` (and the per-address and
   * pipelining limits), and idle keep-alive ones closed so far to make room at those limits.
   */
  readonly connections: { open: number; refused: number; evictedIdle: number };
  /**
   * Listens on `listen.host`:`listen.port` (port 0: any free port). Rejects with a
   * `ClosedError` once {@link stop} was called, including a stop that came while it started
   * (but with the listen's own error, such as EADDRINUSE, when the bind a stop waited on failed).
   */
  start(): Promise<GatewayAddress>;
  /**
   * Stops accepting requests at once (new ones get 503), lets the running ones finish for up
   * to `deadlineMs`, then answers the calls still running with 504 (CallCut: the method may
   * have run) and closes what is left. `aborted` counts the calls still running at the deadline.
   * The transport is the caller's: it stays open. Called while {@link start} loads contracts,
   * the start ends there; called while it binds, it waits for the bind (at most `deadlineMs`) and
   * closes the port, so nothing listens once it resolves.
   */
  stop(deadlineMs?: number): Promise<{ aborted: number }>;
  /**
   * Stops as {@link stop} does, but now: a stop in progress ends its wait at once. The calls
   * still running are answered 504 (CallCut, as at the deadline) before the connections are cut,
   * so that no caller is left with a dropped connection (a second signal to `hermod-gateway`).
   */
  abort(): Promise<{ aborted: number }>;
}

/** After the stop's deadline, how long the 503s of the calls still running get to be written before every connection is cut. */
const CUT_GRACE_MS = 250;

/**
 * Bounds of the lingering close of a connection answered before its request's body was read:
 * how long it goes on reading (and dropping) what the client still sends, and how much of it.
 */
const LINGER_MS = 5_000;
const LINGER_BYTES = 64 * 1024 * 1024;
const LINGER_POLL_MS = 100;

/**
 * Has `socket`, once its answer is written, close the way nginx's lingering close does: the
 * answer and a FIN go out, and what the client still sends is read and dropped until it closes
 * too, or for at most {@link LINGER_MS} and {@link LINGER_BYTES}. Node destroyed the socket as
 * soon as the answer was written, with the body still arriving: the kernel answered the unread
 * bytes with a reset, and a client still sending (a 1.1-20 MB body to a 1 MiB limit, curl or
 * fetch) often got EPIPE or ECONNRESET instead of the 413. Node's HTTP parser reads the socket
 * and drops the rest of the request's body (the request is dumped), so nothing is held;
 * requests parsed after it are dropped unrun (see the onRequest hook).
 */
function lingerOnClose(socket: Socket, lingering: WeakSet<Socket>): void {
  if (lingering.has(socket)) return;
  lingering.add(socket);
  // Node's server calls destroySoon once the last answer of a `Connection: close` is written.
  socket.destroySoon = () => {
    if (socket.writable) socket.end();
    if (socket.destroyed) return;
    const from = socket.bytesRead;
    const until = Date.now() + LINGER_MS;
    const poll = setInterval(() => {
      if (Date.now() >= until || socket.bytesRead - from > LINGER_BYTES) socket.destroy();
    }, LINGER_POLL_MS);
    poll.unref();
    socket.once('close', () => clearInterval(poll));
  };
}

/** Whether a request announces a body (chunked, or a Content-Length other than 0). */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && Number(length) !== 0);
}

/**
 * How long a keep-alive connection must have been idle before it may be closed to make room for a
 * new one: between an answer and its next request a busy client is idle for microseconds, and a
 * request already on its way would be lost (fetch does not resend a POST).
 */
export const MIN_IDLE_MS = 1000;

/**
 * A whole HTTP/1.1 answer in the gateway's error shape, for a socket no request object can answer
 * (a request Node's parser refused, a CONNECT); the connection closes after it.
 */
function rawAnswer(status: number, code: string, type: string, message: string): string {
  const requestId = `req-${randomUUID()}`;
  const body = JSON.stringify({ error: { code, type, message, requestId } });
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\nConnection: close\r\n\r\n${body}`
  );
}

/** Builds a gateway over `transport`; nothing listens until `start()`. Throws ConfigError on a bad configuration. */
export function createGateway(transport: Transport, options: GatewayOptions = {}): Gateway {
  const { authenticate: hook, logger, onConnectionRefused, jobsKey: keyText, ...data } = options;
  const { config, refs, authenticate, invoker } = gatewayParts(transport, data, { authenticate: hook, jobsKey: keyText });
  const app = Fastify({
    logger: logger ?? false,
    bodyLimit: config.bodyLimit,
    requestTimeout: config.requestTimeout,
    // Node checks request timeouts every 30 s by default, and only when the headers timeout is
    // no longer than the request's: a slow client should hear 408 near its deadline.
    http: {
      requestTimeout: config.requestTimeout,
      headersTimeout: config.requestTimeout,
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(config.requestTimeout / 4))),
      // Node answered an HTTP/1.1 request without Host itself, with a bare 400: the onRequest
      // hook answers it in the gateway's shape (RFC 9112 §3.2 still requires the 400).
      requireHostHeader: false,
    },
    keepAliveTimeout: config.keepAliveTimeout,
    // A number of hops is documented and handled by fastify (proxy-addr), only its types omit it.
    trustProxy: config.trustProxy as boolean | string | string[],
    genReqId: gatewayRequestId,
    // A job reference is a path parameter of a few hundred characters (fastify's default: 100).
    routerOptions: { maxParamLength: MAX_REF_CHARS },
    // fastify answers a malformed URL (`/users/%zz`) or an overlong path parameter itself, in
    // its own shape and quoting the whole path back; here in the gateway's shape, without it.
    frameworkErrors: (err, request, reply: FastifyReply) => {
      const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 400;
      const message =
        err.code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? `a path parameter is longer than ${MAX_REF_CHARS} characters`
          : 'the URL is not valid (a malformed percent-escape?)';
      void reply
        .code(status)
        .header('x-request-id', request.id)
        .header('connection', 'close')
        .send({ error: { code: err.code, type: 'BadUrl', message, requestId: request.id } });
    },
    // What Node's parser refuses before there is a request (headers over its maxHeaderSize, not
    // HTTP, too slow to arrive), in the gateway's shape: fastify's default wrote a body of its
    // own ({"error": "Request Header Fields Too Large", "statusCode": 431}) that no client of the
    // gateway parses.
    clientErrorHandler: (err: NodeJS.ErrnoException, socket: Socket) => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const [status, type, message] =
        err.code === 'HPE_HEADER_OVERFLOW'
          ? [431, 'HeadersTooLarge', `the request's headers are larger than the ${maxHeaderSize} bytes the gateway reads`]
          : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? [408, 'RequestTimeout', `the request was not received within ${config.requestTimeout} ms (requestTimeout)`]
            : [400, 'BadRequest', 'the request is not valid HTTP/1.1'];
      if (socket.writable) socket.write(rawAnswer(status, err.code ?? 'HPE_INVALID', type, message));
      // As Node and fastify do: the parser cannot go on with this connection.
      socket.destroy(err);
    },
    // Requests that arrive while closing go to their route, whose admission refuses them with the
    // documented 503 (Retry-After, the JSON-RPC envelope, X-Request-Id): fastify's own 503 had none.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
  });
  // Counted here rather than with Node's server.maxConnections: a cluster worker at that limit
  // hands the connection back to the primary, which offers it to the next worker, round and
  // round while every worker is full. Closed here, it ends.
  let open = 0;
  let refused = 0;
  /** Open connections by client address, for maxConnectionsPerAddress. */
  const byAddress = new Map<string, number>();
  // What Node answers by itself, with a bare status line and no body, in the gateway's shape:
  // `Expect` other than 100-continue (417), CONNECT (no route can take a tunnel: 405, it was a
  // cut connection), and `Expect: 100-continue` checked before the 100 is sent, so a client is not
  // told to upload a body the gateway refuses for its size. Through the request's own response,
  // so that a pipelined one is answered in its turn (written to the socket at once, it went
  // nowhere while an answer before it was pending, or ahead of that answer).
  const refuseRaw = (req: IncomingMessage, res: ServerResponse, status: number, code: string, type: string, message: string) => {
    const requestId = `req-${randomUUID()}`;
    const detail = { code, type, message, requestId };
    const jsonrpc = (req.url ?? '').split('?')[0] === '/jsonrpc';
    const body = JSON.stringify(
      jsonrpc
        ? { jsonrpc: '2.0', error: { code: RPC_CODES.invalidRequest, message, data: { ...detail, status } }, id: null }
        : { error: detail },
    );
    res.shouldKeepAlive = false;
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'x-request-id': requestId,
      connection: 'close',
    });
    res.end(body);
  };
  app.server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    refuseRaw(req, res, 417, 'HTTP_EXPECTATION_FAILED', 'ExpectationFailed', 'the only Expect the gateway takes is 100-continue');
  });
  app.server.on('connect', (_req: IncomingMessage, socket: Socket) => {
    // Node gives the socket up at a CONNECT: an answer written to it would overtake those still
    // pending for requests pipelined before it, so such a connection is only cut, as before.
    if ((unanswered.get(socket) ?? 0) > 0) socket.destroy();
    else socket.end(rawAnswer(405, 'HTTP_METHOD_NOT_ALLOWED', 'MethodNotAllowed', 'CONNECT is not a method of the gateway'));
  });
  app.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const length = Number(req.headers['content-length']);
    if (length > config.bodyLimit) {
      refuseRaw(
        req,
        res,
        413,
        'FST_ERR_CTP_BODY_TOO_LARGE',
        'PayloadTooLarge',
        `the body of ${length} bytes is over the gateway's limit of ${config.bodyLimit}`,
      );
      return;
    }
    res.writeContinue();
    app.server.emit('request', req, res);
  });
  /**
   * Keep-alive connections with every request answered, by when each went idle, oldest first: at
   * a connection limit the oldest of them is closed to admit the newcomer, as nginx drains its
   * reusable connections. Before, a few addresses' idle keep-alive connections (one request each,
   * then silence for the 72 s keepAliveTimeout) held every slot, and every other client was
   * refused for that long. Only one idle for {@link MIN_IDLE_MS} or more is closed: a busy client
   * is idle for microseconds between an answer and its next request, which may be on its way.
   */
  const idle = new Map<Socket, number>();
  /** Connections closed to make room whose close event has not come yet: their slots are free already. */
  let freeing = 0;
  /** Closes the oldest idle connection (from `from`, when given); whether there was one. */
  const evictIdle = (from?: string): boolean => {
    const before = Date.now() - MIN_IDLE_MS;
    for (const [s, since] of idle) {
      // Oldest first: once one is too recent, so are the rest.
      if (since > before) return false;
      if (from !== undefined && s.remoteAddress !== from) continue;
      idle.delete(s);
      freeing++;
      s.once('close', () => freeing--);
      s.destroy();
      evicted++;
      return true;
    }
    return false;
  };
  let evicted = 0;
  app.server.on('connection', (socket: Socket) => {
    const from = socket.remoteAddress ?? '';
    const fromHere = byAddress.get(from) ?? 0;
    let perAddress = config.maxConnectionsPerAddress > 0 && fromHere >= config.maxConnectionsPerAddress;
    // The address's own idle connection makes room for it first, which frees a slot of the total
    // too; else anyone's, for the total. `open` and the address's count go down at the close
    // events: the slots being freed are not counted meanwhile.
    if (perAddress && evictIdle(from)) perAddress = false;
    else if (!perAddress && open - freeing >= config.maxConnections) evictIdle();
    if (open - freeing >= config.maxConnections || perAddress) {
      refused++;
      if (channels.gatewayRefused.hasSubscribers)
        channels.gatewayRefused.publish({
          limit: perAddress ? 'maxConnectionsPerAddress' : 'maxConnections',
        } satisfies GatewayRefusedEvent);
      onConnectionRefused?.({
        limit: perAddress ? config.maxConnectionsPerAddress : config.maxConnections,
        refused,
        ...(perAddress ? { perAddress: true } : {}),
        ...(socket.remoteAddress ? { remoteAddress: socket.remoteAddress } : {}),
      });
      socket.destroy();
      return;
    }
    open++;
    byAddress.set(from, fromHere + 1);
    socket.once('close', () => {
      idle.delete(socket);
      open--;
      const left = (byAddress.get(from) ?? 1) - 1;
      if (left > 0) byAddress.set(from, left);
      else byAddress.delete(from);
    });
  });
  // Requests of each connection not yet answered (pipelined ones wait for those before them).
  const unanswered = new WeakMap<Socket, number>();
  /** Connections closing the lingering way (see {@link lingerOnClose}). */
  const lingering = new WeakSet<Socket>();
  // Callback style, first of the request hooks: a pipelining flood is cut before any work.
  app.addHook('onRequest', (request, reply, done) => {
    const socket = request.raw.socket;
    // A request Node parsed from a connection already cut (it read them all from one chunk)
    // is dropped unrun: before, the one over the limit and every one after it in the same
    // read went on to run their calls, for a client that would never see an answer.
    // Likewise one read from a connection closing after an answer given before its body was
    // read: the answer said `Connection: close`, and whatever the client sent after that body
    // is not run (its answer could not be written).
    if (socket.destroyed || lingering.has(socket)) {
      reply.hijack();
      done();
      return;
    }
    const n = (unanswered.get(socket) ?? 0) + 1;
    unanswered.set(socket, n);
    idle.delete(socket);
    if (n > config.maxPipelined) {
      // Closed, not answered: an answer would wait behind the others like the rest.
      refused++;
      if (channels.gatewayRefused.hasSubscribers) channels.gatewayRefused.publish({ limit: 'maxPipelined' } satisfies GatewayRefusedEvent);
      onConnectionRefused?.({
        limit: config.maxPipelined,
        refused,
        pipelined: true,
        ...(socket.remoteAddress ? { remoteAddress: socket.remoteAddress } : {}),
      });
      socket.destroy();
      reply.hijack();
    }
    done();
  });
  /** Set when stop() is called: responses from then on close their connection. */
  let stopping = false;
  mountGateway(app, {
    transport,
    config,
    invoker,
    authenticate,
    refs,
    prefix: '',
    notFound: true,
    stopping: () => stopping,
    // A request answered before its body was read (401 from onRequest, 413, 404 on a POST) closes
    // its connection: the rest of its body would otherwise be read as the next request, or sit
    // half-sent until requestTimeout writes a second response (408) on the same connection.
    // A request without a body is not such a request, though Node marks it complete only after
    // the hooks that may answer it ran: every CORS preflight (answered in onRequest) closed its
    // keep-alive connection, and a browser paid a new connection for each call that followed one.
    closeAfter: (request) => {
      const unread = !request.raw.complete && hasBody(request.raw);
      if (unread) lingerOnClose(request.raw.socket, lingering);
      return unread;
    },
    answered: (request) => {
      const socket = request.raw.socket;
      const n = unanswered.get(socket);
      if (n !== undefined) unanswered.set(socket, n - 1);
      // Re-added at the end: the order is of when each connection went idle.
      if (n === 1 && !socket.destroyed && !lingering.has(socket)) idle.set(socket, Date.now());
    },
  });

  let address: GatewayAddress | undefined;
  let stopped: Promise<{ aborted: number }> | undefined;
  /** Resolved by abort(): the stop's waits (the bind, the deadline) end now. */
  const aborting = deferred();
  let abortedAtOnce = false;
  /** The listen in progress or done, once start() got that far. */
  let binding: Promise<unknown> | undefined;
  return {
    app,
    config,
    get address() {
      return address;
    },
    get inFlight() {
      return invoker.inFlight;
    },
    get connections() {
      return { open, refused, evictedIdle: evicted };
    },
    async start() {
      if (stopped) throw new ClosedError('the gateway was stopped');
      // The connection opens now, not at the first request: /readyz says ready only once it is
      // up (it said ready before any connection, with the broker down). It keeps trying as the
      // driver does; the bin logs each attempt.
      if (transport.url.driver !== 'memory') transport.connect().catch(() => undefined);
      const run = (async () => {
        if (config.contractTimeout > 0) await invoker.loadContracts(config.contractTimeout);
        // A stop during the contracts' load ends the start here; only a bind in progress is
        // something stop() must wait for.
        if (stopped) throw new ClosedError('the gateway was stopped while starting');
        binding = app.listen({ host: config.listen.host, port: config.listen.port });
        await binding;
      })();
      await run;
      // stop() is waiting on this bind and closes what it bound.
      if (stopped) throw new ClosedError('the gateway was stopped while starting');
      const a = app.server.address();
      if (!a || typeof a === 'string') throw new ClosedError('the gateway has no TCP address');
      const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      address = { host: a.address, port: a.port, url: `http://${host}:${a.port}` };
      return address;
    },
    stop(deadlineMs = 10_000) {
      stopping = true;
      stopped ??= (async () => {
        // No new calls from this moment (readyz says 503), whatever the bind below waits for.
        const drained = invoker.drain();
        // fastify's close before a pending listen has bound finds no server, and the listen
        // binds one after it: let the bind finish (or fail) first, within the deadline (a cluster
        // worker's listen never settles once its primary is gone).
        if (binding) {
          let bindTimer: NodeJS.Timeout | undefined;
          await Promise.race([
            binding.catch(() => undefined),
            new Promise((r) => {
              bindTimer = setTimeout(r, deadlineMs);
            }),
            aborting.promise,
          ]);
          clearTimeout(bindTimer);
        }
        const closing = app.close();
        let timer: NodeJS.Timeout | undefined;
        // Slow uploads hold their connection without a call in flight: the deadline covers them too.
        const late = await Promise.race([
          Promise.all([drained, closing]).then(() => false),
          new Promise<boolean>((r) => {
            timer = setTimeout(() => r(true), deadlineMs);
          }),
          aborting.promise.then(() => true),
        ]);
        clearTimeout(timer);
        const aborted = late ? invoker.inFlight : 0;
        if (late) {
          // The calls still running get a 503 (with Connection: close) instead of a cut
          // connection; what is left a moment later (slow uploads, clients not reading) is cut.
          invoker.cut(abortedAtOnce ? 'it was told to stop at once' : undefined);
          let grace: NodeJS.Timeout | undefined;
          await Promise.race([
            closing,
            new Promise((r) => {
              grace = setTimeout(r, CUT_GRACE_MS);
            }),
          ]);
          clearTimeout(grace);
          app.server.closeAllConnections();
        }
        await closing;
        return { aborted };
      })();
      return stopped;
    },
    abort() {
      abortedAtOnce = true;
      aborting.resolve();
      return this.stop(0);
    },
  };
}
