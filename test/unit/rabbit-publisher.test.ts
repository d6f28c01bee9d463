import { EventEmitter } from 'node:events';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { envelope } from '../../src/driver/envelope.js';
import type { RabbitConnection } from '../../src/driver/rabbit/connection.js';
import { MAX_DECLARED, type Publication, Publisher } from '../../src/driver/rabbit/publisher.js';
import { Topology } from '../../src/driver/rabbit/topology.js';
import { defaultConfig } from '../../src/index.js';
import { rejects } from '../support/assert.js';

type Confirm = (err: Error | null) => void;

/** An amqplib channel stand-in: records publishes, and lets each test script the broker's answers. */
class FakeChannel extends EventEmitter {
  published: Array<{ exchange: string; key: string; props: Record<string, unknown> }> = [];
  assertExchange: (name: string) => Promise<unknown> = async () => ({});
  onPublish: (content: Buffer, confirm: Confirm | undefined) => void = (_c, confirm) => confirm?.(null);
  async assertQueue(): Promise<unknown> {
    return {};
  }
  async bindQueue(): Promise<unknown> {
    return {};
  }
  async close(): Promise<void> {
    this.emit('close');
  }
  publish(exchange: string, key: string, content: Buffer, props: Record<string, unknown>, confirm?: Confirm): boolean {
    this.published.push({ exchange, key, props });
    this.onPublish(content, confirm);
    return true;
  }
}

/**
 * A publisher over fake channels, in the order it opens them: the calls channel, the confirm
 * channel, and the declares channel at the first declare. `broker` scripts every channel's
 * declares, whichever channel they go on.
 */
function setup() {
  const opened: FakeChannel[] = [];
  const confirmChannels: FakeChannel[] = [];
  const broker = {
    assertExchange: async (_name: string): Promise<unknown> => ({}),
    bindQueue: async (): Promise<unknown> => ({}),
  };
  const make = () => {
    const c = new FakeChannel();
    c.assertExchange = (name) => broker.assertExchange(name);
    c.bindQueue = () => broker.bindQueue();
    opened.push(c);
    return c;
  };
  const model = {
    createChannel: async () => make(),
    createConfirmChannel: async () => {
      const c = make();
      confirmChannels.push(c);
      return c;
    },
  };
  const conn = { ready: async () => model, isOpen: true } as unknown as RabbitConnection;
  const publisher = new Publisher(conn, new Topology(defaultConfig().rabbit), () => {});
  const confirms = () => confirmChannels;
  return { publisher, model, opened, confirms, broker };
}

const pub = (over: Partial<Publication> = {}): Publication => ({
  exchange: { name: 'openstack', type: 'topic' },
  key: 'k',
  body: envelope({ _unique_id: 'u1' }, 't'),
  uniqueId: 'u1',
  mandatory: false,
  confirm: true,
  expires: true,
  deadline: Date.now() + 2000,
  retry: -1,
  what: 'cast x',
  ...over,
});

const t = suite('rabbit publisher (fake channels)');

t('a refusal is classified by its AMQP reply code: 406 on the exchange declare fails at once', async () => {
  const { publisher, model, broker } = setup();
  await publisher.setup(model as never);
  broker.assertExchange = async () => {
    throw Object.assign(new Error('Operation failed: ExchangeDeclare; 406 (PRECONDITION-FAILED) with message "inequivalent arg"'), {
      code: 406,
    });
  };
  await rejects(publisher.publish(pub()), 'HERMOD_ERR_DELIVERY_FAILURE', /refused it.*PRECONDITION/);
});

t('a refusal named only in the text is not trusted: no code, so it is resent until the deadline', async () => {
  const { publisher, model, broker } = setup();
  await publisher.setup(model as never);
  let tries = 0;
  broker.assertExchange = async () => {
    tries++;
    throw new Error('something NOT_FOUND-ish without a code');
  };
  await rejects(publisher.publish(pub({ deadline: Date.now() + 150 })), 'HERMOD_ERR_TIMEOUT');
  assert.ok(tries > 1, `resent ${tries} times`);
});

t('a nack fails with MessageDeliveryFailure; a returned mandatory message with MessageUndeliverable', async () => {
  const { publisher, model, confirms } = setup();
  await publisher.setup(model as never);
  const ch = confirms()[0]!;
  ch.onPublish = (_c, confirm) => confirm?.(new Error('message nacked'));
  await rejects(publisher.publish(pub()), 'HERMOD_ERR_DELIVERY_FAILURE', /nacked/);
  ch.onPublish = (content, confirm) => {
    ch.emit('return', { content, fields: {} });
    confirm?.(null);
  };
  await rejects(
    publisher.publish(pub({ exchange: undefined, key: 'reply_gone', mandatory: true })),
    'HERMOD_ERR_UNDELIVERABLE',
    /default exchange \(no queue of that name\) routing key 'reply_gone'/,
  );
});

t('a confirm lost with the channel is resent within `retry`, and fails past it', async () => {
  const { publisher, model, confirms } = setup();
  await publisher.setup(model as never);
  let n = 0;
  confirms()[0]!.onPublish = (_c, confirm) => confirm?.(n++ === 0 ? new Error('channel closed') : null);
  await publisher.publish(pub({ retry: 1 }));
  assert.is(confirms()[0]!.published.length, 2);
  confirms()[0]!.onPublish = (_c, confirm) => confirm?.(new Error('channel closed'));
  await rejects(publisher.publish(pub({ retry: 0 })), 'HERMOD_ERR_TRANSPORT', /retry=0/);
});

t('a call request goes on the plain channel, unconfirmed, expiring at its deadline', async () => {
  const { publisher, model, opened } = setup();
  await publisher.setup(model as never);
  await publisher.publish(pub({ confirm: false, deadline: Date.now() + 5000 }));
  const [sent] = opened[0]!.published;
  assert.ok(sent);
  const ttl = Number(sent.props.expiration);
  assert.ok(ttl > 4000 && ttl <= 5000, `expiration ${ttl}`);
  assert.is(opened[1]!.published.length, 0);
});

t(
  'without expires (rabbit.requestExpiration=false) a call request carries no expiration on either path; a confirmed publish never does',
  async () => {
    const { publisher, model, opened, confirms } = setup();
    await publisher.setup(model as never);
    await publisher.publish(pub({ confirm: false, expires: false, deadline: Date.now() + 5000 }));
    assert.is(publisher.publishNow(pub({ confirm: false, expires: false, deadline: Date.now() + 5000 })), true);
    assert.equal(
      opened[0]!.published.map((p) => p.props.expiration),
      [undefined, undefined],
    );
    await publisher.publish(pub({ confirm: true, expires: true }));
    assert.is(confirms()[0]!.published[0]!.props.expiration, undefined);
  },
);

t('channels the broker closed are re-opened on the next publish, and exchanges declared again', async () => {
  const { publisher, model, confirms, broker } = setup();
  await publisher.setup(model as never);
  let declared = 0;
  broker.assertExchange = async () => {
    declared++;
    return {};
  };
  await publisher.publish(pub());
  await publisher.publish(pub());
  assert.is(declared, 1, 'declared once per channel');
  confirms()[0]!.emit('close');
  await publisher.publish(pub());
  assert.is(confirms().length, 2);
  assert.is(confirms()[1]!.published.length, 1);
});

t('what it remembers as declared is bounded: notification topics made up without end do not grow it', async () => {
  const { publisher, model, confirms, broker } = setup();
  await publisher.setup(model as never);
  let bound = 0;
  broker.bindQueue = async () => {
    bound++;
    return {};
  };
  const exchange = { name: 'openstack', type: 'topic' } as const;
  const notify = (topic: string) => publisher.publish(pub({ key: topic, declare: { queue: topic, options: {}, exchange, key: topic } }));
  for (let i = 0; i < MAX_DECLARED + 100; i++) await notify(`made-up-${i}.info`);
  const declared = (publisher as unknown as { declared: Set<string> }).declared;
  // Before: one entry per topic until the channels reopened (about 190 bytes each).
  assert.ok(declared.size <= MAX_DECLARED, `${declared.size} names remembered`);
  assert.is(bound, MAX_DECLARED + 100, 'each new topic was declared');
  // A name remembered is not declared again; one forgotten is, and its publish still goes.
  await notify(`made-up-${MAX_DECLARED + 99}.info`);
  assert.is(bound, MAX_DECLARED + 100);
  await notify('made-up-0.info');
  assert.is(bound, MAX_DECLARED + 101);
  assert.is(confirms()[0]!.published.length, MAX_DECLARED + 102);
});

t('publishNow sends a call request at once only when nothing stands in the way, and otherwise sends nothing', async () => {
  const { publisher, model, opened } = setup();
  const call = pub({ confirm: false, deadline: Date.now() + 5000 });
  assert.is(publisher.publishNow(call), false, 'no channels yet');
  await publisher.setup(model as never);
  assert.is(publisher.publishNow(call), false, 'exchange not declared yet');
  assert.is(opened[0]!.published.length, 0);
  await publisher.publish(call);
  assert.is(publisher.publishNow(pub({ confirm: true })), false, 'a confirmed publish never goes this way');
  assert.is(publisher.publishNow(call), true);
  assert.is(opened[0]!.published.length, 2);
  const ttl = Number(opened[0]!.published[1]!.props.expiration);
  assert.ok(ttl > 4000 && ttl <= 5000, `expiration ${ttl}`);
  // amqplib's buffer is full: this one is written, and the next waits for drain in publish().
  opened[0]!.publish = (exchange, key, _content, props) => {
    opened[0]!.published.push({ exchange, key, props });
    return false;
  };
  assert.is(publisher.publishNow(call), true);
  assert.is(publisher.publishNow(call), false, 'waiting for drain');
  opened[0]!.emit('drain');
  assert.is(publisher.publishNow(call), true);
  // A closing channel throws: nothing sent, publish() takes over.
  opened[0]!.publish = () => {
    throw Object.assign(new Error('Channel closing'), { name: 'IllegalOperationError' });
  };
  assert.is(publisher.publishNow(call), false);
});

t.run();
