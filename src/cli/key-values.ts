/** `key=value` words from the shell (call arguments, context, payload) into objects. */
import { setOwn } from '../core/plain.js';
import { UsageError } from './exit-codes.js';

/** A shell value: JSON when it parses (`5`, `true`, `{"a":1}`), else the string itself. */
export function parseValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** `key=value` words (arguments, context, payload) into an object of parsed values; anything else is a {@link UsageError}. */
export function parseKeyValues(pairs: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new UsageError(`argument '${p}' is not key=value`);
    // An own key even for `__proto__`: the receiver refuses it, instead of it vanishing here.
    setOwn(out, p.slice(0, eq), parseValue(p.slice(eq + 1)));
  }
  return out;
}

/** A JSON document given on the command line (`--payload '{"a":1}'`); bad JSON is a {@link UsageError} naming the option. */
export function parseJson(text: string, option: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${option} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}
