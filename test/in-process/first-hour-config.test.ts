// "Suggest only close matches" (issue #13, "Config messages"), for every configuration surface:
// the hermod options, the gateway's, the run file's and hermod's commands. A key far from every
// known one gets no "did you mean"; a typo still gets its key.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfig } from '../../src/config/index.js';
import { resolveGatewayConfig } from '../../src/gateway/index.js';
import { parseRunSpec } from '../../src/ops/run/config.js';
import { rejects } from '../support/assert.js';

const HERMOD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'hermod.js');
const ok = { endpoints: './ep.js', topic: 'compute' };

test('hermod options: bogus gets no suggestion, a typo gets its key', async () => {
  const bogus = await rejects(
    () => loadConfig({ env: {}, overrides: { bogus: 1 } }),
    'HERMOD_ERR_CONFIG',
    /unknown configuration key 'bogus'/,
  );
  assert.not.match(bogus.message, /did you mean/);
  await rejects(
    () => loadConfig({ env: {}, overrides: { 'rabit.heartbeat': 1 } }),
    'HERMOD_ERR_CONFIG',
    /did you mean 'rabbit\.heartbeat'/,
  );
});

test('gateway configuration: bogus gets no suggestion, a typo gets its key', async () => {
  const bogus = await rejects(
    () => resolveGatewayConfig({ bogus: 1 }),
    'HERMOD_ERR_CONFIG',
    /unknown gateway configuration key 'bogus' \(from options\)$/,
  );
  assert.not.match(bogus.message, /did you mean/);
  const route = await rejects(
    () => resolveGatewayConfig({ routes: [{ topic: 't', method: 'm', xyzzy: 1 }] }),
    'HERMOD_ERR_CONFIG',
    /unknown gateway configuration key 'routes\[0\]\.xyzzy'/,
  );
  assert.not.match(route.message, /did you mean/);
  await rejects(() => resolveGatewayConfig({ bodyLimt: 1 }), 'HERMOD_ERR_CONFIG', /'bodyLimt'.*did you mean 'bodyLimit'\?/);
});

test('run file: bogus gets no suggestion, in the file and in its hermod options', async () => {
  const top = await rejects(
    () => parseRunSpec({ bogus: 1, services: { a: ok } }, 'h.json'),
    'HERMOD_ERR_CONFIG',
    // No guess for a far-off key: the keys it could have meant instead.
    /h\.json: unknown key 'bogus' \(known keys: [^)]*services[^)]*\)$/,
  );
  assert.not.match(top.message, /did you mean/);
  const inner = await rejects(
    () => parseRunSpec({ services: { a: { ...ok, config: { bogus: 1 } } } }, 'h.json'),
    'HERMOD_ERR_CONFIG',
    /unknown configuration key 'bogus' \(hermod run --help-config lists them\)/,
  );
  assert.not.match(inner.message, /did you mean/);
  await rejects(() => parseRunSpec({ servics: {} }, 'h.json'), 'HERMOD_ERR_CONFIG', /did you mean 'services'\?/);
});

test('hermod <command>: an unknown one lists the commands, a typo gets its command; exit 2', () => {
  const bogus = spawnSync(process.execPath, [HERMOD, 'bogus'], { encoding: 'utf8', timeout: 15_000 });
  assert.is(bogus.status, 2, bogus.stderr);
  assert.match(bogus.stderr, /unknown command 'bogus' \(commands: run, status/);
  assert.not.match(bogus.stderr, /did you mean/);
  const typo = spawnSync(process.execPath, [HERMOD, 'statsu'], { encoding: 'utf8', timeout: 15_000 });
  assert.is(typo.status, 2);
  assert.match(typo.stderr, /unknown command 'statsu'; did you mean 'status'\?/);
});

test.run();
