import { SerializationError } from './errors.js';
import { setOwn } from './plain.js';

/** The request context: a plain object that travels with every message. */
export type Context = Record<string, unknown>;

/**
 * Converts entities (arguments, results, payloads) and contexts to and from their wire form,
 * like oslo.messaging's Serializer. Runs before JSON encoding on send and after decoding on
 * receipt.
 */
export interface Serializer {
  /** An argument, result or payload to its wire form, before JSON encoding. */
  serializeEntity(ctx: Context, entity: unknown): unknown;
  /** An argument, result or payload from its wire form, after JSON decoding. */
  deserializeEntity(ctx: Context, entity: unknown): unknown;
  /** The context to its wire form. */
  serializeContext(ctx: Context): Context;
  /** The context from its wire form. */
  deserializeContext(ctx: Context): Context;
}

/** Passes everything through unchanged. */
export class NoOpSerializer implements Serializer {
  /** Returns `entity` as it is. */
  serializeEntity(_ctx: Context, entity: unknown): unknown {
    return entity;
  }
  /** Returns `entity` as it is. */
  deserializeEntity(_ctx: Context, entity: unknown): unknown {
    return entity;
  }
  /** Returns `ctx` as it is. */
  serializeContext(ctx: Context): Context {
    return ctx;
  }
  /** Returns `ctx` as it is. */
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
  /** Date, Map, Set and Buffer to JSON values; everything else as it is. */
  override serializeEntity(_ctx: Context, entity: unknown): unknown {
    try {
      return toPrimitive(entity);
    } catch (err) {
      // A value's own toJSON may throw: the caller gets what every encoding failure is.
      if (err instanceof SerializationError) throw err;
      throw new SerializationError(`cannot convert a value to JSON: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }
}

/** `key`: the property name or array index `value` sits under, which JSON.stringify passes to toJSON. */
function toPrimitive(value: unknown, seen = new Set<unknown>(), key = ''): unknown {
  if (value === null || typeof value !== 'object') return value;
  // toJSON as JSON.stringify would call it (an invalid Date is null): a URL is its text, a class
  // with toJSON what it says it is, never its private fields.
  if (value instanceof Date) return value.toJSON();
  if (Buffer.isBuffer(value)) return value.toString('base64');
  // `seen` holds the containers above `value`. A cycle is refused here: handed on to encodeJson
  // as it was, one through a Map or Set went out cut short (`{"self":{}}`), the Map left in it
  // being what JSON.stringify makes `{}`.
  if (seen.has(value)) {
    throw new SerializationError(
      `cannot convert a value to JSON: circular structure (the value under ${JSON.stringify(key)} refers back to one that contains it)`,
    );
  }
  seen.add(value);
  try {
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') {
      const json: unknown = toJSON.call(value, key);
      // A toJSON that returns its own object asks for its fields, as JSON.stringify reads it.
      if (json !== value) return toPrimitive(json, seen, key);
    }
    // A boxed primitive (`new String('ab')`) goes as its value, as JSON.stringify sends it; its
    // entries made `{"0":"a","1":"b"}`, and a boxed number or boolean `{}`.
    if (value instanceof Number || value instanceof String || value instanceof Boolean || value instanceof BigInt) {
      return value.valueOf();
    }
    if (value instanceof Map) {
      const out: Record<string, unknown> = {};
      for (const [k, v] of value) setOwn(out, String(k), toPrimitive(v, seen, String(k)));
      return out;
    }
    if (value instanceof Set) return [...value].map((v, i) => toPrimitive(v, seen, String(i)));
    if (Array.isArray(value)) return value.map((v, i) => toPrimitive(v, seen, String(i)));
    // setOwn: a `__proto__` key stays a key (refused by the server as the default serializer's
    // is), not the prototype of what is sent.
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) setOwn(out, k, toPrimitive(v, seen, k));
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
