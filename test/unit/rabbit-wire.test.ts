import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { SerializationError } from '../../src/core/errors.js';
import { envelope, peek } from '../../src/driver/envelope.js';
import {
  addCallFields,
  KeyTable,
  MAX_CACHED_KEY_LENGTH,
  MAX_CACHED_KEYS,
  notificationDict,
  parseFailure,
  replyAddress,
  replyDict,
  requestDict,
  splitIncoming,
} from '../../src/driver/rabbit/wire.js';

const t = suite('rabbit wire format');

t("a call request has oslo's keys in oslo's order, context flattened, _timeout in seconds", () => {
  const msg = requestDict({ request_id: 'r', user: 'alice' }, { method: 'add', args: { a: 1 }, namespace: 'math', version: '1.2' }, 'u1');
  addCallFields(msg, 'm1', 'reply_x', 2000);
  assert.is(
    JSON.stringify(msg),
    '{"method":"add","args":{"a":1},"namespace":"math","version":"1.2","_context_request_id":"r","_context_user":"alice",' +
      '"_unique_id":"u1","_msg_id":"m1","_reply_q":"reply_x","_timeout":2}',
  );
  assert.is(envelope(msg, 'call'), JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(msg) }));
});

t('a call without call monitor still carries _timeout: null; a cast has no call fields', () => {
  const call = requestDict(undefined, { method: 'x', args: {} }, 'u2');
  addCallFields(call, 'm2', 'reply_y', undefined);
  assert.equal(Object.keys(call), ['method', 'args', '_unique_id', '_msg_id', '_reply_q', '_timeout']);
  assert.is(call._timeout, null);
  assert.equal(requestDict({}, { method: 'x', args: {} }, 'u3'), { method: 'x', args: {}, _unique_id: 'u3' });
});

t('a context value that cannot be read is a SerializationError, as on the other drivers', () => {
  const ctx = {
    get user(): string {
      throw new Error('cannot read user');
    },
  };
  for (const make of [() => requestDict(ctx, { method: 'x', args: {} }, 'u5'), () => notificationDict(ctx, { event_type: 'e' }, 'u6')]) {
    try {
      make();
      assert.unreachable('a throwing getter was read without an error');
    } catch (e) {
      assert.instance(e, SerializationError);
      assert.match((e as Error).message, /its key 'user' cannot be read: cannot read user/);
    }
  }
});

t("a notification keeps the notifier's fields first, then context, then _unique_id", () => {
  const n = notificationDict({ user_id: 'u' }, { message_id: 'id', event_type: 'e', payload: {} }, 'u4');
  assert.equal(Object.keys(n), ['message_id', 'event_type', 'payload', '_context_user_id', '_unique_id']);
});

t('a reply carries the failure as a JSON string; a heartbeat has ending false and nulls', () => {
  const failure = { class: 'ValueError', module: 'builtins', message: 'bad', tb: [], args: ['bad'], kwargs: {} };
  assert.is(
    JSON.stringify(replyDict('m1', { ending: true, failure }, 'u5')),
    `{"result":null,"failure":${JSON.stringify(JSON.stringify(failure))},"ending":true,"_msg_id":"m1","_unique_id":"u5"}`,
  );
  assert.equal(replyDict('m1', { ending: false }, 'u6'), { result: null, failure: null, ending: false, _msg_id: 'm1', _unique_id: 'u6' });
  // A job's token: marked beside the result, and only then.
  assert.is(
    JSON.stringify(replyDict('m1', { ending: true, result: { hermod_job: 1 }, job: true }, 'u7')),
    '{"result":{"hermod_job":1},"failure":null,"ending":true,"_msg_id":"m1","_unique_id":"u7","_hermod_job":1}',
  );
  assert.equal(parseFailure(JSON.stringify(failure)), failure);
  assert.is(parseFailure('{not json').class, 'MalformedMessage');
});

t('an incoming dict splits into context, message and reply address', () => {
  const parts = splitIncoming({
    method: 'add',
    args: { a: 1 },
    _context_user: 'alice',
    _unique_id: 'u',
    _msg_id: 'm',
    _reply_q: 'reply_q',
    _timeout: 2,
  });
  assert.equal(parts.ctx, { user: 'alice' });
  assert.equal(parts.message, { method: 'add', args: { a: 1 } });
  assert.is(parts.uniqueId, 'u');
  assert.equal(parts.replyTo, { replyQueue: 'reply_q', msgId: 'm' });
  assert.is(parts.callMonitorTimeout, 2000);
  const cast = splitIncoming({ method: 'x', args: {}, _unique_id: 'u', _timeout: null });
  assert.is(cast.replyTo, undefined);
  assert.is(cast.callMonitorTimeout, 0);
});

t("context keys round-trip past the key tables' bound (3,000 distinct keys), inherited names included, in order", () => {
  for (let round = 0; round < 2; round++) {
    const ctx: Record<string, unknown> = {};
    for (let i = 0; i < 3000; i++) ctx[`k${i}`] = i;
    Object.defineProperty(ctx, '__proto__', { value: 'p', enumerable: true, writable: true, configurable: true });
    const msg = requestDict(ctx, { method: 'm', args: {} }, 'u');
    assert.is(msg._context_k2999, 2999);
    assert.is(msg._context___proto__, 'p');
    const parts = splitIncoming(JSON.parse(JSON.stringify(msg)));
    assert.is(Object.getPrototypeOf(parts.ctx), Object.prototype);
    assert.equal(Object.keys(parts.ctx), Object.keys(ctx));
    assert.is(parts.ctx.k0, 0);
    assert.is(Object.getOwnPropertyDescriptor(parts.ctx, '__proto__')?.value, 'p');
  }
  // Inherited enumerable keys (a polluted prototype) are not the context's.
  const child = Object.create({ inherited: 1 }) as Record<string, unknown>;
  child.own = 2;
  assert.equal(Object.keys(requestDict(child, { method: 'm', args: {} }, 'u')), ['method', 'args', '_context_own', '_unique_id']);
});

t('a key table holds at most MAX_CACHED_KEYS keys of at most MAX_CACHED_KEY_LENGTH characters', () => {
  let made = 0;
  const table = new KeyTable((k) => {
    made++;
    return `p${k}`;
  });
  assert.is(table.get('a'), 'pa');
  assert.is(table.get('a'), 'pa');
  assert.is(made, 1, 'made once, then remembered');
  const long = 'x'.repeat(MAX_CACHED_KEY_LENGTH + 1);
  assert.is(table.get(long), `p${long}`);
  assert.is(table.get(long), `p${long}`);
  assert.is(made, 3, 'a long key (a peer may send megabytes) is made each time, never kept');
  assert.is(table.size, 1);
  for (let i = 0; i < MAX_CACHED_KEYS * 3; i++) {
    table.get(`k${i}`);
    assert.ok(table.size <= MAX_CACHED_KEYS);
  }
});

t('a body that fails to decode can still name its reply address', () => {
  const bad = JSON.stringify({ 'oslo.version': '3.0', 'oslo.message': JSON.stringify({ _msg_id: 'm', _reply_q: 'reply_q' }) });
  assert.equal(replyAddress(peek(bad)), { replyQueue: 'reply_q', msgId: 'm' });
  assert.is(replyAddress(peek('not json')), undefined);
  assert.is(replyAddress({ _msg_id: 'm' }), undefined);
});

t.run();
