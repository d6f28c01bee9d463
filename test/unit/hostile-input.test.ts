import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { logSafe, MAX_LOG_FIELD, MAX_LOG_MESSAGE, MAX_LOG_TOKEN, makeLogger } from '../../src/cli/log.js';
import { findPrototypeKey } from '../../src/core/plain.js';
import { decodeRequest } from '../../src/driver/amqp1/wire.js';
import { peek } from '../../src/driver/envelope.js';
import { Topology } from '../../src/driver/rabbit/topology.js';
import { splitIncoming } from '../../src/driver/rabbit/wire.js';
import { defaultConfig, parseTransportUrl, redactUrl } from '../../src/index.js';
import { parseRequest, RPCDispatcher } from '../../src/rpc/dispatcher.js';
import { heartbeatInterval, MAX_HEARTBEAT_INTERVAL_MS } from '../../src/rpc/request.js';
import { rejects } from '../support/assert.js';

// What a hostile peer sends, checked piece by piece. The same attacks run end to end against
// every driver in test/in-process/hostile-*.test.ts and test/integration/hostile-*.test.ts.
const t = suite('hostile input');

t("heartbeat interval: oslo's int(N)/2 s, none below 1 s, bounded above, nonsense = no monitor", () => {
  assert.is(heartbeatInterval(2000), 1000);
  assert.is(heartbeatInterval(2999), 1000, 'int(2.999) = 2');
  assert.is(heartbeatInterval(60_000), 30_000);
  assert.is(heartbeatInterval(1999), undefined, 'int(1.999)/2 < 1 s');
  assert.is(heartbeatInterval(1), undefined, '_timeout 0.001');
  assert.is(heartbeatInterval(10), undefined);
  assert.is(heartbeatInterval(10 * 86_400_000), MAX_HEARTBEAT_INTERVAL_MS, 'ten days: hourly');
  for (const nonsense of [0, -5000, Number.NaN, Number.POSITIVE_INFINITY, 1e10, 1e300, '60000', null, undefined, {}]) {
    assert.is(heartbeatInterval(nonsense), undefined, String(nonsense));
  }
});

t('prototype keys: a polluted Object.prototype is not walked as the data (an object-valued key there once looped forever)', () => {
  const proto = Object.prototype as Record<string, unknown>;
  proto.polluted = { a: 1 };
  try {
    assert.is(findPrototypeKey(JSON.parse('{"a":{"b":1},"c":[{"d":2}]}'), 'args'), undefined);
    assert.is(findPrototypeKey(JSON.parse('{"a":{"__proto__":{}}}'), 'args'), 'args.a.__proto__');
  } finally {
    delete proto.polluted;
  }
});

t('prototype keys: found at any depth, in arrays, and constructor.prototype; plain data passes', () => {
  const parsed = JSON.parse('{"a":1,"b":[{"c":{"__proto__":{"x":1}}}]}');
  assert.is(findPrototypeKey(parsed, 'args'), 'args.b[0].c.__proto__');
  assert.is(findPrototypeKey(JSON.parse('{"constructor":{"prototype":{"x":1}}}'), 'p'), 'p.constructor.prototype');
  assert.is(findPrototypeKey(Object.setPrototypeOf({}, { a: 1 }), 'ctx'), 'ctx', 'an object with a foreign prototype');
  assert.is(findPrototypeKey({ a: [1, 'x', null, { b: { constructor: 'fine', prototype: 'fine' } }] }, 'p'), undefined);
  // Deeper than the call stack: refused by path, never a RangeError.
  let deep: unknown = JSON.parse('{"__proto__":{}}');
  for (let i = 0; i < 100_000; i++) deep = [deep];
  assert.ok(findPrototypeKey(deep, 'd')?.endsWith('[0].__proto__'));
});

t('a request with __proto__ in its args, at its top or in its context is refused; args are own data', async () => {
  const d = new RPCDispatcher([
    {
      async add(_ctx: unknown, args: { a: number; b: number }) {
        return args.a + args.b;
      },
      async keys(_ctx: unknown, args: object) {
        return { keys: Object.keys(args), proto: Object.getPrototypeOf(args) === Object.prototype };
      },
    },
  ]);
  const msg = JSON.parse('{"method":"add","args":{"__proto__":{"a":40,"b":2}}}');
  await rejects(() => parseRequest(msg), 'HERMOD_ERR_MALFORMED_MESSAGE', /request\.args\.__proto__ would set a prototype/);
  await rejects(() => parseRequest(JSON.parse('{"__proto__":{"method":"add"}}')), 'HERMOD_ERR_MALFORMED_MESSAGE');
  const ok = parseRequest({ method: 'keys', args: { a: 1, b: 2 } });
  await rejects(d.dispatch(JSON.parse('{"__proto__":{"is_admin":true}}'), ok), 'HERMOD_ERR_MALFORMED_MESSAGE', /context\.__proto__/);
  assert.equal(await d.dispatch({}, ok), { keys: ['a', 'b'], proto: true });
  assert.is(({} as Record<string, unknown>).a, undefined, 'Object.prototype stays clean');
});

t('rabbit: _context___proto__ and a top-level __proto__ never set a prototype', () => {
  const data = JSON.parse('{"method":"add","args":{},"_context___proto__":{"is_admin":true},"__proto__":{"x":1},"_context_user":"u"}');
  const parts = splitIncoming(data);
  assert.is(Object.getPrototypeOf(parts.ctx), Object.prototype);
  assert.is(Object.getPrototypeOf(parts.message), Object.prototype);
  assert.is((parts.ctx as { is_admin?: unknown }).is_admin, undefined);
  assert.equal(Object.keys(parts.ctx), ['__proto__', 'user']);
  assert.is(findPrototypeKey(parts.ctx, 'context'), 'context.__proto__', 'which the dispatcher then refuses');
  assert.equal(Object.keys(parts.message), ['method', 'args'], 'a top-level __proto__ is an _-prefixed transport key: not copied');
});

t('log lines: control characters escaped, long runs and long lines capped, JSON fields too', () => {
  const forged = 'x\n2030-01-01T00:00:00.000Z INFO  rpc-server s1: call add ok 0.1ms\u001b[2J\u009b\u202e';
  const safe = logSafe(`call ${forged} error`);
  for (const c of ['\n', '\r', '\u001b', '\u009b', '\u202e']) assert.not.ok(safe.includes(c), JSON.stringify(c));
  assert.match(safe, /x\\n2030-01-01T00:00:00\.000Z INFO {2}rpc-server s1: call add ok 0\.1ms\\u001b\[2J\\u009b\\u202e error$/);
  // Invisible format characters too (a byte-order mark, zero-width and direction marks): a peer's
  // text must read as what it is.
  assert.is(logSafe('\ufeff{"a":1}\u200b\u200f\u2066x'), '\\ufeff{"a":1}\\u200b\\u200f\\u2066x');
  const huge = logSafe(`call ${'m'.repeat(1 << 20)} NoSuchMethod ok`);
  assert.ok(huge.length <= MAX_LOG_TOKEN + 40, `${huge.length} chars`);
  assert.match(huge, /^call m+…\[\+1048376 chars\] NoSuchMethod ok$/);
  assert.ok(logSafe('a '.repeat(1 << 20)).length <= MAX_LOG_MESSAGE + 30, 'a long line of short words is capped too');

  const out: string[] = [];
  const write = process.stdout.write;
  process.stdout.write = ((s: string) => out.push(s)) as never;
  try {
    for (const json of [false, true]) {
      const config = defaultConfig();
      config.log.json = json;
      makeLogger(config, 'rpc-server s1').info(`call ${forged} ok`, { method: forged, big: 'b'.repeat(1 << 20), n: 3 });
    }
  } finally {
    process.stdout.write = write;
  }
  assert.is(out.length, 2);
  for (const line of out) {
    assert.is(line.indexOf('\n'), line.length - 1, 'one line');
    for (const c of ['\u001b', '\u009b', '\u202e']) assert.not.ok(line.includes(c), JSON.stringify(c));
    assert.ok(line.length < 1000, `${line.length} chars`);
  }
  const j = JSON.parse(out[1]!);
  assert.is(j.n, 3);
  assert.match(j.method, /^x\\n2030/);
  assert.ok(j.big.length < 300);
  // The marker says how much was hidden: the field's cut chopped the token's marker, and a
  // 1,000,001-character method name was said to hide 16 characters.
  assert.is(j.big, `${'b'.repeat(MAX_LOG_FIELD)}…[+${(1 << 20) - MAX_LOG_FIELD} chars]`);
  assert.is(logSafe('m'.repeat(1_000_001), MAX_LOG_FIELD), `${'m'.repeat(MAX_LOG_FIELD)}…[+999801 chars]`);
  // Text and long runs together: what is shown of the escaped text, and the count of the rest.
  const mixed = `${'w '.repeat(40)}${'t'.repeat(500)} end`;
  const shown = logSafe(mixed, MAX_LOG_FIELD);
  assert.is(shown, `${'w '.repeat(40)}${'t'.repeat(MAX_LOG_FIELD - 80)}…[+${mixed.length - MAX_LOG_FIELD} chars]`);
  // A message of long runs: each run's own marker while it fits, then the line's.
  const tokens = Array.from({ length: 20 }, (_, i) => String(i).padEnd(250, 'x'));
  const runs = tokens.join(' ');
  const whole = tokens.slice(0, 9).map((tok) => `${tok.slice(0, MAX_LOG_TOKEN)}…[+50 chars] `);
  const rest = MAX_LOG_MESSAGE - whole.join('').length;
  assert.is(logSafe(runs), `${whole.join('')}${tokens[9]!.slice(0, rest)}…[+${runs.length - 9 * 251 - rest} chars]`);
});

t('transport URLs: no part of a mistyped password is echoed', async () => {
  const cases = [
    ['rabbit://guest:Pw0rd/XYZ@127.0.0.1:5759/', ['Pw0rd', 'XYZ']],
    ['rabbit://guest:Pw0?rdXYZ@127.0.0.1:5759/', ['Pw0', 'rdXYZ']],
    ['rabbit://guest:Pw0,rdXYZ@127.0.0.1:5759/', ['Pw0', 'rdXYZ']],
    ['rabbit://guest:Pw0,rd:5672@127.0.0.1:5759/', ['Pw0', 'rd:5672']],
    ['rabbit://a:ok@h1,guest:Pw0/rdQ?XYZ@h2/', ['Pw0', 'rdQ', 'XYZ']],
    ['amqp://guest:Pw0rd/?XYZ@127.0.0.1/', ['Pw0rd', 'XYZ']],
  ] as const;
  for (const [url, secrets] of cases) {
    const err = await rejects(() => parseTransportUrl(url), 'HERMOD_ERR_CONFIG', /ambiguous credentials: percent-encode/);
    for (const s of secrets) assert.not.ok(err.message.includes(s), `${url}: "${err.message}" shows ${s}`);
    const shown = redactUrl(url);
    for (const s of secrets) assert.not.ok(shown.includes(s), `${url}: redacted as ${shown}`);
    const inText = redactUrl(`error: cannot use ${url} today`);
    for (const s of secrets) assert.not.ok(inText.includes(s), inText);
  }
  assert.is(redactUrl('guest:Pw0rd/XYZ@127.0.0.1:5759/'), 'guest:****@127.0.0.1:5759/');
  // Encoded, the same passwords are fine; '#' and '@' inside one need no encoding.
  assert.is(parseTransportUrl('rabbit://guest:Pw0rd%2FXYZ@127.0.0.1:5759/').hosts[0]!.password, 'Pw0rd/XYZ');
  assert.is(parseTransportUrl('rabbit://guest:p@s#s@h/').hosts[0]!.password, 'p@s#s');
  assert.is(redactUrl('rabbit://guest:p@s#s@h/v'), 'rabbit://guest:****@h/v');
  assert.is(redactUrl('rabbit://u1:p1@h1,u2:p2@h2:5673/v?heartbeat=3'), 'rabbit://u1:****@h1,u2:****@h2:5673/v?heartbeat=3');
});

t('an oversized body is never parsed to find its reply address', () => {
  const calls: number[] = [];
  const parse = JSON.parse;
  JSON.parse = ((text: string, ...rest: never[]) => {
    calls.push(text.length);
    return parse(text, ...rest);
  }) as typeof JSON.parse;
  let addr: Record<string, unknown> | undefined;
  try {
    const inner = JSON.stringify({
      method: 'echo',
      args: { v: 'y'.repeat(4 << 20) },
      _unique_id: 'u',
      _msg_id: 'abc123',
      _reply_q: 'reply_def',
    });
    const body = Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': inner }));
    addr = peek(body);
    const rheaBody = Buffer.from(JSON.stringify({ request: { method: 'echo', args: { v: 'y'.repeat(4 << 20) } }, context: {} }));
    try {
      decodeRequest(rheaBody, 1 << 20);
      assert.unreachable('not refused');
    } catch (err) {
      assert.is((err as { code?: string }).code, 'HERMOD_ERR_MESSAGE_TOO_LARGE');
    }
  } finally {
    JSON.parse = parse;
  }
  assert.equal(calls, [], `JSON.parse saw ${calls.join(', ')} chars`);
  assert.equal(addr, { _msg_id: 'abc123', _reply_q: 'reply_def' });
  assert.equal(peek(Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': '{"_msg_id":"m","_reply_q":"q"}' }))), {
    _msg_id: 'm',
    _reply_q: 'q',
  });
});

t('rabbit.serverQueueTtl: x-expires on <topic>.<server> only, nothing when off', () => {
  const on = new Topology({ ...defaultConfig().rabbit, serverQueueTtl: 60_000 }).serverBindings('openstack', 'compute', 'h1');
  assert.equal(
    on.map((b) => [b.queue.replace(/_[0-9a-f]{32}$/, '_<uuid>'), b.options.arguments?.['x-expires']]),
    [
      ['compute', undefined],
      ['compute.h1', 60_000],
      ['compute_fanout_<uuid>', 1_800_000],
    ],
  );
  const off = new Topology(defaultConfig().rabbit).serverBindings('openstack', 'compute', 'h1');
  assert.equal(off[1]!.options, off[0]!.options, "off: the server queue is declared exactly as oslo's");
});

t.run();
