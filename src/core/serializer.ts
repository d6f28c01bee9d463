import { SerializationError } from './errors.js';

/** The request context: a plain object that travels with every message. */
export type Context = Record<string, unknown>;

/**
 * Converts entities (arguments, results, payloads) and contexts to and from their wire form,
 * like oslo.messaging's Serializer. Runs before JSON encoding on send and after decoding on
 * receipt.
 */
export interface Serializer {
  serializeEntity(ctx: Context, entity: unknown): unknown;
  deserializeEntity(ctx: Context, entity: unknown): unknown;
  serializeContext(ctx: Context): Context;
  deserializeContext(ctx: Context): Context;
}

/** Passes everything through unchanged. */
export class NoOpSerializer implements Serializer {
  serializeEntity(_ctx: Context, entity: unknown): unknown {
    return entity;
  }
  deserializeEntity(_ctx: Context, entity: unknown): unknown {
    return entity;
  }
  serializeContext(ctx: Context): Context {
    return ctx;
  }
  deserializeContext(ctx: Context): Context {
    return ctx;
  }
}

/**
 * Turns common non-JSON values into JSON ones on send (Date → ISO string, Map → object,
 * Set → array, Buffer → base64 string), as oslo's JsonPayloadSerializer does with
 * `jsonutils.to_primitive`.
 */
export class JsonPayloadSerializer extends NoOpSerializer {
  override serializeEntity(_ctx: Context, entity: unknown): unknown {
    return toPrimitive(entity);
  }
}

function toPrimitive(value: unknown, seen = new Set<unknown>()): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Date) return value.toISOString();
  if (Buffer.isBuffer(value)) return value.toString('base64');
  if (seen.has(value)) return value; // leave the cycle for encodeJson to report
  seen.add(value);
  try {
    if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [String(k), toPrimitive(v, seen)]));
    if (value instanceof Set) return [...value].map((v) => toPrimitive(v, seen));
    if (Array.isArray(value)) return value.map((v) => toPrimitive(v, seen));
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = toPrimitive(v, seen);
    return out;
  } finally {
    seen.delete(value);
  }
}

/**
 * JSON-encodes `value`, turning JSON.stringify's TypeErrors (BigInt, cycles) into a
 * {@link SerializationError} that says what was being encoded.
 */
export function encodeJson(value: unknown, what: string): string {
  try {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`${typeof value} has no JSON form`);
    return text;
  } catch (err) {
    const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new SerializationError(`cannot encode ${what} as JSON: ${reason}`, { cause: err });
  }
}
