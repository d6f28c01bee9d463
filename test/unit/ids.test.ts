import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { uuid, uuidHex } from '../../src/core/ids.js';

const t = suite('ids (oslo _msg_id / _unique_id form)');

t('uuidHex is a uuid4 as 32 lowercase hex digits, each one new', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 1000; i++) {
    const id = uuidHex();
    assert.match(id, /^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$/);
    seen.add(id);
  }
  assert.is(seen.size, 1000);
});

t('uuid keeps the dashes (notification message_id)', () => {
  assert.match(uuid(), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

t.run();
