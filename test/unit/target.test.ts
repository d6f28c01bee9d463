import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Target, versionIsCompatible } from '../../src/index.js';
import { rejects } from '../support/assert.js';

const t = suite('target');

t('fields are kept and the object is frozen', () => {
  const target = new Target({ exchange: 'nova', topic: 'compute', namespace: 'ns', version: '1.3', server: 'h1' });
  assert.is(target.topic, 'compute');
  assert.is(target.exchange, 'nova');
  assert.ok(Object.isFrozen(target));
  assert.throws(() => {
    (target as { topic: string }).topic = 'x';
  });
  assert.equal(target.toJSON(), { exchange: 'nova', topic: 'compute', namespace: 'ns', version: '1.3', server: 'h1' });
  assert.match(String(target), /topic=compute/);
});

t('merge overrides, keeps and clears fields without touching the original', () => {
  const base = new Target({ topic: 'compute', version: '1.0', server: 'h1' });
  const m = base.merge({ version: '1.2', server: null, fanout: true });
  assert.equal(m.toJSON(), { topic: 'compute', version: '1.2', fanout: true });
  assert.equal(base.toJSON(), { topic: 'compute', version: '1.0', server: 'h1' });
  assert.is.not(m, base);
});

t('versions must be X.Y', async () => {
  for (const bad of ['1', 'v1.0', '1.x', '', '1.0.0.0']) {
    await rejects(() => new Target({ version: bad }), 'HERMOD_ERR_INVALID_TARGET', /X\.Y/);
  }
  assert.is(new Target({ version: '2.11' }).version, '2.11');
  assert.is(new Target({ version: '1.2.3' }).version, '1.2.3');
});

t('bad field values and unknown fields are refused', async () => {
  await rejects(() => new Target({ topic: '' }), 'HERMOD_ERR_INVALID_TARGET', /topic must be a non-empty string/);
  await rejects(() => new Target({ topic: 'a b' }), 'HERMOD_ERR_INVALID_TARGET', /whitespace/);
  await rejects(() => new Target({ topic: 3 as unknown as string }), 'HERMOD_ERR_INVALID_TARGET', /topic/);
  await rejects(() => new Target({ fanout: 'yes' as unknown as boolean }), 'HERMOD_ERR_INVALID_TARGET', /fanout must be a boolean/);
  await rejects(() => new Target({ topc: 'x' } as never), 'HERMOD_ERR_INVALID_TARGET', /unknown target field 'topc'/);
  await rejects(() => new Target(null as never), 'HERMOD_ERR_INVALID_TARGET');
});

t("AMQP wildcard words in a topic or server are refused (on RabbitMQ a server on '#' ran every call)", async () => {
  for (const topic of ['#', '*', 'compute.*', '#.info', 'a.#.b']) {
    await rejects(() => new Target({ topic }), 'HERMOD_ERR_INVALID_TARGET', /wildcard/);
  }
  await rejects(() => new Target({ topic: 't', server: '*' }), 'HERMOD_ERR_INVALID_TARGET', /server .*wildcard/);
  await rejects(() => new Target({ topic: 't' }).merge({ topic: 'a.*' }), 'HERMOD_ERR_INVALID_TARGET', /wildcard/);
  // Only whole words are wildcards; an exchange is a name, never matched.
  for (const topic of ['a*b', 'c#', '#x.y', 'x.**']) assert.is(new Target({ topic }).topic, topic);
  assert.is(new Target({ exchange: '#', topic: 't', server: 'h*' }).exchange, '#');
});

t(
  "names RabbitMQ cannot carry are refused on every driver: 255 UTF-8 bytes, a topic 40 fewer for its fanout queue, '<topic>.<server>' 255",
  async () => {
    const topic = 't'.repeat(215);
    assert.is(new Target({ topic }).topic, topic);
    await rejects(
      () => new Target({ topic: `${topic}t` }),
      'HERMOD_ERR_INVALID_TARGET',
      /topic "t+…" is 216 bytes long in UTF-8, more than the 215/,
    );
    // Bytes, not characters: 108 × 'é' is 216 bytes.
    assert.is(new Target({ topic: 'é'.repeat(107) }).topic!.length, 107);
    await rejects(() => new Target({ topic: 'é'.repeat(108) }), 'HERMOD_ERR_INVALID_TARGET', /216 bytes/);
    for (const key of ['server', 'exchange'] as const) {
      assert.is(new Target({ [key]: 's'.repeat(255) })[key]!.length, 255);
      await rejects(() => new Target({ [key]: 's'.repeat(256) }), 'HERMOD_ERR_INVALID_TARGET', new RegExp(`${key} .* is 256 bytes`));
    }
    // A server's queue and routing key '<topic>.<server>'.
    assert.ok(new Target({ topic: 'a'.repeat(100), server: 'b'.repeat(154) }));
    await rejects(
      () => new Target({ topic: 'a'.repeat(100), server: 'b'.repeat(155) }),
      'HERMOD_ERR_INVALID_TARGET',
      /256-byte routing key/,
    );
    await rejects(() => new Target({ topic: 'a'.repeat(100) }).merge({ server: 'b'.repeat(155) }), 'HERMOD_ERR_INVALID_TARGET', /256-byte/);
    // A namespace never becomes a name on the broker: it travels inside the message.
    assert.is(new Target({ namespace: 'n'.repeat(1000) }).namespace!.length, 1000);
  },
);

t('calls need a topic and cannot be fanout', async () => {
  await rejects(() => new Target({}).assertCallable(), 'HERMOD_ERR_INVALID_TARGET', /a call requires a topic/);
  await rejects(() => new Target({ topic: 't', fanout: true }).assertCallable(), 'HERMOD_ERR_INVALID_TARGET', /cannot be fanout/);
  new Target({ topic: 't', server: 's' }).assertCallable();
});

t('casts need a topic; fanout with a server is an error', async () => {
  await rejects(() => new Target({}).assertCastable(), 'HERMOD_ERR_INVALID_TARGET', /a cast requires a topic/);
  await rejects(
    () => new Target({ topic: 't', fanout: true, server: 's' }).assertCastable(),
    'HERMOD_ERR_INVALID_TARGET',
    /both fanout and directed/,
  );
  new Target({ topic: 't', fanout: true }).assertCastable();
});

t('servers need topic and server', async () => {
  await rejects(() => new Target({ topic: 't' }).assertListenable(), 'HERMOD_ERR_INVALID_TARGET', /topic and a server name/);
  new Target({ topic: 't', server: 's' }).assertListenable();
});

t('version compatibility follows oslo', () => {
  assert.ok(versionIsCompatible('1.3', '1.0'));
  assert.ok(versionIsCompatible('1.3', '1.3'));
  assert.not.ok(versionIsCompatible('1.3', '1.4'));
  assert.not.ok(versionIsCompatible('2.0', '1.0'));
  assert.not.ok(versionIsCompatible('1.0', '2.0'));
  assert.ok(versionIsCompatible('1.3.2', '1.3.1'));
  assert.not.ok(versionIsCompatible('1.3.0', '1.3.1'));
  assert.ok(versionIsCompatible('1.4', '1.3.9'));
});

t.run();
