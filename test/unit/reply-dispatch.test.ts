import diagnostics_channel from 'node:diagnostics_channel';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeReply } from '../../src/driver/amqp1/wire.js';
import { envelope } from '../../src/driver/envelope.js';
import { ReplyDispatch } from '../../src/driver/rabbit/reply-dispatch.js';
import { ReplyWaiter } from '../../src/driver/reply-waiter.js';

const t = suite('rabbit reply dispatch: copies of replies (no duplicate check by _unique_id)');

const body = (msg: Record<string, unknown>) => Buffer.from(envelope({ _unique_id: 'u1', ...msg }, 'reply'), 'utf8');

t('a copy of a final reply finds its call ended: resolved once, nothing kept', async () => {
  const waiter = new ReplyWaiter();
  const d = new ReplyDispatch(waiter, { maxJsonDepth: 100, maxMessageSize: 1 << 20 });
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
  const d = new ReplyDispatch(waiter, { maxJsonDepth: 100, maxMessageSize: 1 << 20 });
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

t('the job marker beside the result: exactly 1 marks a reply as a job token on both wires, anything else is a plain result', async () => {
  const waiter = new ReplyWaiter();
  const d = new ReplyDispatch(waiter, { maxJsonDepth: 100, maxMessageSize: 1 << 20 });
  const token = { hermod_job: 1, job_id: 'a'.repeat(32) };
  const cases: [unknown, boolean][] = [
    [1, true],
    [true, false],
    ['1', false],
    [2, false],
    [undefined, false],
  ];
  for (const [i, [marker, job]] of cases.entries()) {
    const call = waiter.wait(`j${i}`, { timeout: 5_000, describe: 'echo' });
    d.onReply(body({ _msg_id: `j${i}`, result: token, failure: null, ending: true, _hermod_job: marker }));
    assert.equal(await call, job ? { result: token, job: true } : { result: token }, `rabbit, marker ${String(marker)}`);
    const decoded = decodeReply({ correlation_id: `j${i}`, body: JSON.stringify({ response: token, _hermod_job: marker }) });
    assert.equal(
      decoded,
      { kind: 'reply', id: `j${i}`, reply: job ? { result: token, job: true } : { result: token } },
      `amqp1, marker ${String(marker)}`,
    );
  }
});

t('replies for calls nobody waits for, and unreadable bodies, are dropped', () => {
  const waiter = new ReplyWaiter();
  const d = new ReplyDispatch(waiter, { maxJsonDepth: 100, maxMessageSize: 1 << 20 });
  d.onReply(body({ _msg_id: 'nobody', result: 1, failure: null, ending: false }));
  d.onReply(body({ _msg_id: 'nobody', result: 1, failure: null, ending: true }));
  d.onReply(Buffer.from('{not json'));
  assert.is(d.partials, 0);
  assert.is(waiter.size, 0);
});

t(
  'a failure that is not an object ("null", "0") fails the call as unreadable on both wires; any true `ending` ends it, as in oslo',
  async () => {
    const waiter = new ReplyWaiter();
    const d = new ReplyDispatch(waiter, { maxJsonDepth: 100, maxMessageSize: 1 << 20 });
    for (const [i, f] of ['null', '0', 'false', '[]'].entries()) {
      const call = waiter.wait(`f${i}`, { timeout: 5_000, describe: 'echo' });
      d.onReply(body({ _msg_id: `f${i}`, result: 7, failure: f, ending: true }));
      // Before: "null" read as no failure, and the call succeeded with no result at all.
      const r = (await call) as { failure?: { class: string; message: string } };
      assert.is(r.failure?.class, 'MalformedMessage', f);
      assert.match(r.failure!.message, /unreadable failure/);
    }
    const reply = (failure: unknown) => ({ body: JSON.stringify({ failure }), correlation_id: 'c1' });
    for (const f of ['null', '0', '"x"']) {
      const r = decodeReply(reply(f) as never, 100, 1 << 20) as { kind: string; error?: Error };
      assert.is(r.kind, 'malformed', f);
      assert.match(r.error!.message, /not a JSON object/);
    }
    for (const [i, ending] of [1, 'yes', [0], { a: 1 }].entries()) {
      const call = waiter.wait(`e${i}`, { timeout: 5_000, describe: 'echo' });
      d.onReply(body({ _msg_id: `e${i}`, result: i, failure: null, ending }));
      assert.equal(await call, { result: i }, JSON.stringify(ending));
    }
    for (const [i, ending] of [0, '', [], {}, null].entries()) {
      let settled = false;
      const call = waiter.wait(`n${i}`, { timeout: 5_000, describe: 'echo' }).then(
        () => (settled = true),
        () => undefined,
      );
      d.onReply(body({ _msg_id: `n${i}`, result: null, failure: null, ending }));
      await new Promise((r) => setImmediate(r));
      assert.not.ok(settled, `${JSON.stringify(ending)} does not end the call`);
      waiter.fail(`n${i}`, new Error('test over'));
      await call;
    }
  },
);

t('unreadable replies are reported on hermod:message:invalid; one for a call nobody waits for is not', () => {
  const seen: Array<{ where: string; error: Error }> = [];
  const listen = (e: unknown) => seen.push(e as { where: string; error: Error });
  diagnostics_channel.subscribe('hermod:message:invalid', listen);
  try {
    const waiter = new ReplyWaiter();
    const d = new ReplyDispatch(waiter, { maxJsonDepth: 100, maxMessageSize: 1 << 10 });
    d.onReply(body({ _msg_id: 'late', result: 1, failure: null, ending: true }));
    assert.is(seen.length, 0);
    d.onReply(Buffer.from('{not json'));
    d.onReply(body({ result: 1, failure: null, ending: true }));
    d.onReply(Buffer.alloc(2048, 0x20));
    assert.equal(
      seen.map((e) => [e.where, e.error.name]),
      [
        ['reply queue', 'MalformedMessage'],
        ['reply queue', 'MalformedMessage'],
        ['reply queue', 'MessageTooLarge'],
      ],
    );
  } finally {
    diagnostics_channel.unsubscribe('hermod:message:invalid', listen);
  }
});

t('a reply over maxMessageSize fails its call with MessageTooLarge, unparsed (RabbitMQ dispatch and AMQP 1.0 decoding)', async () => {
  // A peer on the broker (or a peer that is no router) could send a reply of any size, which
  // was parsed whole.
  const waiter = new ReplyWaiter();
  const d = new ReplyDispatch(waiter, { maxJsonDepth: 100, maxMessageSize: 1 << 20 });
  const call = waiter.wait('big', { timeout: 5_000, describe: 'echo' });
  const huge = body({ result: 'x'.repeat(2 << 20), failure: null, ending: true, _msg_id: 'big' });
  const parse = JSON.parse;
  let parsedLarge = false;
  JSON.parse = ((text: string, ...rest: never[]) => {
    if (text.length > 1 << 20) parsedLarge = true;
    return parse(text, ...rest);
  }) as typeof JSON.parse;
  try {
    d.onReply(huge);
  } finally {
    JSON.parse = parse;
  }
  const err = (await call.then(
    () => undefined,
    (e: unknown) => e,
  )) as Error & { code?: string; size?: number; limit?: number };
  assert.is(err?.code, 'HERMOD_ERR_MESSAGE_TOO_LARGE');
  assert.is(err.limit, 1 << 20);
  assert.ok((err.size ?? 0) > 2 << 20);
  assert.not.ok(parsedLarge, 'never parsed');
  const r = decodeReply({ correlation_id: 'c1', body: JSON.stringify({ response: 'y'.repeat(3000) }) } as never, 100, 1000);
  assert.is(r?.kind, 'malformed');
  assert.is((r as { error: { code?: string } }).error.code, 'HERMOD_ERR_MESSAGE_TOO_LARGE');
  assert.is(decodeReply({ correlation_id: 'c2', body: '{"response":1}' } as never, 100, 1000)?.kind, 'reply');
});

t.run();
