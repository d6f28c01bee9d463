import type { Contracts } from '../contracts/contract.js';
import { MessagingTimeout, TransportError } from '../core/errors.js';
import { Target } from '../core/target.js';
import type { EndpointDescription } from './dispatcher.js';

/** The namespace hermod reserves for what every server answers about itself. */
export const INTROSPECTION_NAMESPACE = 'hermod';

/**
 * `describe` under another name, answered in every namespace and version a server serves (where
 * no endpoint has a method of that name), so a client can ask in the namespace it is about to
 * call. An oslo.messaging server answers it NoSuchMethod like any unknown method but, for a
 * name ending in `_ignore_errors`, logs that at DEBUG; `hermod.describe` it answers
 * UnsupportedVersion (no `hermod` namespace), logged at ERROR with a traceback
 * (oslo_messaging/rpc/server.py, `_process_incoming`). rpc-client's contract lookup uses it.
 */
export const QUIET_DESCRIBE = 'hermod_describe_ignore_errors';

/** What `hermod.describe` answers: the server, its load, and every endpoint it serves with their contracts. */
export interface ServerDescription {
  /** The server's name. */
  server: string;
  /** The topic it serves. */
  topic: string;
  /** The exchange it serves the topic on; null: the control exchange. */
  exchange: string | null;
  /** The host it runs on. */
  host: string;
  /** Its process id. */
  pid: number;
  /** Requests a server runs at once. */
  concurrency: number;
  /** Milliseconds since start(); 0 before. */
  uptimeMs: number;
  /** The server's counters (RPCServer.stats()). */
  stats: Readonly<Record<string, number | Readonly<Record<string, number>>>>;
  /** Each endpoint's namespace and version, its methods and their contracts (null: none declared). */
  endpoints: EndpointDescription[];
}

const NO_ARGS = { type: 'object', properties: {} } as const;

/**
 * The `hermod` namespace, version 1.0, that every RPCServer serves beside its own endpoints unless
 * `rpc.introspection` is off (an access policy can also refuse it per method):
 * `ping` answers at once, `describe` tells what the server serves. Called like any method:
 * `client.prepare({ namespace: 'hermod', version: '1.0' }).call({}, 'describe')`.
 */
export class IntrospectionEndpoint {
  /** Namespace `hermod`, version 1.0. */
  readonly target = new Target({ namespace: INTROSPECTION_NAMESPACE, version: '1.0' });

  /** Both methods take no arguments. */
  static readonly contracts: Contracts = {
    ping: {
      args: NO_ARGS,
      result: {
        type: 'object',
        required: ['pong', 'server', 'time'],
        properties: { pong: { const: true }, server: { type: 'string' }, time: { type: 'string' } },
      },
      description: 'Answers at once: the server is up and serving this topic.',
    },
    describe: {
      args: NO_ARGS,
      result: {
        type: 'object',
        required: ['server', 'topic', 'concurrency', 'uptimeMs', 'stats', 'endpoints'],
        properties: {
          server: { type: 'string' },
          topic: { type: 'string' },
          concurrency: { type: 'integer' },
          uptimeMs: { type: 'number' },
          stats: {
            type: 'object',
            additionalProperties: { anyOf: [{ type: 'number' }, { type: 'object', additionalProperties: { type: 'number' } }] },
          },
          endpoints: {
            type: 'array',
            items: {
              type: 'object',
              required: ['namespace', 'version', 'methods'],
              properties: { namespace: { type: ['string', 'null'] }, version: { type: 'string' }, methods: { type: 'object' } },
            },
          },
        },
      },
      description: "The server's endpoints with their namespaces, versions and contracts; its concurrency, uptime and counters.",
    },
  };

  // A #private field: a property holding a function would be a callable method.
  readonly #source: () => ServerDescription;

  constructor(source: () => ServerDescription) {
    this.#source = source;
  }

  /** Answers at once with the server's name and time. */
  ping(_ctx: unknown): { pong: true; server: string; time: string } {
    return { pong: true, server: this.#source().server, time: new Date().toISOString() };
  }

  /** What the server serves, and its load. */
  describe(_ctx: unknown): ServerDescription {
    return this.#source();
  }
}

/**
 * What {@link describeWhenConnected} asks with: an RPCClient (by shape, so that the client, whose
 * waitForServer asks QUIET_DESCRIBE, and this module do not import each other).
 */
export interface Describer {
  call<R>(ctx: Record<string, unknown>, method: string): Promise<R>;
  readonly transport: { readonly state: { readonly state: string } };
}

/**
 * Calls `hermod.describe` with `describer` (a client prepared for namespace `hermod` 1.0, whose
 * timeout bounds the servers' answer), or `method` ({@link QUIET_DESCRIBE} in the namespace and
 * version `describer` is prepared for). A first connect still under way when that timeout passes
 * is no failure: the call is made again, until `connectWithinMs` has passed or `stopped()` says so;
 * so is a timeout of a call made before the connect came, whose servers had only what was left of
 * it. Any other error is thrown as the call threw it.
 */
export async function describeWhenConnected(
  describer: Describer,
  connectWithinMs: number,
  stopped: () => boolean = () => false,
  method = 'describe',
): Promise<ServerDescription> {
  const connectBy = Date.now() + connectWithinMs;
  const state = (): string => describer.transport.state.state;
  for (;;) {
    const unconnected = state() === 'idle' || state() === 'reconnecting' || state() === 'disconnected';
    try {
      return await describer.call<ServerDescription>({}, method);
    } catch (err) {
      if (Date.now() >= connectBy || stopped()) throw err;
      if (err instanceof TransportError && err.stillConnecting) continue;
      // A call made while the first connect was under way, timed out after it came: the servers
      // had what was left of the timeout, perhaps nothing, to answer in. Made once more, it has all
      // of it (with a contract timeout half the connect time, the connect came each second call's
      // last moment: a loaded machine lost the race and the routes their contracts).
      if (err instanceof MessagingTimeout && unconnected && state() === 'connected') continue;
      throw err;
    }
  }
}
