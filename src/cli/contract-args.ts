/**
 * What `rpc-client` does with a published contract: fetch it (`describe`, see QUIET_DESCRIBE), coerce
 * `key=value` words by the schema (`a=1` a number where it says number, the text where it says
 * string), and print a method's usage (`--describe`).
 */
import type { MethodContract } from '../contracts/contract.js';
import { NoSuchMethod, TransportError, WrongProtocol } from '../core/errors.js';
import { versionIsCompatible } from '../core/target.js';
import type { RPCClient } from '../rpc/client.js';
import { describeWhenConnected, QUIET_DESCRIBE, type ServerDescription } from '../rpc/introspection.js';
import { UsageError } from './exit-codes.js';
import { keyOf, parseValue } from './key-values.js';

type Schema = Record<string, unknown>;

/**
 * The contract of `method` as the servers of the client's target publish it, or undefined when
 * none is published or nobody answers within `timeoutMs` (an oslo.messaging server, an older
 * hermod, no server, a connection still trying when `timeoutMs` passes, a refused login, the
 * wrong protocol): the CLI then works as without contracts, and the call reports what is wrong
 * under its own name. A lookup whose connect retries ran out throws (TransportError.gaveUp): the
 * call would only start them again. A first connect still under way when `timeoutMs` passes is
 * waited for, up to `connectWithinMs` in all (the call's own timeout).
 */
export async function fetchContract(
  client: RPCClient,
  method: string,
  timeoutMs: number,
  connectWithinMs = timeoutMs,
  options: { requireMethod?: boolean } = {},
): Promise<MethodContract | undefined> {
  let d: ServerDescription;
  try {
    // Asked in the namespace and version of the call to come, under a name an oslo server logs
    // at DEBUG when it does not have it: `hermod.describe` it logged at ERROR with a traceback
    // (UnsupportedVersion, no `hermod` namespace), once per rpc-client call.
    // No call monitor on it, whatever the user's --monitor: an oslo server has no such method, and
    // its dispatcher starts the heartbeat thread before it finds the method and never stops it,
    // heartbeating into a reply queue nobody reads for as long as it runs.
    d = await describeWhenConnected(
      client.prepare({ timeout: timeoutMs, callMonitorTimeout: 0 }),
      connectWithinMs,
      undefined,
      QUIET_DESCRIBE,
    );
  } catch (err) {
    // `--describe` is this request: a transport failure or the wrong protocol is the answer
    // (exit 5 or 2). Before a call, a lookup whose retries ran out fails the command: the lookup
    // and the call are one command with one rpc.retry, and a call made after it started a connect
    // cycle of its own ("attempt 4 failed, no more tries" after "attempt 3 failed, no more tries",
    // twice as long); that message names the broker, not the method. A refused login or the wrong
    // protocol is left to the call, which fails at once as this lookup did, its message naming
    // the call's method, not the lookup's. Anything else (no answer, an oslo server, a connection
    // still trying when the lookup's time ran out): no contract.
    if (options.requireMethod && (err instanceof TransportError || err instanceof WrongProtocol)) throw err;
    if (err instanceof TransportError && err.gaveUp) throw err;
    return undefined;
  }
  const ns = client.target.namespace ?? null;
  const version = client.target.version ?? '1.0';
  const published: string[] = [];
  for (const e of Array.isArray(d?.endpoints) ? d.endpoints : []) {
    if (e.namespace !== ns || typeof e.version !== 'string' || !versionIsCompatible(e.version, version)) continue;
    const methods = e.methods && typeof e.methods === 'object' ? e.methods : {};
    published.push(...Object.keys(methods));
    const c = Object.hasOwn(methods, method) ? methods[method] : undefined;
    if (c && typeof c === 'object' && c.args && typeof c.args === 'object') return c;
    if (Object.hasOwn(methods, method)) return undefined;
  }
  // `--describe` of a method the answering server does not have: say so, as a call would.
  if (options.requireMethod && published.length > 0 && !published.includes(method)) {
    throw new NoSuchMethod(method);
  }
  return undefined;
}

/** Whether `words` hold a value whose type a contract could change (`a=1`, `b=true`): only then is one worth fetching. */
export function needsContract(words: string[]): boolean {
  return words.some((w) => {
    const eq = w.indexOf('=');
    if (eq <= 0) return false;
    try {
      return typeof parseValue(w.slice(eq + 1)) !== 'string';
    } catch {
      // A number JSON would not carry as written: a contract saying string takes it as text.
      return true;
    }
  });
}

/** The branches a value may match: a union's (`anyOf`, `oneOf`, TypeBox's Union and Optional/nullable forms) and an intersection's (`allOf`). */
const branchesOf = (s: Schema | undefined): Schema[] =>
  (['anyOf', 'oneOf', 'allOf'] as const).flatMap((k) =>
    Array.isArray(s?.[k]) ? (s[k] as unknown[]).filter((b): b is Schema => !!b && typeof b === 'object') : [],
  );

/** The JSON types a schema allows, through its unions and intersections (`string | null` for a nullable string). */
const typesOf = (s: Schema | undefined, depth = 0): string[] => {
  const t = s?.type;
  const own = typeof t === 'string' ? [t] : Array.isArray(t) ? t.map(String) : [];
  if (depth > 8) return own;
  return [...new Set([...own, ...branchesOf(s).flatMap((b) => typesOf(b, depth + 1))])];
};

/** The literal values a schema allows (`enum`, `const`, a union of literals), or undefined when it is not made of them. */
const literalsOf = (s: Schema | undefined, depth = 0): unknown[] | undefined => {
  if (!s || depth > 8) return undefined;
  if (Array.isArray(s.enum)) return s.enum;
  if (s.const !== undefined) return [s.const];
  const branches = branchesOf(s);
  if (branches.length === 0) return undefined;
  const all = branches.map((b) => literalsOf(b, depth + 1));
  return all.every((l) => l !== undefined) ? all.flat() : undefined;
};

/** One value by its property schema: text stays text where the schema wants a string; anything else parses as JSON when it can. */
function coerce(text: string, schema: Schema | undefined, key: string): unknown {
  const types = typesOf(schema);
  if (types.includes('string') && !types.some((t) => t === 'number' || t === 'integer' || t === 'boolean')) return text;
  const literals = literalsOf(schema);
  if (literals?.includes(text)) return text;
  return parseValue(text, key);
}

/**
 * The named arguments an args schema declares: its own `properties`, and those of the schemas it
 * combines (TypeBox's Intersect is `allOf`, a Union of objects `anyOf`), a name declared in
 * several of them as the union of its schemas; required where the schema or one it intersects
 * requires it.
 */
function argumentsOf(args: Schema | undefined): { props: Map<string, Schema>; required: Set<string> } {
  const found = new Map<string, Schema[]>();
  const required = new Set<string>();
  const visit = (s: Schema | undefined, intersected: boolean, depth: number) => {
    if (!s || depth > 8) return;
    const props = s.properties && typeof s.properties === 'object' ? (s.properties as Record<string, unknown>) : {};
    for (const [k, v] of Object.entries(props)) {
      if (!v || typeof v !== 'object') continue;
      const list = found.get(k) ?? [];
      list.push(v as Schema);
      found.set(k, list);
    }
    if (intersected && Array.isArray(s.required)) for (const k of s.required) if (typeof k === 'string') required.add(k);
    for (const b of Array.isArray(s.allOf) ? (s.allOf as Schema[]) : []) visit(b, intersected, depth + 1);
    for (const k of ['anyOf', 'oneOf'] as const) for (const b of Array.isArray(s[k]) ? (s[k] as Schema[]) : []) visit(b, false, depth + 1);
  };
  visit(args, true, 0);
  const props = new Map<string, Schema>();
  for (const [k, list] of found) props.set(k, list.length === 1 ? list[0]! : { anyOf: list });
  return { props, required };
}

/**
 * `key=value` words into named arguments, each value coerced by the contract's property schema
 * when one is given (a name the contract does not know is parsed as without one, and the server
 * says it is unknown). Anything that is not `key=value` is a {@link UsageError}.
 */
export function coerceArgs(words: string[], contract?: MethodContract): Record<string, unknown> {
  const { props } = argumentsOf(contract?.args as Schema | undefined);
  const out: Record<string, unknown> = {};
  const seen = new Set<string>();
  for (const w of words) {
    const key = keyOf(w, seen);
    Object.defineProperty(out, key, {
      value: coerce(w.slice(key.length + 1), props.get(key), key),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

/** A schema in a few words: `number`, `string ≤ 16`, `array of string`, `'a' | 'b'`. */
export function typeText(s: Schema | undefined): string {
  if (!s) return 'any';
  const literals = literalsOf(s);
  if (literals) return literals.map((v) => JSON.stringify(v)).join(' | ');
  const types = typesOf(s);
  const base = types.length ? types.join(' | ') : 'any';
  const items = types.includes('array') && s.items && typeof s.items === 'object' ? ` of ${typeText(s.items as Schema)}` : '';
  const bounds: string[] = [];
  for (const [k, label] of [
    ['minimum', '≥'],
    ['maximum', '≤'],
    ['minLength', 'length ≥'],
    ['maxLength', 'length ≤'],
    ['minItems', 'items ≥'],
    ['maxItems', 'items ≤'],
    ['format', 'format'],
  ] as const) {
    if (s[k] !== undefined) bounds.push(`${label} ${String(s[k])}`);
  }
  return `${base}${items}${bounds.length ? ` (${bounds.join(', ')})` : ''}`;
}

/** The usage of `method` from its contract, for `rpc-client topic method --describe`. */
export function usage(topic: string, method: string, contract: MethodContract | undefined): string {
  if (!contract) return `${topic} ${method}: no contract is published for it (the servers of ${topic} do not describe it)\n`;
  const args = contract.args as Schema;
  const { props, required } = argumentsOf(args);
  const words = [...props.keys()].map((k) => (required.has(k) ? `${k}=<${typesOf(props.get(k)).join('|') || 'value'}>` : `[${k}=…]`));
  const lines = [`usage: rpc-client ${topic} ${method}${words.length ? ` ${words.join(' ')}` : ''}`];
  if (contract.description) lines.push(`  ${contract.description}`);
  for (const [k, s] of props) {
    const note = typeof s.description === 'string' ? `  ${s.description}` : '';
    lines.push(`  ${k.padEnd(12)} ${typeText(s)}${required.has(k) ? ', required' : ''}${note}`);
  }
  if (args.additionalProperties !== true) lines.push('  (other names are refused)');
  if (contract.result) lines.push(`  returns ${typeText(contract.result as Schema)}`);
  return `${lines.join('\n')}\n`;
}
