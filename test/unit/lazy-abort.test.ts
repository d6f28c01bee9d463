import nodeAssert from 'node:assert';
import { inspect } from 'node:util';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LazyAbort } from '../../src/core/lazy-abort.js';
import { withHooks } from '../../src/jobs/context.js';

const t = suite('lazy abort signal (a request signal made on first read)');

t('read before the abort: one signal, aborted with the reason, listeners called once', () => {
  const a = new LazyAbort();
  const s = a.signal;
  assert.is(a.signal, s, 'the same signal on every read');
  assert.not.ok(s.aborted);
  let calls = 0;
  s.addEventListener('abort', () => calls++);
  const why = new Error('stopped');
  a.abort(why);
  a.abort(new Error('again'));
  assert.ok(s.aborted);
  assert.is(s.reason, why);
  assert.is(calls, 1);
});

t('first read after the abort: already aborted, with the first reason', () => {
  const a = new LazyAbort();
  const why = new Error('deadline');
  a.abort(why);
  a.abort(new Error('later'));
  assert.ok(a.signal.aborted);
  assert.is(a.signal.reason, why);
});

t("withHooks: ctx.signal is the source's signal, read when the method reads it; not enumerable; a caller's key wins", () => {
  const a = new LazyAbort();
  const ctx = withHooks({ user: 'u', hermod_job: 'start' }, a, () => {}) as Record<string, unknown>;
  assert.equal(Object.keys(ctx), ['user']);
  a.abort(new Error('gone'));
  const signal = ctx.signal as AbortSignal;
  assert.ok(signal instanceof AbortSignal);
  assert.ok(signal.aborted);
  assert.is(ctx.signal, signal);
  const own = withHooks({ signal: 'mine' }, new LazyAbort(), () => {}) as Record<string, unknown>;
  assert.is(own.signal, 'mine');
});

t('withHooks: contexts made one after another keep their own signals, and nothing of it is sent on', () => {
  const a = new LazyAbort();
  const b = new LazyAbort();
  const ca = withHooks({ request_id: 'a' }, a, () => {}) as Record<string, unknown>;
  const cb = withHooks({ request_id: 'b' }, b, () => {}) as Record<string, unknown>;
  b.abort(new Error('only b'));
  assert.not.ok((ca.signal as AbortSignal).aborted);
  assert.ok((cb.signal as AbortSignal).aborted);
  assert.is(JSON.stringify(ca), '{"request_id":"a"}');
  assert.equal({ ...cb }, { request_id: 'b' });
});

t('withHooks: a copy made with getOwnPropertyDescriptors keeps ctx.signal; a getter copied alone says how to copy', () => {
  const a = new LazyAbort();
  const ctx = withHooks({ request_id: 'r' }, a, () => {});
  const copy = Object.defineProperties({}, Object.getOwnPropertyDescriptors(ctx)) as Record<string, unknown>;
  assert.is(copy.signal, a.signal);
  const bare = Object.defineProperty({}, 'signal', Object.getOwnPropertyDescriptor(ctx, 'signal')!) as Record<string, unknown>;
  assert.throws(() => bare.signal, /getOwnPropertyDescriptors/);
});

t('withHooks: keys named like Object.prototype members stay own data; the hook fields stay out of keys, for...in and JSON', () => {
  const wire: Record<string, unknown> = { request_id: 'r' };
  Object.defineProperty(wire, '__proto__', { value: { polluted: true }, enumerable: true, writable: true, configurable: true });
  Object.assign(wire, { toString: 'not a function' });
  const ctx = withHooks(wire, new LazyAbort(), () => {}) as Record<string, unknown>;
  assert.is(Object.getPrototypeOf(ctx), Object.prototype, 'a __proto__ key never becomes the prototype');
  assert.is((ctx as { polluted?: unknown }).polluted, undefined);
  assert.equal(Object.getOwnPropertyDescriptor(ctx, '__proto__')?.value, { polluted: true });
  assert.is(ctx.toString, 'not a function');
  const seen: string[] = [];
  for (const k in ctx) seen.push(k);
  assert.equal(seen, ['request_id', '__proto__', 'toString']);
  assert.equal(Object.keys(ctx), seen);
  assert.is(JSON.stringify(ctx), '{"request_id":"r","__proto__":{"polluted":true},"toString":"not a function"}');
  assert.ok(ctx.signal instanceof AbortSignal);
  assert.is(typeof ctx.progress, 'function');
});

t("withHooks: spreads, Object.assign, util.inspect and deep equality see only the caller's keys", () => {
  const ctx = withHooks({ user: 'u' }, new LazyAbort(), () => {});
  assert.equal(Reflect.ownKeys({ ...ctx }), ['user']);
  assert.equal(Reflect.ownKeys(Object.assign({}, ctx)), ['user']);
  assert.is(inspect(ctx), "{ user: 'u' }");
  nodeAssert.deepStrictEqual(ctx, { user: 'u' });
});

t.run();
