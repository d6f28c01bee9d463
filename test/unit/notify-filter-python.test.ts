// NotificationFilter's string rules against Python's re, which oslo's NotificationFilter
// compiles them with: the same patterns and values go through both, and every answer must agree.
// Before, `\A` and `\Z` were the letters A and Z, `$` did not match before a final newline, and
// `\w` was ASCII only, so filters written for oslo let through or held back other notifications.
import { execFileSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { NotificationFilter } from '../../src/notify/filter.js';

const CASES: Array<[string, string]> = [
  ['compute\\.end\\Z', 'compute.end'],
  ['compute\\.end\\Z', 'compute.endZ'],
  ['compute\\.end\\Z', 'compute.end\n'],
  ['\\Acompute', 'compute.end'],
  ['\\Acompute', 'Acompute'],
  ['\\w+$', 'hôte'],
  ['\\w+$', 'hôte\n'],
  ['compute\\.end$', 'compute.end\n'],
  ['compute\\.end$', 'compute.end\n\n'],
  ['\\d+$', '١٢٣'],
  ['x\\b', 'xé'],
  ['x\\b', 'x-'],
  ['\\bété', 'été'],
  ['a\\:b\\#', 'a:b#'],
  ['a{b', 'a{b'],
  ['a{2}', 'aa'],
  ['a{,2}b', 'aab'],
  ['x}', 'x}'],
  ['[]a]+', ']a]'],
  ['[^]a]', 'b'],
  ['(?P<n>ab)(?P=n)', 'abab'],
  ['(?P<n>ab)(?P=n)', 'abac'],
  ['^compute\\.instance\\..*', 'compute.instance.create.end'],
  ['end', 'the end'],
  ['[\\w.]+\\Z', 'nova-compute.host_1'],
  ['[\\d]+', '٣'],
  ['\\W', 'é'],
  ['\\W', '!'],
  // `.`, `\s` and `\S` as Python's (a review found `a\rb`, `a\x85b` and `a\x1fb` answered otherwise).
  ['^a.b$', 'a\rb'],
  ['^a.b$', 'a\u2028b'],
  ['^a.b$', 'a\u2029b'],
  ['^a.b$', 'a\nb'],
  ['^a\\sb$', 'a\x85b'],
  ['^a\\sb$', 'a\x1cb'],
  ['^a\\sb$', 'a\ufeffb'],
  ['^a\\Sb$', 'a\x1fb'],
  ['^a\\Sb$', 'a\ufeffb'],
  ['^a[\\s]b$', 'a\x1eb'],
  ['^a\\s+b$', 'a \t\u3000b'],
];

test("string rules answer as Python's re.match does", () => {
  const script = 'import json, re, sys\nprint(json.dumps([bool(re.compile(p).match(v)) for p, v in json.load(sys.stdin)]))';
  const python = JSON.parse(execFileSync('python3', ['-c', script], { input: JSON.stringify(CASES) }).toString()) as boolean[];
  const ours = CASES.map(([p, v]) => new NotificationFilter({ eventType: p }).match({}, 'p', v, {} as never, {}));
  assert.equal(
    CASES.map(([p, v], i) => `${p} ${JSON.stringify(v)} ${ours[i]}`),
    CASES.map(([p, v], i) => `${p} ${JSON.stringify(v)} ${python[i]}`),
  );
});

test('a payload rule needs an own key of a plain object, as Python finds no such key in a list', () => {
  assert.not.ok(new NotificationFilter({ payload: { '0': '^x' } }).match({}, 'p', 'e', {} as never, ['xyz']));
  assert.not.ok(new NotificationFilter({ payload: { constructor: '' } }).match({}, 'p', 'e', {} as never, {}));
  assert.ok(new NotificationFilter({ payload: { '0': '^x' } }).match({}, 'p', 'e', {} as never, { '0': 'xyz' }));
  // A RegExp is the caller's own JavaScript, unchanged.
  assert.ok(new NotificationFilter({ eventType: /\w+$/u }).match({}, 'p', 'abc', {} as never, {}));
});

test.run();
