import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MessageTooLarge } from '../../src/core/errors.js';
import { ENVELOPE_VERSION, encodeBounded, envelope, isEnvelope, open, peek, unenvelope, wrap } from '../../src/driver/envelope.js';
import { rejects } from '../support/assert.js';

const t = suite('oslo message envelope 2.0');

const msg = { method: 'add', args: { a: 1, b: [2, null] }, _msg_id: 'm1', _context_user: 'ü' };

t('wrap / envelope and open / unenvelope round trip', () => {
  assert.is(ENVELOPE_VERSION, '2.0');
  const w = wrap(msg, 'call add');
  assert.equal(Object.keys(w).sort(), ['oslo.message', 'oslo.version']);
  assert.is(w['oslo.version'], '2.0');
  assert.type(w['oslo.message'], 'string', 'the inner dict travels JSON-encoded');
  assert.equal(JSON.parse(w['oslo.message']), msg);
  assert.ok(isEnvelope(w));
  assert.equal(open(w), msg);
  const text = envelope(msg, 'call add');
  assert.equal(JSON.parse(text), w);
  assert.equal(unenvelope(text), msg);
  assert.equal(unenvelope(Buffer.from(text, 'utf8')), msg);
  // Written as text, it is still exactly what encoding the envelope object gives, escapes included.
  for (const m of [msg, { s: 'quote " backslash \\ newline \n tab \t nul \u0000 é 日本 😀 \u2028', n: [1.5, -0, null, true] }]) {
    assert.is(envelope(m, 'x'), JSON.stringify(wrap(m, 'x')));
  }
});

t('values JSON cannot hold fail with SerializationError', async () => {
  await rejects(() => wrap({ n: 10n }, 'call x'), 'HERMOD_ERR_SERIALIZATION', /call x/);
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  await rejects(() => envelope(cyclic, 'reply'), 'HERMOD_ERR_SERIALIZATION');
});

t('version 2.0 is opened; 2.1, 3.0 and 1.x envelopes are refused with UnsupportedEnvelopeVersion', async () => {
  const inner = JSON.stringify(msg);
  assert.equal(open({ 'oslo.version': '2.0', 'oslo.message': inner }), msg);
  for (const v of ['2.1', '3.0', '1.0', '1.9', 'x', '']) {
    await rejects(() => open({ 'oslo.version': v, 'oslo.message': inner }), 'HERMOD_ERR_UNSUPPORTED_ENVELOPE');
    await rejects(() => unenvelope(JSON.stringify({ 'oslo.version': v, 'oslo.message': inner })), 'HERMOD_ERR_UNSUPPORTED_ENVELOPE');
  }
  // Read as oslo's version_is_compatible reads them: whole numbers, major.minor[.revision].
  // Number() took each of these for 2.0.
  for (const v of ['2.', '2.0.1', '2.0.999', '0x2.0', '2.0e0', '2.-0', '2.0.x', ' 2.0', '2.0.0.0']) {
    await rejects(() => open({ 'oslo.version': v, 'oslo.message': inner }), 'HERMOD_ERR_UNSUPPORTED_ENVELOPE');
  }
  for (const v of ['2.0.0', '02.0']) assert.equal(open({ 'oslo.version': v, 'oslo.message': inner }), msg, v);
  // The version is checked before the payload: a refused version says so whatever it carries.
  await rejects(() => open({ 'oslo.version': '3.0', 'oslo.message': 42 }), 'HERMOD_ERR_UNSUPPORTED_ENVELOPE');
});

t('a bare (1.0) message passes as it is', () => {
  const bare = { method: 'bump', args: { seq: 1 }, _unique_id: 'u' };
  assert.not.ok(isEnvelope(bare));
  assert.is(open(bare), bare);
  assert.equal(unenvelope(JSON.stringify(bare)), bare);
  // Only both keys make an envelope.
  assert.not.ok(isEnvelope({ 'oslo.version': '2.0' }));
  assert.not.ok(isEnvelope({ 'oslo.message': '{}' }));
  assert.equal(open({ 'oslo.message': '{}' }), { 'oslo.message': '{}' });
});

t('malformed bodies: not JSON, not an object, oslo.message not a string or not a JSON object → MalformedMessage', async () => {
  for (const body of ['not json', '{"truncated": ', '[1,2,3]', 'null', '42', '"a string"']) {
    await rejects(() => unenvelope(body), 'HERMOD_ERR_MALFORMED_MESSAGE');
  }
  await rejects(() => unenvelope(Buffer.from('\xff\xfe garbage', 'latin1')), 'HERMOD_ERR_MALFORMED_MESSAGE');
  for (const inner of [42, null, { method: 'x' }, ['a']]) {
    await rejects(() => open({ 'oslo.version': '2.0', 'oslo.message': inner }), 'HERMOD_ERR_MALFORMED_MESSAGE');
  }
  for (const inner of ['{not json', '[1]', 'null', '"s"', '7']) {
    await rejects(() => open({ 'oslo.version': '2.0', 'oslo.message': inner }), 'HERMOD_ERR_MALFORMED_MESSAGE');
  }
});

t('peek: the inner dict of a body that failed to decode, without the version check', () => {
  const inner = { method: 'add', _msg_id: 'm-ver', _reply_q: 'reply_1' };
  assert.equal(peek(JSON.stringify({ 'oslo.version': '3.1', 'oslo.message': JSON.stringify(inner) })), inner);
  assert.equal(peek(Buffer.from(envelope(inner, 'x'))), inner);
  assert.equal(peek(JSON.stringify(inner)), inner, 'a bare message is its own dict');
  assert.is(peek('not json'), undefined);
  assert.is(peek('[1,2]'), undefined);
  assert.is(peek('null'), undefined);
  assert.is(peek('"s"'), undefined);
  assert.is(peek(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': '{broken' })), undefined);
  // Cut short after its ids: answered as a body too large to parse is (it was dropped unanswered
  // under 64 KiB, answered above).
  const cut = JSON.stringify({
    'oslo.version': '2.0',
    'oslo.message': '{"method":"add","_msg_id":"m-cut","_reply_q":"reply_2","args":{"a":',
  });
  assert.equal(peek(cut), { _msg_id: 'm-cut', _reply_q: 'reply_2' });
  assert.equal(peek(cut.slice(0, -10)), { _msg_id: 'm-cut', _reply_q: 'reply_2' });
  assert.is(peek(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': '[1]' })), undefined);
});

t('encodeBounded: JSON within the limit; over it MessageTooLarge counting UTF-8 bytes', async () => {
  assert.is(encodeBounded({ a: 1 }, 'x', 100), '{"a":1}');
  assert.is(encodeBounded('x'.repeat(8), 'x', 10), `"${'x'.repeat(8)}"`, 'exactly at the limit');
  const over = await rejects(() => encodeBounded('x'.repeat(9), 'x', 10), 'HERMOD_ERR_MESSAGE_TOO_LARGE');
  assert.ok(over instanceof MessageTooLarge);
  assert.is((over as MessageTooLarge).size, 11);
  assert.is((over as MessageTooLarge).limit, 10);
  // 'é' is one UTF-16 unit but two UTF-8 bytes: 4 of them make 10 bytes, 5 make 12.
  assert.is(encodeBounded('éééé', 'x', 10), '"éééé"');
  const multi = await rejects(() => encodeBounded('ééééé', 'x', 10), 'HERMOD_ERR_MESSAGE_TOO_LARGE');
  assert.is((multi as MessageTooLarge).size, 12);
  await rejects(() => encodeBounded({ n: 1n }, 'reply', 1000), 'HERMOD_ERR_SERIALIZATION');
});

t.run();
