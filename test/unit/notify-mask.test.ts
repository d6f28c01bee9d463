// The log notification driver's masking against oslo.utils' mask_dict_password, which oslo's
// LogDriver applies: the same messages go through both, and the masked strings must agree.
// Before, hermod masked by key name only: `"msg": "login failed password=P4"` was logged in clear.
import { execFileSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { maskPassword } from '../../src/notify/notifier.js';

const CASES = [
  'login failed password=P4 for bob',
  '{"password": "P10"}',
  "{'adminPass': 'aaaaa'}",
  "'original_password' : 'aaaaa'",
  '--password d81juxmEW_ --user admin',
  '<password>s3cr3t</password> <user>u</user>',
  'token = "abc def"',
  "auth_token='xyz'",
  'rabbitcookie=QWERTY; next',
  'PASSWORD1=Up',
  'no secrets here, just a passage',
  'secret_uuid "1234"',
  '"private_key": "-----BEGIN KEY-----\\nabc\\n-----END KEY-----"',
];

test("secrets written inside strings are masked as oslo.utils' mask_password masks them", () => {
  const script =
    'import json, sys\nfrom oslo_utils import strutils\nprint(json.dumps([strutils.mask_password(m) for m in json.load(sys.stdin)]))';
  const python = JSON.parse(execFileSync('/usr/bin/python3', ['-c', script], { input: JSON.stringify(CASES) }).toString()) as string[];
  assert.equal(CASES.map(maskPassword), python);
  assert.ok(
    python.some((m, i) => m !== CASES[i]),
    'something was masked',
  );
});

test.run();
