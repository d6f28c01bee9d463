import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { envelope } from '../../src/driver/envelope.js';
import { ReplyDispatch } from '../../src/driver/rabbit/reply-dispatch.js';
import { ReplyWaiter } from '../../src/driver/reply-waiter.js';

const t = suite('rabbit reply dispatch: copies of replies (no duplicate check by _unique_id)');

const body = (msg: Record<string, unknown>) => Buffer.from(envelope({ _unique_id: 'u1', ...msg }, 'reply'), 'utf8');

t('a copy of a final reply finds its call ended: resolved once, nothing kept', async () => {
  const waiter = new ReplyWaiter();
  const d = new ReplyDispatch(waiter, 100);
  let resolved = 0;
  const call = waiter.wait('m1', { timeout: 5_000, describe: 'echo' }).then((r) => {
    resolved++;
    return r;
  });
  const final = body({ _msg_id: 'm1', result: 42, failure: null, ending: true });
  d.onReply(final);
  d.onReply(final);
  assert.equal(await call, { result: 42 });
  await new Promise((r) => setImmediate(r));
  assert.is(resolved, 1);
  assert.is(waiter.size, 0);
  assert.is(d.partials, 0);
});

t('old-style replies (result, then ending) are joined; a late copy of the partial result is not kept', async () => {
  const waiter = new ReplyWaiter();
  const d = new ReplyDispatch(waiter, 100);
  const call = waiter.wait('m2', { timeout: 5_000, describe: 'echo' });
  const partial = body({ _msg_id: 'm2', result: 'early', failure: null, ending: false });
  d.onReply(partial);
  d.onReply(partial);
  assert.is(d.partials, 1, 'kept while the call waits');
  d.onReply(body({ _msg_id: 'm2', result: null, failure: null, ending: true }));
  assert.equal(await call, { result: 'early' });
  d.forget('m2');
  // The copy that arrives after the call ended (a resend after a reconnect) must not stay behind.
  d.onReply(partial);
  assert.is(d.partials, 0);
});

t('replies for calls nobody waits for, and unreadable bodies, are dropped', () => {
  const waiter = new ReplyWaiter();
  const d = new ReplyDispatch(waiter, 100);
  d.onReply(body({ _msg_id: 'nobody', result: 1, failure: null, ending: false }));
  d.onReply(body({ _msg_id: 'nobody', result: 1, failure: null, ending: true }));
  d.onReply(Buffer.from('{not json'));
  assert.is(d.partials, 0);
  assert.is(waiter.size, 0);
});

t.run();
