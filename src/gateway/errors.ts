/**
 * The one table from errors to HTTP statuses and JSON-RPC codes (README "Gateway" prints it),
 * and the body both faces send.
 */

import { ContractViolation } from '../contracts/violation.js';
import {
  ClosedError,
  HermodError,
  InvalidArgument,
  InvalidTarget,
  MessageDeliveryFailure,
  MessageUndeliverable,
  MessagingTimeout,
  NestingTooDeep,
  NoSuchMethod,
  RemoteError,
  RPCVersionCapError,
  ServerStopped,
  TooManyInFlight,
  TransportError,
  UnsupportedVersion,
} from '../core/errors.js';
import { InvalidJobToken, JobCancelled, JobFinished, JobNotFound, ServerUnavailable, TooManyJobs } from '../jobs/errors.js';
import { isRemote } from '../rpc/remote-errors.js';
import type { RemoteErrorRule } from './config.js';

function code(cls: abstract new (...args: never[]) => HermodError, value: string): void {
  Object.defineProperty(cls, 'CODE', { value });
}

/** The caller presented no credentials, or unknown ones. */
export class Unauthenticated extends HermodError {}
code(Unauthenticated, 'HERMOD_ERR_UNAUTHENTICATED');

/** The caller lacks every role the route requires. */
export class Forbidden extends HermodError {}
code(Forbidden, 'HERMOD_ERR_FORBIDDEN');

/** The topic/method is not exposed by this gateway (mapping policy `declared`). */
export class NotExposed extends HermodError {}
code(NotExposed, 'HERMOD_ERR_NOT_EXPOSED');

/** The server's result does not match the route's result schema. */
export class BadResult extends HermodError {}
code(BadResult, 'HERMOD_ERR_BAD_RESULT');

/** The caller has `maxInFlightPerClient` calls in flight already: its own load, not the gateway's (429). */
export class ClientBusy extends HermodError {}
code(ClientBusy, 'HERMOD_ERR_CLIENT_BUSY');

/** The transport is not connected, or the gateway is stopping. */
export class Unavailable extends HermodError {}
code(Unavailable, 'HERMOD_ERR_UNAVAILABLE');

/**
 * The gateway stopped (its shutdown deadline passed) while the call ran: the method may have run,
 * so unlike Unavailable it carries no Retry-After (a client or proxy retrying 503s would resend
 * it); answered as a timeout, 504.
 */
export class CallCut extends HermodError {}
code(CallCut, 'HERMOD_ERR_CALL_CUT');

/** How one error is answered. */
export interface Mapped {
  status: number;
  rpcCode: number;
  retryAfter?: number;
}

/** JSON-RPC 2.0's own codes, and the implementation-defined server errors (-32000..-32099) used here. */
export const RPC_CODES = {
  parseError: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internalError: -32603,
  timeout: -32000,
  remoteError: -32001,
  unavailable: -32002,
  forbidden: -32003,
  versionConflict: -32004,
  badResult: -32005,
  unauthenticated: -32006,
  jobNotFound: -32007,
  jobConflict: -32008,
  clientBusy: -32009,
} as const;

/**
 * The table, first match wins. Order matters where classes nest (MessageUndeliverable is a
 * MessageDeliveryFailure). Rebuilt remote errors (NoSuchMethod, UnsupportedVersion, a remote
 * InvalidArgument) map like local ones: the caller's mistake is the same wherever it was found.
 */
export const ERROR_TABLE: ReadonlyArray<readonly [abstract new (...args: never[]) => Error, Mapped]> = [
  // A request body (or a call's arguments, as a server refused them) nested past maxJsonDepth.
  [NestingTooDeep, { status: 400, rpcCode: RPC_CODES.invalidRequest }],
  [InvalidArgument, { status: 400, rpcCode: RPC_CODES.invalidParams }],
  [InvalidTarget, { status: 400, rpcCode: RPC_CODES.invalidParams }],
  [Unauthenticated, { status: 401, rpcCode: RPC_CODES.unauthenticated }],
  [Forbidden, { status: 403, rpcCode: RPC_CODES.forbidden }],
  [NotExposed, { status: 404, rpcCode: RPC_CODES.methodNotFound }],
  [NoSuchMethod, { status: 404, rpcCode: RPC_CODES.methodNotFound }],
  // A job reference that is unknown, expired, damaged or another caller's (the gateway's jobs routes).
  [JobNotFound, { status: 404, rpcCode: RPC_CODES.jobNotFound }],
  [UnsupportedVersion, { status: 409, rpcCode: RPC_CODES.versionConflict }],
  // A cancel of a job that had ended; a job waited for that was cancelled.
  [JobFinished, { status: 409, rpcCode: RPC_CODES.jobConflict }],
  [JobCancelled, { status: 409, rpcCode: RPC_CODES.jobConflict }],
  [RPCVersionCapError, { status: 409, rpcCode: RPC_CODES.versionConflict }],
  [RemoteError, { status: 502, rpcCode: RPC_CODES.remoteError }],
  [BadResult, { status: 502, rpcCode: RPC_CODES.badResult }],
  // The server answered with something that is not a job token.
  [InvalidJobToken, { status: 502, rpcCode: RPC_CODES.remoteError }],
  // The server holds jobs.max jobs, all running: a new one may fit later.
  [TooManyJobs, { status: 503, rpcCode: RPC_CODES.unavailable, retryAfter: 5 }],
  // The job's server did not answer a poll: its fate is unknown, the reference stays valid.
  [ServerUnavailable, { status: 503, rpcCode: RPC_CODES.unavailable, retryAfter: 5 }],
  [MessageUndeliverable, { status: 503, rpcCode: RPC_CODES.unavailable, retryAfter: 1 }],
  [MessageDeliveryFailure, { status: 502, rpcCode: RPC_CODES.remoteError }],
  [TooManyInFlight, { status: 503, rpcCode: RPC_CODES.unavailable, retryAfter: 1 }],
  // This client's own calls fill its share (maxInFlightPerClient); others still get through.
  [ClientBusy, { status: 429, rpcCode: RPC_CODES.clientBusy, retryAfter: 1 }],
  [Unavailable, { status: 503, rpcCode: RPC_CODES.unavailable, retryAfter: 1 }],
  [TransportError, { status: 503, rpcCode: RPC_CODES.unavailable, retryAfter: 1 }],
  [ClosedError, { status: 503, rpcCode: RPC_CODES.unavailable, retryAfter: 1 }],
  // The server stopped at its deadline while the method ran: it may have run (or still run), so,
  // as for CallCut, no Retry-After to invite a resend; the upstream failed mid-call, a 502.
  [ServerStopped, { status: 502, rpcCode: RPC_CODES.remoteError }],
  [MessagingTimeout, { status: 504, rpcCode: RPC_CODES.timeout }],
  [CallCut, { status: 504, rpcCode: RPC_CODES.timeout }],
];

const INTERNAL: Mapped = { status: 500, rpcCode: RPC_CODES.internalError };
const OTHER_REMOTE: Mapped = { status: 502, rpcCode: RPC_CODES.remoteError };
const BROKEN_RESULT: Mapped = { status: 502, rpcCode: RPC_CODES.badResult };

/**
 * The row of {@link ERROR_TABLE} for `err`; any other error that crossed the wire is a 502
 * (the server failed), anything else a 500 / -32603 (the gateway failed).
 */
export function mapError(err: unknown, rules?: RemoteErrorRules): Mapped {
  const rule = rules && remoteRule(err, rules);
  // The rule sets the HTTP status alone: hermod's own classes keep their JSON-RPC code (and a
  // Retry-After their row gives).
  if (rule) return { ...tableRow(err), status: rule.status };
  return tableRow(err);
}

function tableRow(err: unknown): Mapped {
  const remote = isRemote(err);
  // A ContractViolation is an InvalidArgument, but one of the result is the server failing its
  // own contract, as a BadResult is: not the caller's mistake.
  if (err instanceof ContractViolation && err.of === 'result') return BROKEN_RESULT;
  for (const [cls, m] of ERROR_TABLE) {
    if (!(err instanceof cls)) continue;
    // A method that raised MessagingTimeout (its own call elsewhere timed out) failed; this call
    // did not time out, and a 504 would say it did.
    if (remote && LOCAL_ONLY.has(cls)) break;
    return m;
  }
  return remote ? OTHER_REMOTE : INTERNAL;
}

/** Rows that describe this gateway's own call, not what a server answered: a rebuilt one is a 502. */
const LOCAL_ONLY: ReadonlySet<unknown> = new Set([
  MessagingTimeout,
  TooManyInFlight,
  TransportError,
  ClosedError,
  MessageUndeliverable,
  MessageDeliveryFailure,
  Unavailable,
  ClientBusy,
  CallCut,
]);

/** The operator's `remoteErrors` (see GatewayConfig.remoteErrors). */
export type RemoteErrorRules = Readonly<Record<string, RemoteErrorRule>>;

/**
 * The rule for a server's error: by `module.class`, else by class. Own keys only: a class named
 * `constructor` or `__proto__` is a peer's choice and must not find Object.prototype's.
 */
function remoteRule(err: unknown, rules: RemoteErrorRules): RemoteErrorRule | undefined {
  const from =
    err instanceof RemoteError
      ? { module: err.module, cls: err.excType }
      : isRemote(err)
        ? { module: err.remote.module, cls: err.remote.class }
        : undefined;
  if (!from) return undefined;
  const qualified = `${from.module}.${from.cls}`;
  if (from.module && Object.hasOwn(rules, qualified)) return rules[qualified];
  return Object.hasOwn(rules, from.cls) ? rules[from.cls] : undefined;
}

/** What a client sees of an error: its stable code, type and message; remote details when it came from a server. */
export interface ErrorBody {
  code: string;
  type: string;
  message: string;
  requestId?: string;
  remote?: { module: string; type: string; traceback?: string[] };
  /** The server error's keyword arguments, when its `remoteErrors` rule says `data: true`. */
  data?: Record<string, unknown>;
}

/** The error as sent to HTTP clients; internal (unmapped) errors say only that something failed. */
export function errorBody(err: unknown, requestId: string | undefined, exposeTracebacks: boolean, rules?: RemoteErrorRules): ErrorBody {
  const m = mapError(err);
  const e = err as Error & { code?: string; remote?: { module: string; class: string; traceback?: string[] } };
  if (m === INTERNAL) {
    return { code: 'HERMOD_ERR_INTERNAL', type: 'InternalError', message: 'internal gateway error', ...(requestId ? { requestId } : {}) };
  }
  // A rebuilt app error (registerRemoteError) is the server's failure: its own `code`, if the
  // factory gave it one, is not one of hermod's stable codes.
  const code = err instanceof HermodError ? (e.code ?? 'HERMOD_ERR') : m === OTHER_REMOTE ? 'HERMOD_ERR_REMOTE' : (e.code ?? 'HERMOD_ERR');
  const body: ErrorBody = { code, type: e.name, message: e.message, ...(requestId ? { requestId } : {}) };
  if (err instanceof RemoteError) {
    body.type = err.excType;
    body.message = err.value;
    body.remote = { module: err.module, type: err.excType, ...(exposeTracebacks ? { traceback: err.traceback } : {}) };
  } else if (e.remote) {
    body.type = e.remote.class;
    body.remote = {
      module: e.remote.module,
      type: e.remote.class,
      ...(exposeTracebacks && e.remote.traceback ? { traceback: e.remote.traceback } : {}),
    };
  }
  if (rules && remoteRule(err, rules)?.data) {
    const kwargs = err instanceof RemoteError ? err.kwargs : isRemote(err) ? err.remote.kwargs : undefined;
    // Peer data, passed on as the server sent it (a `__proto__` key stays a key of the JSON text).
    if (kwargs && Object.keys(kwargs).length > 0) body.data = kwargs;
  }
  return body;
}
