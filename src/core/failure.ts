/** oslo.messaging's failure object: how a remote exception travels. */
export interface Failure {
  class: string;
  module: string;
  message: string;
  tb: string[];
  args: unknown[];
  kwargs: Record<string, unknown>;
}

/**
 * The failure a receiver answers when it cannot even dispatch a request (bad body, oversized,
 * unsupported envelope): the error's class and message, in oslo's shape so Python callers read it.
 */
export function failureOf(err: Error, module = 'hermod'): Failure {
  return { class: err.name, module, message: err.message, tb: [], args: [err.message], kwargs: {} };
}
