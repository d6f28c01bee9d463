// The package's public surface: this list is the whole of it (the HTTP gateway is the one
// subpath, `hermod/gateway`, so that only its users load fastify and ajv). Everything else (CLI helpers,
// wire codecs, dispatcher internals) is internal and may change without notice.

export type { ConfigSources, ConfigValues, HermodConfig } from './config/index.js';
export { defaultConfig, loadConfig } from './config/index.js';
export type {
  CallEvent,
  ConnectionState,
  ConnectionStateEvent,
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
export type { BatchedNotification, NotificationResult } from './notify/dispatcher.js';
export { NotificationFilter } from './notify/filter.js';
export type { NotificationListenerOptions, NotificationListenerStats } from './notify/listener.js';
export { NotificationListener } from './notify/listener.js';
export type { NotificationMetadata } from './notify/message.js';
export type { NotificationMessage, NotifierOptions, Priority, RoutingConfig } from './notify/notifier.js';
export { Notifier, PRIORITIES } from './notify/notifier.js';
export type { RouterOptions, RouterStats } from './router/router.js';
export { Router } from './router/router.js';
export type { CallOptions, PrepareOptions, RPCClientOptions, RpcProxy } from './rpc/client.js';
export { RPCClient } from './rpc/client.js';
export type { AccessPolicy, Endpoint } from './rpc/dispatcher.js';
export type { RemoteErrorFactory, RemoteOrigin } from './rpc/remote-errors.js';
export { isRemote, registerRemoteError } from './rpc/remote-errors.js';
export type { RPCServerOptions, ServerStats } from './rpc/server.js';
export { RPCServer } from './rpc/server.js';
export type { TransportHost, TransportOptions, TransportState, TransportUrl } from './transport.js';
export { getTransport, parseTransportUrl, redactUrl, Transport } from './transport.js';
