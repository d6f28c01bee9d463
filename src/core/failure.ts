import { MessageTooLarge } from './errors.js';

/** oslo.messaging's failure object: how a remote exception travels. */
export interface Failure {
  /** The exception's class name (`ValueError`, `NoSuchMethod`). */
  class: string;
  /** Its module (`builtins`, `nova.exception`, `hermod`, `hermod.endpoint`). */
  module: string;
  /** Its message. */
  message: string;
  /** Traceback lines, each ending in a newline; empty unless the server sends tracebacks. */
  tb: string[];
  /** The exception's positional arguments. */
  args: unknown[];
  /** The exception's keyword arguments (oslo's `kwargs`). */
  kwargs: Record<string, unknown>;
}

/**
 * The failure a receiver answers when it cannot even dispatch a request (bad body, oversized,
 * unsupported envelope): the error's class and message, in oslo's shape so Python callers read it.
 */
export function failureOf(err: Error, module = 'hermod'): Failure {
  // A MessageTooLarge travels with its sizes as args, as remote-errors serializes it, so that
  // the caller rebuilds it with them (it read "0 bytes exceeds the limit of 0").
  const args = err instanceof MessageTooLarge ? [err.size, err.limit] : [err.message];
  return { class: err.name, module, message: err.message, tb: [], args, kwargs: {} };
}
