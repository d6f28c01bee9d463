// The routing driver's globs against Python's fnmatch, which oslo's routing driver matches with:
// the same patterns and names go through both, and every answer must agree.
import { execFileSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { glob } from '../../src/notify/notifier.js';

const CASES: Array<[string, string]> = [
  ['compute.instance.*', 'compute.instance.create.end'],
  ['compute.instance.*', 'network.create'],
  ['*.end', 'compute.instance.create.end'],
  ['compute.[!a]*', 'compute.bx'],
  ['compute.[!a]*', 'compute.ax'],
  ['a[b', 'a[b'], // a `[` that opens no class: before, a raw SyntaxError from the notifier
  ['[]]x', ']x'],
  ['[!]]', 'a'],
  ['[!]]', ']'],
  ['[!]x', '[!]x'],
  ['[a-c]x', 'bx'],
  ['[a-c]x', 'dx'],
  ['[c-a]', 'b'],
  ['x[^y]', 'x^'],
  ['x[^y]', 'xz'],
  ['[\\]]', '\\'],
  ['a\\b', 'a\\b'],
  ['a-b.(c)+{d}|$', 'a-b.(c)+{d}|$'],
  ['a?c', 'abc'],
  ['a?c', 'ac'],
  ['a*b', 'a\nb'],
  ['INFO', 'info'],
  // Reversed ranges: Python drops the range and keeps the rest of the class.
  ['[c-ax]', 'x'],
  ['[c-ax]', 'b'],
  ['[z-a0-9]', '5'],
  ['[!c-ax]', 'q'],
  ['[!c-ax]', 'x'],
  ['[a-]', '-'],
  ['[-a]', '-'],
  ['[a-c-e]', 'd'],
  ['[a-c-e]', '-'],
  ['[]-a]', 'Z'],
  ['[!]-a]', 'b'],
  ['[^a]', '^'],
  ['[[a]', '['],
  // Stars, matched without backtracking: the first took about a second as a regular expression.
  ['*a*a*a*a*a*a*a*a*a*a*a*a*b', 'a'.repeat(32)],
  ['*a*a*a*a*a*a*a*a*a*a*a*a*b', `${'a'.repeat(31)}b`],
  ['*a*a*b', 'xaxaxb'],
  ['*', ''],
  ['**', 'x'],
  ['a*', 'a'],
  ['*x', 'x'],
  ['a*b*c', 'abc'],
  ['a*b*c', 'abxc'],
  ['a*b*c', 'acb'],
  ['a*b*c', 'abcbc'],
  ['?*?', 'a'],
  ['?*?', 'ab'],
  ['[ab]*[cd]', 'acd'],
  ['*.*.end', 'a.b.end'],
  ['*.*.end', 'a.end'],
  ['*ab', 'aab'],
  ['*aab*', 'aaab'],
];

test("routing globs answer as Python's fnmatch does", () => {
  const script = 'import fnmatch, json, sys\nprint(json.dumps([fnmatch.fnmatchcase(n, p) for p, n in json.load(sys.stdin)]))';
  const python = JSON.parse(execFileSync('python3', ['-c', script], { input: JSON.stringify(CASES) }).toString()) as boolean[];
  const ours = CASES.map(([p, n]) => glob(p).test(n));
  assert.equal(
    CASES.map(([p, n], i) => `${p} ${JSON.stringify(n)} ${ours[i]}`),
    CASES.map(([p, n], i) => `${p} ${JSON.stringify(n)} ${python[i]}`),
  );
});

test.run();
