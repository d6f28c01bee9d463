// The package's public surface: this list is the whole of it. Everything else (CLI helpers,
// wire codecs, dispatcher internals) is internal and may change without notice.
export { Target, versionIsCompatible } from './core/target.js';
export type { TargetFields, TargetOverrides } from './core/target.js';
export { getTransport, parseTransportUrl, redactUrl, Transport } from './transport.js';
export type { TransportHost, TransportOptions, TransportUrl, TransportState } from './transport.js';
export { loadConfig, defaultConfig } from './config/index.js';
export type { HermodConfig, ConfigSources, ConfigValues } from './config/index.js';
export {
  HermodError, ConfigError, InvalidTarget, InvalidArgument, SerializationError, MessagingTimeout, NoSuchMethod,
  UnsupportedVersion, RPCVersionCapError, UnsupportedEnvelopeVersion, MalformedMessage, MessageTooLarge,
  MessageDeliveryFailure, MessageUndeliverable, TransportError, ClosedError, ServerStopped, TooManyInFlight, RemoteError,
} from './core/errors.js';
export { NoOpSerializer, JsonPayloadSerializer } from './core/serializer.js';
export type { Context, Serializer } from './core/serializer.js';
export { channels } from './core/diagnostics.js';
export type {
  CallEvent, ServerRequestEvent, InvalidMessageEvent, ConnectionState, ConnectionStateEvent, NotificationEvent,
} from './core/diagnostics.js';
export type { Failure } from './core/failure.js';
export { RPCClient } from './rpc/client.js';
export type { RPCClientOptions, PrepareOptions, CallOptions, RpcProxy } from './rpc/client.js';
export { RPCServer } from './rpc/server.js';
export type { RPCServerOptions, ServerStats } from './rpc/server.js';
export type { WaitResult } from './core/work-pool.js';
export type { Endpoint, AccessPolicy } from './rpc/dispatcher.js';
export { registerRemoteError, isRemote } from './rpc/remote-errors.js';
export type { RemoteErrorFactory, RemoteOrigin } from './rpc/remote-errors.js';
export { Notifier, PRIORITIES } from './notify/notifier.js';
export type { NotifierOptions, NotificationMessage, Priority, RoutingConfig } from './notify/notifier.js';
export { NotificationListener } from './notify/listener.js';
export type { NotificationListenerOptions, NotificationListenerStats } from './notify/listener.js';
export { NotificationFilter } from './notify/filter.js';
export type { NotificationMetadata } from './notify/message.js';
export type { NotificationResult, BatchedNotification } from './notify/dispatcher.js';
export { Router } from './router/router.js';
export type { RouterOptions, RouterStats } from './router/router.js';
export type {
  Driver, IncomingMessage, Listener, ListenOptions, SendOptions, NotificationSendOptions, Reply, RpcRequest,
} from './driver/driver.js';
