/**
 * The HTTP/JSON gateway: REST and JSON-RPC 2.0 in front of hermod RPC (README "Gateway").
 */

export type { Authenticate, Identity, KeyEntry } from './auth.js';
export { hashApiKey } from './auth.js';
export type { AliasVerb, GatewayConfig, GatewayRoute, JsonSchema, ResolvedGatewayConfig } from './config.js';
export { readGatewayConfig, resolveGatewayConfig } from './config.js';
export { BadResult, ERROR_TABLE, Forbidden, NotExposed, RPC_CODES, Unauthenticated, Unavailable } from './errors.js';
export type { Gateway, GatewayAddress, GatewayOptions } from './gateway.js';
export { createGateway } from './gateway.js';
