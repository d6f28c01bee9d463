import rhea from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { installRawDecode, rawBytes, scanInsteadOfDecode } from '../../src/rhea/index.js';
import { scanMessage, withTtl } from '../../src/rhea/message-scan.js';

const t = suite('router message scan (src/rhea/message-scan.ts)');

interface Codec {
  encode(m: object): Buffer;
  decode(b: Buffer): { to?: string };
  data_section(b: Buffer): object;
  sequence_section(l: unknown[]): object;
}
const codec = (rhea as unknown as { message: Codec }).message;
const types = (rhea as unknown as { types: Record<string, (...a: unknown[]) => unknown> }).types;

/** Messages of every kind of value rhea writes, with and without `to`. */
function samples(): Buffer[] {
  const wrap = types;
  return [
    codec.encode({}),
    codec.encode({ body: 'plain' }),
    codec.encode({ to: 'openstack.org/om/rpc/anycast/openstack/demo', body: '{"oslo.message":"{}"}' }),
    codec.encode({
      to: 'ünïcode/⁂',
      message_id: 'id-1',
      user_id: Buffer.from('u'),
      subject: 's',
      reply_to: 'r',
      correlation_id: wrap.wrap_uuid!(Buffer.alloc(16, 7)),
      content_type: 'application/json',
      absolute_expiry_time: new Date(1_700_000_000_000),
      group_sequence: 3,
      durable: true,
      priority: 4,
      ttl: 30_000,
      delivery_annotations: { 'x-opt-d': 1 },
      message_annotations: { 'x-opt-a': 'b', 'x-opt-n': 2 ** 40 },
      application_properties: { i: -5, f: 1.5, b: false, n: null, s: 'x'.repeat(300), big: 2 ** 53 - 1 },
      footer: { f: 'end' },
      body: [1, 'a', [2, { k: 'v' }], null, 1.25, true, Buffer.alloc(300, 1)],
    }),
    codec.encode({ to: 'x', body: codec.data_section(Buffer.alloc(70_000, 3)) }),
    codec.encode({ to: 'y', body: codec.sequence_section([1, 2, 'three']) }),
    codec.encode({ to: 'z', body: wrap.wrap_array!([1, 2, 3], 0x71) }),
    codec.encode({ to: 'w', body: wrap.wrap_array!(['a', 'bb'], 0xa1) }),
    codec.encode({ to: 'v', body: wrap.wrap_map!({ m: wrap.wrap_list!([wrap.wrap_symbol!('sym'), wrap.wrap_ulong!(7)]) }) }),
  ];
}

t('reads the same `to` and `ttl` as rhea decodes, from every kind of message rhea writes', () => {
  for (const buf of samples()) {
    const { ttlAt, ...scanned } = scanMessage(buf, 128);
    const decoded = codec.decode(buf) as { to?: string; ttl?: number };
    assert.equal(
      scanned,
      { ...(decoded.to === undefined ? {} : { to: decoded.to }), ...(decoded.ttl ? { ttl: decoded.ttl } : {}) },
      buf.toString('hex').slice(0, 80),
    );
    assert.is(ttlAt === undefined, !decoded.ttl);
  }
});

t('`to` behind the other two descriptor forms of the properties section (ulong, symbol)', () => {
  const small = codec.encode({ to: 'the/address', subject: 's', body: 'b' });
  const at = small.indexOf(Buffer.from([0x00, 0x53, 0x73]));
  assert.ok(at >= 0);
  const ulong = Buffer.concat([small.subarray(0, at + 1), Buffer.from([0x80, 0, 0, 0, 0, 0, 0, 0, 0x73]), small.subarray(at + 3)]);
  const sym = Buffer.concat([
    small.subarray(0, at + 1),
    Buffer.from([0xa3, 20]),
    Buffer.from('amqp:properties:list', 'latin1'),
    small.subarray(at + 3),
  ]);
  assert.equal(scanMessage(ulong, 128), { to: 'the/address' });
  assert.equal(scanMessage(sym, 128), { to: 'the/address' });
  assert.is(codec.decode(ulong).to, 'the/address', 'rhea reads it so too');
});

t('a message cut short anywhere inside a section is refused, naming where', () => {
  for (const buf of samples().slice(1, 4)) {
    // Where each section starts: a cut there leaves a shorter but whole message.
    const starts = new Set<number>();
    for (let pos = 0; pos < buf.length; ) {
      starts.add(pos);
      const rest = buf.subarray(pos);
      let len = rest.length;
      for (let n = 1; n <= rest.length; n++) {
        try {
          scanMessage(rest.subarray(0, n), 128);
          len = n;
          break;
        } catch {
          /* not a whole section yet */
        }
      }
      pos += len;
    }
    for (let cut = 1; cut < buf.length; cut++) {
      if (starts.has(cut)) continue;
      assert.throws(
        () => scanMessage(buf.subarray(0, cut), 128),
        (e: Error) => e instanceof RangeError && / at byte \d+ of a \d+-byte message$/.test(e.message),
        `cut at ${cut} of ${buf.length}`,
      );
    }
  }
});

t('unknown constructors, sizes past the end, odd maps and short compounds are refused', () => {
  const refuse = (hex: string, why: RegExp) =>
    assert.throws(
      () => scanMessage(Buffer.from(hex.replace(/ /g, ''), 'hex'), 128),
      (e: Error) => e instanceof RangeError && why.test(e.message),
      hex,
    );
  refuse('00 53 77 ff', /unknown AMQP type constructor 0xff at byte 3/);
  refuse('00 53 77 a1 05 61 62', /runs past its end/);
  refuse('00 53 77 b1 ff ff ff ff 61', /runs past its end/);
  refuse('00 53 77 c1 03 01 a1 00', /odd number of items/);
  refuse('00 53 77 c0 04 02 40 40 40', /does not fill its size/);
  refuse('00 53 77 c0 02 03 40', /runs past its end|is missing/);
  refuse('00 53 77 e0 03 02 71 00', /runs past its end/);
  // The smallest valid forms pass.
  assert.equal(scanMessage(Buffer.from('005377c0010000537745', 'hex'), 128), {});
  assert.equal(scanMessage(Buffer.alloc(0), 128), {});
});

/** An AMQP value section holding a list nested `depth` deep (list32 at each level). */
function deepList(depth: number): Buffer {
  const out = Buffer.alloc(3 + depth * 9 + 1);
  out.set([0x00, 0x53, 0x77], 0);
  for (let i = 0; i < depth; i++) {
    const o = 3 + i * 9;
    out[o] = 0xd0;
    out.writeUInt32BE((depth - i - 1) * 9 + 1 + 4, o + 1);
    out.writeUInt32BE(1, o + 5);
  }
  out[out.length - 1] = 0x40;
  return out;
}

t('nesting: up to maxDepth levels pass, one more is refused, 100,000 is refused without recursion trouble', () => {
  assert.equal(scanMessage(deepList(128), 128), {});
  assert.is(codec.decode(deepList(128)) !== undefined, true, 'rhea decodes it too');
  assert.throws(() => scanMessage(deepList(129), 128), /nested deeper than 128 levels/);
  assert.throws(() => scanMessage(deepList(100_000), 128), /nested deeper than 128 levels/);
});

const hex = (h: string) => Buffer.from(h.replace(/ /g, ''), 'hex');
/** A message of one properties section (descriptor `desc`, list of `fields`), then an amqp-value null. */
const withProperties = (desc: string, fields: string[]) => {
  const body = hex(fields.join(''));
  return Buffer.concat([hex(`00 ${desc} c0`), Buffer.from([body.length + 1, fields.length]), body, hex('00 53 77 40')]);
};

t('an array of 4 billion zero-width elements in 13 bytes is checked at once, not walked', () => {
  const t0 = performance.now();
  assert.equal(scanMessage(hex('00 53 77 f0 00000005 fffffff0 40'), 128), {});
  assert.equal(scanMessage(hex('00 53 77 f0 00000005 fffffff0 45'), 128), {});
  assert.ok(performance.now() - t0 < 50, `took ${performance.now() - t0} ms`);
  assert.throws(() => scanMessage(hex('00 53 77 f0 00000006 fffffff0 40 40'), 128), /does not fill its size/);
});

t('`to` as rhea reads it: the last properties section wins, a null to changes nothing, symbols are ASCII, every descriptor form', () => {
  const first = withProperties('53 73', ['40', '40', 'a1 05 6669727374']);
  const second = withProperties('53 73', ['40', '40', 'a1 06 7365636f6e64']);
  const nullTo = withProperties('53 73', ['40', '40', '40']);
  for (const buf of [Buffer.concat([first, second]), Buffer.concat([first, nullTo]), Buffer.concat([nullTo, first])]) {
    assert.equal(scanMessage(buf, 128), { to: codec.decode(buf).to }, buf.toString('hex'));
  }
  const forms = ['52 73', '70 00000073', 'b3 00000014 616d71703a70726f706572746965733a6c697374'];
  for (const desc of forms) {
    const buf = withProperties(desc, ['40', '40', 'a1 01 61']);
    assert.equal(scanMessage(buf, 128), { to: 'a' }, desc);
    assert.is(codec.decode(buf).to, 'a', `rhea too: ${desc}`);
  }
  const sym = withProperties('53 73', ['40', '40', 'a3 01 e1']);
  assert.equal(scanMessage(sym, 128), { to: codec.decode(sym).to });
  // A described array element constructor, described twice.
  assert.equal(scanMessage(hex('00 53 77 e0 0a 02 00 53 01 00 53 02 50 07 08'), 128), {});
});

/** A message with a header section of `desc` (descriptor hex) and `fields`, and a body. */
const withHeader = (desc: string, fields: string[]) => {
  const list = hex(fields.join(''));
  return Buffer.concat([hex(`00 ${desc} c0`), Buffer.from([list.length + 1, fields.length]), list, hex('00 53 77 a1 01 62')]);
};

t(
  '`ttl`: a uint or smalluint in any header descriptor form, 0 as none, the last header wins; withTtl writes a smaller one in place',
  () => {
    const forms = ['53 70', '52 70', '70 00000070', '80 0000000000000070', 'a3 10 616d71703a6865616465723a6c697374'];
    for (const desc of forms) {
      const wide = withHeader(desc, ['40', '40', '70 00007530']);
      const scanned = scanMessage(wide, 128);
      assert.is(scanned.ttl, 30_000, desc);
      assert.is((codec.decode(wide) as { ttl?: number }).ttl, 30_000, `rhea reads it so too: ${desc}`);
      const reduced = withTtl(wide, scanned.ttlAt!, 1234);
      assert.is((codec.decode(reduced) as { ttl?: number }).ttl, 1234, desc);
      assert.is(reduced.length, wide.length);
      assert.is(
        (codec.decode(wide) as { ttl?: number }).ttl,
        30_000,
        'the original is left as it was (a multicast copy may still need it)',
      );
    }
    const small = withHeader('53 70', ['42', '50 04', '52 c8', '41']);
    const s = scanMessage(small, 128);
    assert.is(s.ttl, 200);
    assert.is((codec.decode(withTtl(small, s.ttlAt!, 7)) as { ttl?: number }).ttl, 7);
    for (const none of [
      ['40', '40', '43'],
      ['40', '40', '40'],
      ['40', '40'],
      ['40', '40', '80 0000000000000005'],
    ]) {
      assert.is(scanMessage(withHeader('53 70', none), 128).ttl, undefined, none.join(' '));
    }
    const twice = Buffer.concat([withHeader('53 70', ['40', '40', '52 05']), withHeader('53 70', ['40', '40', '70 00000009'])]);
    assert.is(scanMessage(twice, 128).ttl, 9);
  },
);

t(
  'a `to` only rhea reads (a number, a described string, the section as an array) makes the message odd, and the router decodes those with rhea',
  () => {
    const odd = [
      withProperties('53 73', ['40', '40', '52 05']),
      withProperties('53 73', ['40', '40', '00 53 01 a1 01 61']),
      hex('00 53 73 e0 08 03 a1 01 78 01 79 01 7a 00 53 77 40'),
    ];
    for (const buf of odd) assert.equal(scanMessage(buf, 128), { odd: true }, buf.toString('hex'));
    installRawDecode();
    let decoded: { to?: unknown } | undefined;
    const conn = {
      on_transfer(frame: Buffer) {
        decoded = codec.decode(frame);
      },
    };
    scanInsteadOfDecode(conn as never, 128);
    for (const buf of odd) {
      conn.on_transfer(buf);
      assert.equal(decoded?.to, codec.decode(buf).to, `rhea's to for ${buf.toString('hex')}`);
      assert.ok(decoded?.to !== undefined);
      assert.is(rawBytes(decoded!), buf);
    }
    const clean = withProperties('53 73', ['40', '40', 'a1 01 61']);
    conn.on_transfer(clean);
    assert.equal({ ...decoded }, { to: 'a' }, 'scanned, not decoded: only to');
    decoded = codec.decode(clean);
    assert.ok('body' in decoded!, 'outside a scanning connection, a full decode');
  },
);

t.run();
