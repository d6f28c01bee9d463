import type { Static, TSchema } from 'typebox';
import { InvalidArgument } from '../core/errors.js';

/** A JSON Schema (draft 2020-12) object: a TypeBox type or a plain object literal. */
export type JsonSchema = Readonly<Record<string, unknown>> | TSchema;

/**
 * The contract of one method: the JSON Schema of its named arguments (an object schema) and,
 * optionally, of its result. Properties the argument schema does not declare are refused
 * unless it says `additionalProperties` (or `unevaluatedProperties`) itself.
 */
export interface MethodContract<A extends JsonSchema = JsonSchema, R extends JsonSchema = JsonSchema> {
  /** Schema of the arguments object. */
  readonly args: A;
  /** Schema of the result; checked on the server when `validateResults` is on. */
  readonly result?: R;
  /** One line for `describe`, the CLI's usage and the gateway's OpenAPI document. */
  readonly description?: string;
}

/** Contracts by method name: the static `contracts` of an endpoint class. */
export type Contracts = Readonly<Record<string, MethodContract>>;

/** The arguments type of a contract: TypeBox's static type, or plain named arguments for a plain schema. */
export type ArgsOf<C> = C extends { args: infer A } ? (A extends TSchema ? Static<A> : Record<string, unknown>) : Record<string, unknown>;

/** The result type of a contract: TypeBox's static type, or unknown without a TypeBox result schema. */
export type ResultOf<C> = C extends { result: infer R } ? (R extends TSchema ? Static<R> : unknown) : unknown;

/**
 * Typed remote calls for a contracts map: each method takes its arguments and resolves with its
 * result as the contract's TypeBox schemas say (see RPCClient.proxy).
 */
export type ContractProxy<C extends Contracts> = {
  readonly [K in keyof C]: (args: ArgsOf<C[K]>) => Promise<ResultOf<C[K]>>;
};

/**
 * Checks the shape of a contracts map, at compile time and (for JavaScript callers and casts) at
 * run time, and returns it unchanged. Throws InvalidArgument as a server given it would.
 */
export function defineContracts<const C extends Contracts>(contracts: C): C {
  return checkContracts(contracts, 'defineContracts') as C;
}

/**
 * The contracts of an endpoint: its own `contracts` property if it has one (a plain object
 * endpoint), else its class's static `contracts`. (Plain-object endpoints inherit `constructor`
 * from Object, which has no `contracts`.) Throws InvalidArgument when they are not a map
 * of `{ args, result?, description? }`.
 */
export function contractsOf(endpoint: object, label: string): Contracts | undefined {
  // A method that happens to be called `contracts` is a method, not a contracts map.
  const own = (endpoint as { contracts?: unknown }).contracts;
  const found =
    own !== undefined && typeof own !== 'function' ? own : (endpoint.constructor as { contracts?: unknown } | undefined)?.contracts;
  if (found === undefined || found === null) return undefined;
  return checkContracts(found, label);
}

/** `found` as a contracts map, or InvalidArgument naming `label` and the method. */
function checkContracts(found: unknown, label: string): Contracts {
  if (!found || typeof found !== 'object' || Array.isArray(found))
    throw new InvalidArgument(`${label}: contracts must be an object of method contracts`);
  for (const [method, c] of Object.entries(found)) {
    const where = `${label}: the contract of ${method}`;
    if (!c || typeof c !== 'object' || Array.isArray(c)) throw new InvalidArgument(`${where} must be an object { args, result? }`);
    const { args, result, description, ...rest } = c as Record<string, unknown>;
    const extra = Object.keys(rest);
    if (extra.length > 0) throw new InvalidArgument(`${where} has unknown keys: ${extra.join(', ')} (known: args, result, description)`);
    if (!args || typeof args !== 'object' || Array.isArray(args)) throw new InvalidArgument(`${where} needs an args schema`);
    const type = (args as { type?: unknown }).type;
    if (type !== undefined && type !== 'object')
      throw new InvalidArgument(`${where}: args must be an object schema (named arguments), got type ${JSON.stringify(type)}`);
    if (result !== undefined && (!result || typeof result !== 'object' || Array.isArray(result))) {
      throw new InvalidArgument(`${where}: result must be a schema object`);
    }
    if (description !== undefined && typeof description !== 'string') throw new InvalidArgument(`${where}: description must be text`);
  }
  return found as Contracts;
}
