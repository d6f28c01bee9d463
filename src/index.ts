// The package's public surface. Everything not listed here is internal.
export { Target, versionIsCompatible } from './target.js';
export type { TargetFields, TargetOverrides } from './target.js';
export { getTransport, parseTransportUrl, redactUrl, Transport } from './transport.js';
export type { TransportHost, TransportOptions, TransportUrl } from './transport.js';
export { loadConfig, defaultConfig, parseConfigArgs, describeConfig, parseDuration, envName, CONFIG_KEYS } from './config.js';
export type { HermodConfig, ConfigSources } from './config.js';
export {
  HermodError, ConfigError, InvalidTarget, InvalidArgument, SerializationError, MessagingTimeout, NoSuchMethod,
  UnsupportedVersion, RPCVersionCapError, UnsupportedEnvelopeVersion, MalformedMessage, MessageTooLarge,
  MessageDeliveryFailure, MessageUndeliverable, TransportError, ClosedError, ServerStopped, TooManyInFlight, RemoteError,
} from './errors.js';
export { NoOpSerializer, JsonPayloadSerializer } from './serializer.js';
export type { Context, Serializer } from './serializer.js';
export { channels } from './diagnostics.js';
export type { CallEvent, ServerRequestEvent, InvalidMessageEvent, ConnectionStateEvent, NotificationEvent } from './diagnostics.js';
export { RPCClient } from './rpc/client.js';
export type { RPCClientOptions, PrepareOptions, CallOptions, RpcProxy } from './rpc/client.js';
export { RPCServer } from './rpc/server.js';
export type { RPCServerOptions, ServerStats, WaitResult } from './rpc/server.js';
export { RPCDispatcher, findMethod } from './rpc/dispatcher.js';
export type { Endpoint, AccessPolicy } from './rpc/dispatcher.js';
export { registerRemoteError, serializeFailure, deserializeFailure, isRemote } from './rpc/remote-errors.js';
export type { RemoteErrorFactory, RemoteOrigin } from './rpc/remote-errors.js';
export { Notifier, PRIORITIES, sanitizeContext, osloTimestamp } from './notify/notifier.js';
export type { NotifierOptions, NotificationMessage, Priority, RoutingConfig } from './notify/notifier.js';
export { NotificationListener, NotificationFilter } from './notify/listener.js';
export type { NotificationListenerOptions, NotificationResult, NotificationMetadata, BatchedNotification } from './notify/listener.js';
export type {
  Driver, IncomingMessage, Listener, ListenOptions, SendOptions, NotificationSendOptions, Reply, RpcRequest, Failure, ConnectionState,
} from './driver/base.js';
