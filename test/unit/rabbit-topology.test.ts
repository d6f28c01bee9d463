import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Target } from '../../src/core/target.js';
import { requestRoute, Topology } from '../../src/driver/rabbit/topology.js';
import { defaultConfig } from '../../src/index.js';

const t = suite('rabbit topology');

const topology = (over: Partial<ReturnType<typeof defaultConfig>['rabbit']> = {}) => new Topology({ ...defaultConfig().rabbit, ...over });

t('requests route to <topic>, <topic>.<server>, or the fanout exchange with key ""', () => {
  assert.equal(requestRoute(new Target({ topic: 't' }), 'openstack', 'exchange'), {
    exchange: { name: 'openstack', type: 'topic' },
    key: 't',
  });
  assert.equal(requestRoute(new Target({ topic: 't', server: 's' }), 'nova', 'exchange'), {
    exchange: { name: 'nova', type: 'topic' },
    key: 't.s',
  });
  assert.equal(requestRoute(new Target({ topic: 't', fanout: true }), 'openstack', 'exchange'), {
    exchange: { name: 't_fanout', type: 'fanout' },
    key: '',
  });
});

t('with rabbit.requestRouting = queue, requests go by the default exchange to the queue the key names; fanout keeps its exchange', () => {
  assert.equal(requestRoute(new Target({ topic: 't' }), 'openstack', 'queue'), { exchange: undefined, key: 't' });
  assert.equal(requestRoute(new Target({ topic: 't', server: 's' }), 'nova', 'queue'), { exchange: undefined, key: 't.s' });
  assert.equal(requestRoute(new Target({ topic: 't', fanout: true }), 'openstack', 'queue'), {
    exchange: { name: 't_fanout', type: 'fanout' },
    key: '',
  });
  // The keys are the names the servers give their queues.
  const names = topology()
    .serverBindings('nova', 't', 's')
    .filter((b) => b.exchange.type === 'topic')
    .map((b) => [b.queue, b.key]);
  assert.equal(names, [
    ['t', 't'],
    ['t.s', 't.s'],
  ]);
});

t('queue flags follow oslo: transient queues expire, quorum queues are durable and never auto-deleted', () => {
  const plain = topology();
  assert.equal(plain.sharedQueue(), { durable: false, autoDelete: false, arguments: {} });
  assert.equal(plain.transientQueue(), { durable: false, autoDelete: false, arguments: { 'x-expires': 1_800_000 } });
  assert.equal(plain.exchangeOptions(), { durable: false, autoDelete: false });
  const quorum = topology({ quorumQueues: true, quorumDeliveryLimit: 5, autoDelete: true });
  assert.equal(quorum.sharedQueue(), {
    durable: true,
    autoDelete: false,
    arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 5 },
  });
  assert.equal(quorum.transientQueue().arguments, { 'x-expires': 1_800_000 });
  assert.equal(topology({ haQueues: true }).transientQueue().arguments, { 'x-ha-policy': 'all', 'x-expires': 1_800_000 });
  assert.equal(quorum.exchangeOptions(), { durable: true, autoDelete: true });
});

t('an RPC server binds its topic, its own server queue and a fanout queue deleted on stop', () => {
  const [shared, own, fanout] = topology().serverBindings('openstack', 'compute', 'h1');
  assert.equal([shared!.queue, shared!.key, shared!.exchange], ['compute', 'compute', { name: 'openstack', type: 'topic' }]);
  assert.equal([own!.queue, own!.key], ['compute.h1', 'compute.h1']);
  assert.match(fanout!.queue, /^compute_fanout_[0-9a-f]{32}$/);
  assert.equal(fanout!.exchange, { name: 'compute_fanout', type: 'fanout' });
  assert.ok(fanout!.deleteOnStop);
  assert.equal(fanout!.options.arguments, { 'x-expires': 1_800_000 });
});

t('notification listeners consume <topic>.<priority>, or one queue named after the pool', () => {
  const routes = [
    { exchange: 'openstack', key: 'notifications.info' },
    { exchange: 'nova', key: 'n.error' },
  ];
  assert.equal(
    topology()
      .listenerBindings(routes, undefined)
      .map((b) => [b.queue, b.exchange.name, b.key]),
    [
      ['notifications.info', 'openstack', 'notifications.info'],
      ['n.error', 'nova', 'n.error'],
    ],
  );
  assert.equal(
    topology()
      .listenerBindings(routes, 'pool')
      .map((b) => b.queue),
    ['pool', 'pool'],
  );
});

t.run();
