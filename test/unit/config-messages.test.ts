// Config messages a new user meets (issue #13 "Config messages"): every duration key takes the
// documented forms, "did you mean" only for close typos, each bad value named once with its
// source, and transport URLs checked host:port by host:port before anything is dialled.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { closeKey, loadConfig, OPTIONS } from '../../src/config/index.js';
import { parseTransportUrl } from '../../src/config/transport-url.js';
import { parseConfigJson } from '../../src/core/json.js';
import { rejects } from '../support/assert.js';

const t = suite('config messages');
const load = (overrides: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) => loadConfig({ env, overrides });

t('every duration key takes 30s, 2m and a bare number in its unit', () => {
  const durations = OPTIONS.filter(
    ([, o]) => o.format === 'duration-ms' || o.format === 'duration-ms-positive' || o.format === 'duration-s',
  );
  assert.ok(
    durations.some(([k]) => k === 'rabbit.heartbeat'),
    'rabbit.heartbeat is a duration key',
  );
  for (const [key, o] of durations) {
    const perSecond = o.format === 'duration-s' ? 1 : 1000;
    const get = (v: unknown) => key.split('.').reduce<unknown>((n, p) => (n as Record<string, unknown>)[p], load({ [key]: v }));
    assert.is(get('30s'), 30 * perSecond, `${key}=30s`);
    assert.is(get('2m'), 120 * perSecond, `${key}=2m`);
    assert.is(get('1h'), 3600 * perSecond, `${key}=1h`);
    assert.is(get('7'), 7, `${key}=7 counts in the key's own unit`);
  }
  // The environment and transport-URL query options go through the same parsing.
  assert.is(loadConfig({ env: { HERMOD_RABBIT_HEARTBEAT: '1m' } }).rabbit.heartbeat, 60);
  assert.is(parseTransportUrl('rabbit://h/?heartbeat=30s').options['rabbit.heartbeat'], '30s');
});

t(
  'config files: a key given twice is refused with its path and line, a byte order mark is skipped, a section of the wrong type is named as a section',
  async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'hermod-config-'));
    try {
      const file = (name: string, text: string) => {
        const f = path.join(dir, name);
        writeFileSync(f, text);
        return f;
      };
      // JSON.parse keeps the last of duplicate keys: rpc.retry was lost without a word.
      const twice = file('twice.json', '{\n  "rpc": { "retry": 0 },\n  "rpc": { "responseTimeout": 5000 }\n}\n');
      await rejects(() => loadConfig({ env: {}, files: [twice] }), 'HERMOD_ERR_CONFIG', /twice\.json: key rpc appears twice \(line 3\)/);
      const inner = file('inner.json', '{ "rpc": { "retry": 0, "retry": 2 } }');
      await rejects(() => loadConfig({ env: {}, files: [inner] }), 'HERMOD_ERR_CONFIG', /key rpc\.retry appears twice \(line 1\)/);
      // Dotted and nested in one file, or in one overrides object: the last silently won.
      const both = file('both.json', '{ "rpc": { "retry": 1 }, "rpc.retry": 2 }');
      await rejects(
        () => loadConfig({ env: {}, files: [both] }),
        'HERMOD_ERR_CONFIG',
        /configuration key rpc\.retry is given twice in file \S*both\.json \(dotted and nested, or repeated\)/,
      );
      await rejects(
        () => loadConfig({ env: {}, overrides: { 'rpc.retry': 1, rpc: { retry: 2 } } }),
        'HERMOD_ERR_CONFIG',
        /configuration key rpc\.retry is given twice in --config/,
      );
      // Bytes that are not UTF-8 (a file saved in Latin-1) were read as U+FFFD, another value.
      const latin1 = path.join(dir, 'latin1.json');
      writeFileSync(latin1, Buffer.concat([Buffer.from('{ "controlExchange": "caf'), Buffer.from([0xe9]), Buffer.from('" }')]));
      await rejects(
        () => loadConfig({ env: {}, files: [latin1] }),
        'HERMOD_ERR_CONFIG',
        /cannot read config file \S*latin1\.json: it is not UTF-8 text/,
      );
      // Windows editors save a BOM; it is not part of the JSON.
      const bom = file('bom.json', '\ufeff{ "rpc": { "retry": 4 } }');
      assert.is(loadConfig({ env: {}, files: [bom] }).rpc.retry, 4);
      for (const value of ['null', '[1, 2]', '5']) {
        const f = file('section.json', `{ "rpc": ${value} }`);
        await rejects(
          () => loadConfig({ env: {}, files: [f] }),
          'HERMOD_ERR_CONFIG',
          /configuration section 'rpc' \(from file .*\) must be an object of rpc\.\* options/,
        );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

t('parseConfigJson: duplicates in nested objects and arrays of objects, escaped keys, strings holding brackets', () => {
  assert.equal(parseConfigJson('{"a":[{"k":1},{"k":2}],"b":{"k":"}{[,\\"k\\""}}'), { a: [{ k: 1 }, { k: 2 }], b: { k: '}{[,"k"' } });
  assert.throws(() => parseConfigJson('{"a":[{"k":1},{"k":2,"k":3}]}'), /key a\[1\]\.k appears twice/);
  assert.throws(() => parseConfigJson('{"a":1,"\\u0061":2}'), /key a appears twice/);
  assert.throws(() => parseConfigJson('{"a":1,}'), SyntaxError);
});

t('a heartbeat is whole seconds: 1500ms is refused, saying so', async () => {
  await rejects(() => load({ 'rabbit.heartbeat': '1500ms' }), 'HERMOD_ERR_CONFIG', /rabbit\.heartbeat.*whole seconds.*"1500ms"/);
  assert.is(load({ 'rabbit.heartbeat': '2000ms' }).rabbit.heartbeat, 2);
  await rejects(() => load({ 'rabbit.heartbeat': 'soon' }), 'HERMOD_ERR_CONFIG', /rabbit\.heartbeat \(from --config\): must be a duration/);
});

t('a delay or timeout that cannot be 0 refuses 0 (a poll of 1 ms, a reconnect loop without pause); "0 = off" keys take it', async () => {
  const positive = OPTIONS.filter(([, o]) => o.format === 'duration-ms-positive').map(([k]) => k);
  for (const key of [
    'jobs.pollTimeout',
    'jobs.pollInterval',
    'jobs.pollMax',
    'rabbit.retryInterval',
    'amqp1.intervalMax',
    'rpc.responseTimeout',
  ])
    assert.ok(positive.includes(key), key);
  for (const key of positive) {
    await rejects(
      () => load({ [key]: '0' }),
      'HERMOD_ERR_CONFIG',
      new RegExp(`${key.replace('.', '\\.')} \\(from --config\\): must be a duration above 0, such as 500ms, 30s or 2m, got 0$`),
    );
    await rejects(() => load({ [key]: '0s' }), 'HERMOD_ERR_CONFIG', /above 0/);
  }
  assert.is(load({ 'rpc.callMonitorTimeout': 0, 'jobs.jobTimeout': '0' }).rpc.callMonitorTimeout, 0);
});

t('counts: a retry count takes -1 (forever) and no lower; a limit takes 0 and no lower', async () => {
  assert.is(load({ 'notifications.retry': '-1' }).notifications.retry, -1);
  await rejects(
    () => load({ 'notifications.retry': '-5' }),
    'HERMOD_ERR_CONFIG',
    /notifications\.retry .*must be -1 \(forever\), 0 \(none\) or a number of attempts, got -5/,
  );
  await rejects(() => load({ 'rpc.retry': -2 }), 'HERMOD_ERR_CONFIG', /rpc\.retry/);
  assert.is(load({ 'notifications.redeliveryLimit': 0 }).notifications.redeliveryLimit, 0);
  await rejects(() => load({ 'notifications.redeliveryLimit': '-7' }), 'HERMOD_ERR_CONFIG', /redeliveryLimit .*0 or more, got -7/);
  await rejects(() => load({ 'rabbit.quorumDeliveryLimit': -3 }), 'HERMOD_ERR_CONFIG', /quorumDeliveryLimit .*0 or more/);
});

t('getTransport overrides: nested or dotted, a mistake named as theirs (not --config)', async () => {
  const { getTransport } = await import('../../src/index.js');
  const { defaultConfig } = await import('../../src/config/index.js');
  const a = await getTransport('memory://cfg-nested', { overrides: { jobs: { resultTtl: 5000 } } });
  assert.is(a.config.jobs.resultTtl, 5000);
  await a.close();
  const b = await getTransport('memory://cfg-nested', {
    config: defaultConfig(),
    overrides: { jobs: { resultTtl: 7000 }, 'rpc.responseTimeout': 100 },
  });
  assert.equal([b.config.jobs.resultTtl, b.config.rpc.responseTimeout], [7000, 100]);
  await b.close();
  await rejects(
    () => getTransport('memory://cfg-nested', { overrides: { jobs: { resultTtll: 5 } } }),
    'HERMOD_ERR_CONFIG',
    /unknown configuration key 'jobs\.resultTtll' \(from getTransport overrides\); did you mean 'jobs\.resultTtl'/,
  );
  await rejects(
    () => getTransport('memory://cfg-nested', { config: defaultConfig(), overrides: { 'jobs.resultTtl': 'x' } }),
    'HERMOD_ERR_CONFIG',
    /jobs\.resultTtl \(from getTransport overrides\)/,
  );
});

t('a bad value in a transport URL query is reported from the URL', async () => {
  const { getTransport } = await import('../../src/index.js');
  await rejects(() => getTransport('rabbit://guest:guest@127.0.0.1:1/?retryInterval=0'), 'HERMOD_ERR_CONFIG', /\(from the transport URL\)/);
});

t('unknown keys: a close typo gets its key suggested, a far miss gets none', async () => {
  const close = await rejects(() => load({ 'rpc.responseTimout': 1 }), 'HERMOD_ERR_CONFIG');
  assert.match(close.message, /did you mean 'rpc\.responseTimeout'\?/);
  const section = await rejects(() => load({ heartbeat: 1 }), 'HERMOD_ERR_CONFIG');
  assert.match(section.message, /did you mean 'rabbit\.heartbeat'\?/, 'a key typed without its section');
  const far = await rejects(() => load({ bogus: 1 }), 'HERMOD_ERR_CONFIG', /unknown configuration key 'bogus' \(from --config\)\. /);
  assert.not.match(far.message, /did you mean/);
  assert.match(far.message, /--help-config/);
  assert.is(closeKey('bogus'), undefined);
  assert.is(closeKey('xyz'), undefined);
  assert.is(closeKey('rabit.heartbeat'), 'rabbit.heartbeat');
  // A far miss in a section's namespace is refused without a guess; a variable outside every
  // section and far from every option is not a configuration attempt (HERMOD_HOME broke library use).
  const env = await rejects(
    () => loadConfig({ env: { HERMOD_RPC_BOGUS: '1' } }),
    'HERMOD_ERR_CONFIG',
    /unknown environment variable HERMOD_RPC_BOGUS/,
  );
  assert.not.match(env.message, /did you mean/);
  assert.is(loadConfig({ env: { HERMOD_HOME: '/x', HERMOD_BOGUS: '1' } }).rpc.responseTimeout, 60_000);
  await rejects(() => loadConfig({ env: { HERMOD_RABBIT_HARTBEAT: '1' } }), 'HERMOD_ERR_CONFIG', /did you mean HERMOD_RABBIT_HEARTBEAT\?/);
  const farOption = await rejects(() => parseTransportUrl('rabbit://h/?zzz=1'), 'HERMOD_ERR_CONFIG', /options: heartbeat, /);
  assert.not.match(farOption.message, /did you mean/);
});

t('a bad value is quoted once, with the key and where it came from', async () => {
  const count = (s: string, sub: string) => s.split(sub).length - 1;
  for (const [key, value, expect] of [
    ['rpc.maxInFlight', 'lots', /must be an integer of 1 or more/],
    ['rpc.retry', 'x', /must be -1 \(forever\), 0 \(none\) or a number of attempts/],
    ['rpc.responseTimeout', 'abc', /must be a duration/],
    ['log.level', 'loud', /must be one of debug, info, warn, error, silent/],
    ['rabbit.durableQueues', 'perhaps', /must be true or false/],
  ] as const) {
    const err = await rejects(() => load({ [key]: value }), 'HERMOD_ERR_CONFIG', expect);
    assert.match(err.message, new RegExp(`^invalid value for ${key.replace('.', '\\.')} \\(from --config\\): `));
    assert.is(count(err.message, value), 1, `'${value}' once in: ${err.message}`);
  }
  await rejects(
    () => loadConfig({ env: { HERMOD_RPC_RESPONSE_TIMEOUT: 'zz' } }),
    'HERMOD_ERR_CONFIG',
    /rpc\.responseTimeout \(from environment HERMOD_RPC_RESPONSE_TIMEOUT\): must be a duration.*"zz"/,
  );
});

t('transport URLs: host:port checked strictly, IPv6 in brackets, the URL named with its password hidden', async () => {
  const bad = [
    ['amqp://127.0.0.1:5672:1/', /'127\.0\.0\.1:5672:1' is not host:port \(an IPv6 address goes in brackets/],
    ['rabbit://u:s3cret@h1,h2:5672:9/', /host #2 'h2:5672:9' is not host:port/],
    ['amqp://::1/', /is not host:port \(an IPv6 address goes in brackets: \[::1\]:5672\)/],
    ['rabbit://u:s3cret@[::1:5672/', /unclosed IPv6 bracket/],
    ['rabbit://u:s3cret@[nothex]:5672/', /'nothex' in brackets is not an IPv6 address/],
    ['rabbit://u:s3cret@h:0/', /invalid port '0' \(1-65535\)/],
    ['rabbit://u:s3cret@h:65536/', /invalid port '65536'/],
    ['rabbit://u:s3cret@h:0005672/', /invalid port '0005672'/],
    ['rabbit://u:s3cret@ho st:5672/', /invalid host name 'ho st'/],
  ] as const;
  for (const [url, expect] of bad) {
    const err = await rejects(() => parseTransportUrl(url), 'HERMOD_ERR_CONFIG', expect);
    assert.match(err.message, /^transport URL '[a-z]+:\/\//, `names the URL: ${err.message}`);
    assert.not.match(err.message, /s3cret/);
    if (url.includes('s3cret')) assert.match(err.message, /u:\*\*\*\*@/);
  }
  const v6 = parseTransportUrl('amqp://[::1]:5673,[fe80::1%25eth0]/');
  assert.equal(
    v6.hosts.map((h) => [h.hostname, h.port]),
    [
      ['::1', 5673],
      ['fe80::1%25eth0', 5672],
    ],
  );
  assert.equal(parseTransportUrl('rabbit://h:65535/').hosts[0]!.port, 65535);
});

t('hermod-router --port abc is a usage error (exit 2) naming the option, not "listen on NaN"', () => {
  const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'hermod-router.js');
  for (const port of ['abc', '70000', '-1', '']) {
    const r = spawnSync(process.execPath, [bin, '--port', port], { encoding: 'utf8', timeout: 5000 });
    assert.is(r.status, 2, `--port '${port}': ${r.stderr}`);
    assert.match(r.stderr, /option '--port <port>' argument .* is invalid\. expected a TCP port, 0-65535/);
    assert.not.match(r.stderr, /NaN|listening/);
  }
});

t.run();
