/// <reference types="node" preserve="true" />
// A package entry point: its .d.ts use Node's types (EventEmitter, Buffer, NodeJS.*), and from
// TypeScript 6 on an app loads no @types package it is not told about (`types` defaults to []);
// `preserve` keeps this line in the emitted .d.ts (TypeScript 5.5+ drops it otherwise).
// The package's public surface: this list is the whole of it (the HTTP gateway is the one
// subpath, `hermod/gateway`, so that only its users load fastify and ajv). Everything else (CLI helpers,
// wire codecs, dispatcher internals) is internal and may change without notice.

export type { ConfigSources, ConfigValues, HermodConfig } from './config/index.js';
export { defaultConfig, loadConfig } from './config/index.js';
export type { ArgsOf, ContractProxy, Contracts, JsonSchema, MethodContract, ResultOf } from './contracts/contract.js';
export { defineContracts } from './contracts/contract.js';
export type { Violation } from './contracts/violation.js';
export { ContractViolation } from './contracts/violation.js';
export type {
  CallEvent,
  ConnectionState,
  ConnectionStateEvent,
  DuplicateMessageEvent,
  InvalidMessageEvent,
  NotificationEvent,
  ServerRequestEvent,
} from './core/diagnostics.js';
export { channels } from './core/diagnostics.js';
export {
  AccessRefused,
  ClosedError,
  ConfigError,
  HermodError,
  InvalidArgument,
  InvalidTarget,
  MalformedMessage,
  MessageDeliveryFailure,
  MessageTooLarge,
  MessageUndeliverable,
  MessagingTimeout,
  NestingTooDeep,
  NoSuchMethod,
  RemoteError,
  RPCVersionCapError,
  SerializationError,
  ServerStopped,
  TooManyInFlight,
  TransportError,
  UnsupportedEnvelopeVersion,
  UnsupportedVersion,
  WrongProtocol,
} from './core/errors.js';
export type { Failure } from './core/failure.js';
export type { Context, Serializer } from './core/serializer.js';
export { JsonPayloadSerializer, NoOpSerializer } from './core/serializer.js';
export type { TargetFields, TargetOverrides } from './core/target.js';
export { Target, versionIsCompatible } from './core/target.js';
export type { WaitResult } from './core/work-pool.js';
export type {
  Driver,
  IncomingMessage,
  Listener,
  ListenOptions,
  NotificationSendOptions,
  Reply,
  RpcRequest,
  SendOptions,
} from './driver/driver.js';
export type { JobContext } from './jobs/context.js';
export {
  InvalidJobToken,
  JobCancelled,
  JobFinished,
  JobLost,
  JobNotFound,
  JobPending,
  JobTimeout,
  ServerUnavailable,
  TooManyJobs,
} from './jobs/errors.js';
export type { JobProgress } from './jobs/job.js';
export { Job } from './jobs/job.js';
export type { JobStatus } from './jobs/poller.js';
export type { JobNotifier, JobStopStrategy } from './jobs/runner.js';
export type { JobState, JobStatusDict } from './jobs/store.js';
export type { JobToken } from './jobs/token.js';
export { isJobToken, JOB_TOKEN_MARKER, parseJobToken, serializeJobToken } from './jobs/token.js';
export type { BatchedNotification, NotificationResult } from './notify/dispatcher.js';
export { NotificationFilter } from './notify/filter.js';
export type { NotificationListenerOptions, NotificationListenerStats } from './notify/listener.js';
export { NotificationListener } from './notify/listener.js';
export type { NotificationMetadata } from './notify/message.js';
export type { NotificationMessage, NotifierOptions, Priority, RoutingConfig } from './notify/notifier.js';
export { NOTIFICATION_DRIVERS, Notifier, PRIORITIES } from './notify/notifier.js';
export type { RouterOptions, RouterStats } from './router/router.js';
export { Router } from './router/router.js';
export type {
  CallOptions,
  ContractProxyOptions,
  PrepareOptions,
  RPCClientOptions,
  RpcProxy,
  ServerFound,
  WaitForServerOptions,
} from './rpc/client.js';
export { RPCClient } from './rpc/client.js';
export type { AccessPolicy, Endpoint, EndpointDescription } from './rpc/dispatcher.js';
export type { EndpointContext } from './rpc/endpoint-module.js';
export type { ServerDescription } from './rpc/introspection.js';
export { INTROSPECTION_NAMESPACE, IntrospectionEndpoint, QUIET_DESCRIBE } from './rpc/introspection.js';
export {
  type Caller,
  MultiCall,
  type MultiCallAfter,
  type MultiCallMethod,
  type MultiCallOptions,
  type MultiCallRest,
  type MultiCallResult,
  type MultiCallResultAt,
  MultiCallResults,
  type MultiCallSettled,
  type UntypedRemote,
} from './rpc/multicall.js';
export type { RemoteErrorFactory, RemoteOrigin } from './rpc/remote-errors.js';
export { ENDPOINT_MODULE, isRemote, registerRemoteError } from './rpc/remote-errors.js';
export type { RPCServerOptions, ServerStats, StopOptions } from './rpc/server.js';
export { RPCServer } from './rpc/server.js';
export type { TransportHost, TransportOptions, TransportState, TransportUrl } from './transport.js';
export { getTransport, parseTransportUrl, redactUrl, Transport } from './transport.js';
