import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { notifyAddress, pickMode, rpcAddress, serverAddresses } from '../../src/driver/amqp1/addressing.js';

const t = suite('amqp1 addressing (oslo amqp1_driver/addressing.py)');

t('routable RPC addresses: anycast, unicast to a server, multicast for fanout', () => {
  assert.is(rpcAddress('routable', { exchange: 'openstack', topic: 'compute' }), 'openstack.org/om/rpc/anycast/openstack/compute');
  assert.is(
    rpcAddress('routable', { exchange: 'openstack', topic: 'compute', server: 'h1' }),
    'openstack.org/om/rpc/unicast/openstack/compute/h1',
  );
  assert.is(rpcAddress('routable', { exchange: 'nova', topic: 'compute', fanout: true }), 'openstack.org/om/rpc/multicast/nova/compute');
  // fanout goes to every server: a server name does not narrow it.
  assert.is(
    rpcAddress('routable', { exchange: 'nova', topic: 'compute', server: 'h1', fanout: true }),
    'openstack.org/om/rpc/multicast/nova/compute',
  );
});

t('routable RPC addresses carry the vhost after the kind', () => {
  assert.is(rpcAddress('routable', { exchange: 'openstack', topic: 't' }, 'v1'), 'openstack.org/om/rpc/anycast/v1/openstack/t');
  assert.is(
    rpcAddress('routable', { exchange: 'openstack', topic: 't', server: 's' }, 'v1'),
    'openstack.org/om/rpc/unicast/v1/openstack/t/s',
  );
  assert.is(
    rpcAddress('routable', { exchange: 'openstack', topic: 't', fanout: true }, 'v1'),
    'openstack.org/om/rpc/multicast/v1/openstack/t',
  );
  assert.is(
    rpcAddress('routable', { exchange: 'openstack', topic: 't' }, ''),
    'openstack.org/om/rpc/anycast/openstack/t',
    'an empty vhost is none',
  );
});

t('legacy RPC addresses: unicast, exclusive to a server, broadcast .all; vhost after the kind', () => {
  assert.is(rpcAddress('legacy', { exchange: 'openstack', topic: 'compute' }), 'unicast.openstack.compute');
  assert.is(rpcAddress('legacy', { exchange: 'openstack', topic: 'compute', server: 'h1' }), 'exclusive.openstack.compute.h1');
  assert.is(rpcAddress('legacy', { exchange: 'openstack', topic: 'compute', fanout: true }), 'broadcast.openstack.compute.all');
  assert.is(
    rpcAddress('legacy', { exchange: 'openstack', topic: 'compute', server: 'h1', fanout: true }),
    'broadcast.openstack.compute.all',
  );
  assert.is(rpcAddress('legacy', { exchange: 'x', topic: 't' }, 'v'), 'unicast.v.x.t');
  assert.is(rpcAddress('legacy', { exchange: 'x', topic: 't', server: 's' }, 'v'), 'exclusive.v.x.t.s');
  assert.is(rpcAddress('legacy', { exchange: 'x', topic: 't', fanout: true }, 'v'), 'broadcast.v.x.t.all');
});

t('a server listens on its own, the fanout and the shared address, in that order', () => {
  assert.equal(serverAddresses('routable', { exchange: 'openstack', topic: 'compute', server: 'h1' }), [
    'openstack.org/om/rpc/unicast/openstack/compute/h1',
    'openstack.org/om/rpc/multicast/openstack/compute',
    'openstack.org/om/rpc/anycast/openstack/compute',
  ]);
  // A fanout flag on the server's target does not change its own address.
  assert.equal(serverAddresses('legacy', { exchange: 'x', topic: 't', server: 's', fanout: true }, 'v'), [
    'exclusive.v.x.t.s',
    'broadcast.v.x.t.all',
    'unicast.v.x.t',
  ]);
});

t('notification addresses, routable and legacy, with and without a vhost', () => {
  assert.is(notifyAddress('routable', 'openstack', 'notifications.info'), 'openstack.org/om/notify/anycast/openstack/notifications.info');
  assert.is(
    notifyAddress('routable', 'openstack', 'notifications.info', 'v'),
    'openstack.org/om/notify/anycast/v/openstack/notifications.info',
  );
  assert.is(notifyAddress('legacy', 'openstack', 'notifications.info'), 'unicast.openstack.notifications.info');
  assert.is(notifyAddress('legacy', 'openstack', 'notifications.info', 'v'), 'unicast.v.openstack.notifications.info');
});

t('pickMode: a configured mode wins; dynamic is routable unless the peer is qpid-cpp or names no product', () => {
  assert.is(pickMode('routable', 'qpid-cpp'), 'routable');
  assert.is(pickMode('legacy', 'qpid-dispatch-router'), 'legacy');
  assert.is(pickMode('dynamic', 'qpid-dispatch-router'), 'routable');
  assert.is(pickMode('dynamic', 'hermod-router'), 'routable');
  assert.is(pickMode('dynamic', 'qpid-cpp'), 'legacy');
  assert.is(pickMode('dynamic', undefined), 'legacy');
  assert.is(pickMode('dynamic', Buffer.from('qpid-dispatch-router')), 'legacy', 'a product that is not a string is none');
});

t.run();
