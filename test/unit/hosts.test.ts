import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseTransportUrl } from '../../src/config/transport-url.js';
import { HostRotation, hostLabel } from '../../src/driver/hosts.js';

const t = suite('transport hosts: labels and failover rotation');

t('labels are host:port, IPv6 addresses in brackets', () => {
  assert.is(hostLabel({ hostname: 'rabbit-1', port: 5672 }), 'rabbit-1:5672');
  assert.is(hostLabel({ hostname: '10.0.0.7', port: 5671 }), '10.0.0.7:5671');
  assert.is(hostLabel({ hostname: '::1', port: 5672 }), '[::1]:5672');
  assert.is(hostLabel({ hostname: 'fe80::1%eth0', port: 1 }), '[fe80::1%eth0]:1');
  assert.is(hostLabel({ hostname: 'h', port: 5672, username: 'guest', password: 'secret' }), 'h:5672', 'never credentials');
});

t('each attempt takes the next host, round robin, and remembers it', () => {
  const r = new HostRotation(parseTransportUrl('rabbit://u:p@h1:5672,h2:5673,[::1]:5674/'));
  assert.is(r.current, undefined);
  assert.is(r.currentLabel, '?', 'before the first attempt');
  const order = Array.from({ length: 7 }, () => hostLabel(r.next()));
  assert.equal(order, ['h1:5672', 'h2:5673', '[::1]:5674', 'h1:5672', 'h2:5673', '[::1]:5674', 'h1:5672']);
  assert.is(r.current!.hostname, 'h1');
  assert.is(r.currentLabel, 'h1:5672');
  assert.is(r.next().hostname, 'h2');
  assert.is(r.current!.port, 5673);
  assert.is(r.currentLabel, 'h2:5673');
});

t('one host: every attempt goes to it', () => {
  const r = new HostRotation(parseTransportUrl('amqp://router:5672/'));
  for (let i = 0; i < 3; i++) assert.equal(r.next(), { hostname: 'router', port: 5672 });
});

t('describe names the scheme, every host (no credentials) and the vhost', () => {
  assert.is(
    new HostRotation(parseTransportUrl('rabbit://guest:secret@h1,h2:5673,[::1]/nova')).describe(),
    "rabbit://h1:5672, h2:5673, [::1]:5672 vhost 'nova'",
  );
  assert.is(new HostRotation(parseTransportUrl('amqps://router/')).describe(), 'amqps://router:5671');
  assert.is(new HostRotation(parseTransportUrl('rabbit://h1')).describe(), 'rabbit://h1:5672');
});

t.run();
