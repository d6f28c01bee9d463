/// <reference types="node" preserve="true" />
// A package entry point: its .d.ts use Node's types (EventEmitter, Buffer, NodeJS.*), and from
// TypeScript 6 on an app loads no @types package it is not told about (`types` defaults to []);
// `preserve` keeps this line in the emitted .d.ts (TypeScript 5.5+ drops it otherwise).
/**
 * The HTTP/JSON gateway: REST and JSON-RPC 2.0 in front of hermod RPC (README "Gateway").
 */

export type { Authenticate, Identity, KeyEntry } from './auth.js';
export { hashApiKey } from './auth.js';
export type { AliasVerb, GatewayConfig, GatewayRoute, JsonSchema, RemoteErrorRule, ResolvedGatewayConfig } from './config.js';
export { readGatewayConfig, resolveGatewayConfig } from './config.js';
export { gatewayRequestId } from './context.js';
export { BadResult, CallCut, ClientBusy, ERROR_TABLE, Forbidden, NotExposed, RPC_CODES, Unauthenticated, Unavailable } from './errors.js';
export type { ConnectionRefusedEvent, Gateway, GatewayAddress, GatewayOptions } from './gateway.js';
export { createGateway } from './gateway.js';
export type { JobOwner } from './job-refs.js';
export { JOBS_KEY_ENV } from './job-refs.js';
export type { GatewayPluginOptions } from './plugin.js';
export { hermodGateway } from './plugin.js';
// Types of what the gateway puts on requests and routes; importing them also brings the module
// augmentation (`request.hermod`, `routeOptions.config.hermodGateway`) to an application's tsc.
export type { GatewayRouteMark, RequestState } from './state.js';
