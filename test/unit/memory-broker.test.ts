import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryBroker } from '../../src/driver/memory/broker.js';

// Deleting a queue scanned every binding of the broker: stopping a `hermod run` of 12,000
// services on memory:// took 20 s (20,000: 70 s), past its stop deadline.

test('deleting a queue removes its own bindings only, and a key or exchange left with no queue goes too', () => {
  const b = new MemoryBroker('unit');
  const internals = b as unknown as { bindings: Map<string, Map<string, Set<string>>>; boundAt: Map<string, unknown> };
  for (let i = 0; i < 1000; i++) {
    b.declareQueue(`q${i}`);
    b.bind(`q${i}`, 'ex', `k${i}`);
    b.bind(`q${i}`, 'ex', 'shared');
    b.bind(`q${i}`, 'ex', 'shared');
  }
  assert.is(b.publish('ex', 'shared', 'x'), 1000, 'bound once each, however often bound');
  for (let i = 0; i < 999; i++) b.deleteQueue(`q${i}`);
  assert.is(b.publish('ex', 'shared', 'y'), 1);
  assert.is(b.publish('ex', 'k5', 'y'), 0);
  assert.equal([...internals.bindings.get('ex')!.keys()].sort(), ['k999', 'shared']);
  b.deleteQueue('q999');
  assert.is(internals.bindings.size, 0, 'nothing left of the exchange');
  assert.is(internals.boundAt.size, 0);
  // Declared and bound again after a delete: routed as new.
  b.declareQueue('q1');
  b.bind('q1', 'ex', 'k1');
  assert.is(b.publish('ex', 'k1', 'z'), 1);
});

test.run();
