import type { SignalSource } from '../core/lazy-abort.js';
import { setOwn } from '../core/plain.js';
import type { Context } from '../core/serializer.js';

/** Context key a client sets (through `RPCClient.start`) to ask for a job token at once; removed before the method sees the context. */
export const START_HINT = 'hermod_job';

/**
 * The context an endpoint method receives on a hermod server: the caller's context plus two
 * non-enumerable members (never sent on, never in `Object.keys`): `progress(fraction, message)`
 * reports how far a job is (a no-op for a plain call), and `signal` aborts when the job is
 * cancelled or the server aborts the request at a stop deadline. A caller's context key of the
 * same name wins over them. Custom serializers must keep them: `deserializeContext` returns
 * the object it was given, as NoOpSerializer does, or copies it with
 * `Object.defineProperties(copy, Object.getOwnPropertyDescriptors(ctx))`, which also copies the
 * hidden field `signal` reads.
 */
export type JobContext = Context & {
  progress(fraction: number, message?: string): void;
  readonly signal: AbortSignal;
};

/**
 * A copy of the caller's context without the start hint, with `progress` and `signal`. `signal`
 * is read from `aborts` when the method first reads it (most never do; see LazyAbort).
 */
export function withHooks(wire: Context, aborts: SignalSource, progress: (fraction: number, message?: string) => void): Context {
  // Copied key by key, not spread: V8 gives an object spread's clone a map of its own, so the
  // properties defined on it made a new hidden class per request (4.5 µs with three keys,
  // measured in isolation). The hooks go first, on an empty object, so every context walks the
  // same cached shapes (0.6 µs with three keys). A wire context is decoded JSON on every
  // driver, so it has no symbol keys for for...in to miss.
  const own = Object.hasOwn(wire, 'progress') || Object.hasOwn(wire, 'signal');
  const ctx: Context = {};
  if (!own) defineHooks(ctx, aborts, progress);
  // setOwn: a key named `__proto__` stays an own key (the dispatcher refuses it), never the prototype.
  for (const k in wire) if (k !== START_HINT && Object.hasOwn(wire, k)) setOwn(ctx, k, wire[k]);
  // A caller's key of a hook's name wins over the hook (rare: the hooks then come after the keys).
  if (own) defineHooks(ctx, aborts, progress);
  return ctx;
}

function defineHooks(ctx: Context, aborts: SignalSource, progress: (fraction: number, message?: string) => void): void {
  if (!Object.hasOwn(ctx, 'progress')) Object.defineProperty(ctx, 'progress', { value: progress, enumerable: false });
  if (!Object.hasOwn(ctx, 'signal')) {
    // One getter for every context, the source in a hidden field: V8 shares the object's shape
    // only between accessors of the same function, and a closure per request made every
    // context a dictionary-mode object. Non-enumerable, so spreads, util.inspect and deep
    // equality see only the caller's keys.
    Object.defineProperty(ctx, ABORTS, { value: aborts, enumerable: false });
    Object.defineProperty(ctx, 'signal', SIGNAL);
  }
}

/** Where {@link withHooks} keeps a context's signal source. */
const ABORTS = Symbol('hermod.aborts');

const SIGNAL: PropertyDescriptor = {
  get(this: Record<symbol, SignalSource | undefined>) {
    const aborts = this[ABORTS];
    if (!aborts) {
      throw new TypeError(
        'this context has the signal getter of another: copy contexts with Object.getOwnPropertyDescriptors, which keeps its source',
      );
    }
    return aborts.signal;
  },
  enumerable: false,
};
