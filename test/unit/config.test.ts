import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { describeConfig, parseConfigArgs } from '../../src/cli/config-args.js';
import { applyOverrides, CONFIG_KEYS, envName, parseDuration } from '../../src/config/index.js';
import { defaultConfig, getTransport, loadConfig } from '../../src/index.js';
import { rejects } from '../support/assert.js';

const t = suite('config');
const dir = mkdtempSync(path.join(tmpdir(), 'hermod-config-'));
t.after(() => rmSync(dir, { recursive: true, force: true }));

t('defaults follow oslo', () => {
  const c = defaultConfig();
  assert.is(c.controlExchange, 'openstack');
  assert.is(c.rpc.responseTimeout, 60_000);
  assert.is(c.rpc.callMonitorTimeout, 0);
  assert.is(c.rpc.serverConcurrency, 64);
  assert.is(c.rpc.retry, -1);
  assert.equal(c.rpc.allowedRemoteExmods, []);
  assert.is(c.rabbit.frameMax, 131072);
  assert.is(c.transportUrl, 'memory://');
});

t('every key has an env variable', () => {
  assert.is(envName('rpc.responseTimeout'), 'HERMOD_RPC_RESPONSE_TIMEOUT');
  assert.is(envName('transportUrl'), 'HERMOD_TRANSPORT_URL');
  const help = describeConfig();
  for (const k of CONFIG_KEYS) assert.ok(help.includes(k), k);
  assert.match(help, /HERMOD_RPC_SERVER_CONCURRENCY/);
});

t("the README's configuration table lists every key ('a.b / c' rows name a.b and a.c)", () => {
  const readme = readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../README.md'), 'utf8');
  const start = readme.indexOf('| key | default | env | meaning |');
  assert.ok(start > 0, 'the table');
  const listed = new Set<string>();
  for (const row of readme.slice(start).split('\n').slice(2)) {
    if (!row.startsWith('| `')) break;
    const names = [...row.split('|')[1]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
    const section = names[0]!.includes('.') ? names[0]!.split('.')[0] : '';
    for (const n of names) listed.add(n.includes('.') || !section ? n : `${section}.${n}`);
  }
  assert.equal(
    CONFIG_KEYS.filter((k) => !listed.has(k)),
    [],
    'keys missing from the table',
  );
});

t('sources: file < env < overrides, with coercion', () => {
  const file = path.join(dir, 'a.json');
  writeFileSync(file, JSON.stringify({ controlExchange: 'nova', rpc: { responseTimeout: 1000, serverConcurrency: 8 } }));
  const c = loadConfig({
    files: [file],
    env: { HERMOD_RPC_RESPONSE_TIMEOUT: '2s', HERMOD_RPC_ALLOWED_REMOTE_EXMODS: 'a.b, c.d', PATH: '/bin' },
    overrides: { 'rpc.serverConcurrency': '16', 'rpc.sendTraceback': 'true' },
  });
  assert.is(c.controlExchange, 'nova');
  assert.is(c.rpc.responseTimeout, 2000);
  assert.is(c.rpc.serverConcurrency, 16);
  assert.equal(c.rpc.allowedRemoteExmods, ['a.b', 'c.d']);
  assert.is(c.rpc.sendTraceback, true);
});

t('caller defaults are the lowest source: file, env and overrides each outrank them', () => {
  const defaults = { 'rpc.retry': 2, transportUrl: 'amqp://127.0.0.1:5672/', controlExchange: 'cli' } as const;
  const d = loadConfig({ env: {}, defaults });
  assert.is(d.rpc.retry, 2);
  assert.is(d.transportUrl, 'amqp://127.0.0.1:5672/');
  assert.is(d.rpc.responseTimeout, 60_000, 'schema defaults still fill the rest');
  const file = path.join(dir, 'defaults.json');
  writeFileSync(file, JSON.stringify({ rpc: { retry: 5 } }));
  assert.is(loadConfig({ env: {}, defaults, files: [file] }).rpc.retry, 5);
  assert.is(loadConfig({ env: { HERMOD_RPC_RETRY: '0' }, defaults }).rpc.retry, 0);
  assert.is(loadConfig({ env: { HERMOD_TRANSPORT_URL: 'memory://' }, defaults }).transportUrl, 'memory://');
  const all = loadConfig({ env: { HERMOD_RPC_RETRY: '0' }, defaults, files: [file], overrides: { 'rpc.retry': '7' } });
  assert.is(all.rpc.retry, 7);
  assert.is(all.controlExchange, 'cli');
});

t('defaults: unknown keys and bad values are rejected too', async () => {
  await rejects(
    () => loadConfig({ env: {}, defaults: { 'rpc.retri': 2 } as never }),
    'HERMOD_ERR_CONFIG',
    /'rpc.retri' \(from defaults\).*did you mean 'rpc.retry'/,
  );
  await rejects(() => loadConfig({ env: {}, defaults: { 'rpc.serverConcurrency': 0 } }), 'HERMOD_ERR_CONFIG', /serverConcurrency/);
});

t('applyOverrides: a loaded config with dotted keys over it; the environment is not read again', async () => {
  const base = loadConfig({ env: {}, overrides: { controlExchange: 'nova', 'rpc.allowedRemoteExmods': 'a.b' } });
  process.env.HERMOD_CONTROL_EXCHANGE = 'from-env';
  let c: ReturnType<typeof applyOverrides>;
  try {
    c = applyOverrides(base, { 'rpc.responseTimeout': '5s', 'rabbit.heartbeat': 10 });
  } finally {
    delete process.env.HERMOD_CONTROL_EXCHANGE;
  }
  assert.is(c.rpc.responseTimeout, 5000);
  assert.is(c.rabbit.heartbeat, 10);
  assert.is(c.controlExchange, 'nova');
  assert.equal(c.rpc.allowedRemoteExmods, ['a.b']);
  assert.is(base.rpc.responseTimeout, 60_000, 'the original is untouched');
  await rejects(() => applyOverrides(base, { 'rpc.nope': 1 }), 'HERMOD_ERR_CONFIG', /'rpc.nope'/);
});

t("--help-config shows a command's own defaults beside the library defaults", () => {
  const help = describeConfig({ 'rpc.retry': 2 });
  assert.match(help, /rpc\.retry {2}\(default 2 here, library default -1, env HERMOD_RPC_RETRY\)/);
  assert.match(help, /rpc\.responseTimeout {2}\(default 60000, env HERMOD_RPC_RESPONSE_TIMEOUT\)/);
});

t('unknown keys are rejected naming the nearest key', async () => {
  await rejects(
    () => loadConfig({ env: {}, overrides: { 'rpc.responseTimout': '1' } }),
    'HERMOD_ERR_CONFIG',
    /'rpc.responseTimout'.*did you mean 'rpc.responseTimeout'/,
  );
  await rejects(
    () => loadConfig({ env: { HERMOD_RPC_RESPONS_TIMEOUT: '1' } }),
    'HERMOD_ERR_CONFIG',
    /HERMOD_RPC_RESPONS_TIMEOUT; did you mean HERMOD_RPC_RESPONSE_TIMEOUT/,
  );
  const file = path.join(dir, 'bad.json');
  writeFileSync(file, JSON.stringify({ rabbit: { quorumQueue: true } }));
  await rejects(
    () => loadConfig({ env: {}, files: [file] }),
    'HERMOD_ERR_CONFIG',
    /'rabbit.quorumQueue'.*did you mean 'rabbit.quorumQueues'/,
  );
});

t('bad values are rejected with the key', async () => {
  await rejects(() => loadConfig({ env: {}, overrides: { 'rpc.serverConcurrency': '0' } }), 'HERMOD_ERR_CONFIG', /serverConcurrency/);
  await rejects(() => loadConfig({ env: {}, overrides: { 'rpc.responseTimeout': 'soon' } }), 'HERMOD_ERR_CONFIG', /responseTimeout/);
  await rejects(() => loadConfig({ env: {}, overrides: { 'rpc.inFlightOverflow': 'drop' } }), 'HERMOD_ERR_CONFIG', /inFlightOverflow/);
  await rejects(() => loadConfig({ env: {}, overrides: { 'rpc.sendTraceback': 'maybe' } }), 'HERMOD_ERR_CONFIG', /sendTraceback/);
  const notJson = path.join(dir, 'x.json');
  writeFileSync(notJson, '{ nope');
  await rejects(() => loadConfig({ env: {}, files: [notJson] }), 'HERMOD_ERR_CONFIG', /cannot read config file/);
  await rejects(() => loadConfig({ env: {}, files: [path.join(dir, 'missing.json')] }), 'HERMOD_ERR_CONFIG', /cannot read/);
  const arr = path.join(dir, 'arr.json');
  writeFileSync(arr, '[1]');
  await rejects(() => loadConfig({ env: {}, files: [arr] }), 'HERMOD_ERR_CONFIG', /JSON object/);
});

t('broker-bound numbers out of what the broker or protocol takes are ConfigErrors naming the key, before connecting', async () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ 'rabbit.frameMax': 4095 }, /rabbit\.frameMax .*must be at least 4096 \(AMQP 0-9-1's frame-max/],
    [{ 'rabbit.frameMax': 2 ** 32 }, /rabbit\.frameMax .*must be at most 4294967295/],
    [
      { 'rabbit.transientQueuesTtl': 10_000_000_000_000 },
      /rabbit\.transientQueuesTtl .*must be at most 4294967295 ms \(RabbitMQ's largest x-expires/,
    ],
    [{ 'rabbit.serverQueueTtl': '1200h' }, /rabbit\.serverQueueTtl/],
    [{ 'rabbit.heartbeat': 65_536 }, /rabbit\.heartbeat .*must be at most 65535 s/],
    [{ 'rpc.serverConcurrency': 65_536 }, /rpc\.serverConcurrency .*at most 65535 \(RabbitMQ's prefetch count/],
    [{ 'amqp1.serverCredit': 2 ** 32 }, /amqp1\.serverCredit .*at most 4294967295/],
    [{ 'rabbit.quorumDeliveryLimit': 1e300 }, /rabbit\.quorumDeliveryLimit/],
    [{ 'rpc.retry': 2 ** 60 }, /rpc\.retry/],
    [{ controlExchange: 'é'.repeat(128) }, /controlExchange .*must be at most 255 bytes long in UTF-8 \(an AMQP exchange name/],
    // Accepted before: "" sent every target without an exchange to the default exchange.
    [{ controlExchange: '' }, /controlExchange .*must be a non-empty name without whitespace or control characters/],
    [{ controlExchange: 'x\u0000y' }, /controlExchange .*got "x\\u0000y"/],
    // ENAMETOOLONG from the queue manager's file at the first connect, naming no option.
    [
      { 'rabbit.hostname': 'h'.repeat(101) },
      /rabbit\.hostname .*must be at most 100 bytes long in UTF-8 \(with the other part, within the 255 bytes of a queue name/,
    ],
    [{ 'rabbit.processName': 'p'.repeat(101) }, /rabbit\.processName .*must be at most 100 bytes/],
  ];
  for (const [overrides, message] of cases) {
    await rejects(() => loadConfig({ env: {}, overrides }), 'HERMOD_ERR_CONFIG', message);
  }
  // From a file, the environment and a transport URL alike, each naming where the value came from.
  const file = path.join(dir, 'range.json');
  writeFileSync(file, JSON.stringify({ rabbit: { frameMax: 100 } }));
  await rejects(
    () => loadConfig({ env: {}, files: [file] }),
    'HERMOD_ERR_CONFIG',
    /rabbit\.frameMax \(from file .*range\.json\): must be at least 4096/,
  );
  await rejects(
    () => loadConfig({ env: { HERMOD_RABBIT_TRANSIENT_QUEUES_TTL: '2000h' } }),
    'HERMOD_ERR_CONFIG',
    /from environment HERMOD_RABBIT_TRANSIENT_QUEUES_TTL\): must be at most 4294967295 ms/,
  );
  await rejects(
    () => getTransport('rabbit://127.0.0.1:1/?frameMax=4095', { config: defaultConfig() }),
    'HERMOD_ERR_CONFIG',
    /rabbit\.frameMax \(from the transport URL\): must be at least 4096/,
  );
  // The bounds themselves, and 0 (unset) for the TTLs, are fine.
  const edge = loadConfig({
    env: {},
    overrides: {
      'rabbit.frameMax': 4096,
      'rabbit.transientQueuesTtl': 4_294_967_295,
      'rabbit.serverQueueTtl': 0,
      'rabbit.heartbeat': 65_535,
    },
  });
  assert.equal(
    [edge.rabbit.frameMax, edge.rabbit.transientQueuesTtl, edge.rabbit.serverQueueTtl, edge.rabbit.heartbeat],
    [4096, 4_294_967_295, 0, 65_535],
  );
});

t('a number given for a duration is whole milliseconds (whole seconds for the heartbeat), as the string forms are', async () => {
  const file = path.join(dir, 'ttl.json');
  // From JSON a fraction went as is into x-expires, which RabbitMQ refuses as a double.
  writeFileSync(
    file,
    JSON.stringify({ rabbit: { transientQueuesTtl: 1500.5, serverQueueTtl: 60_000.4 }, rpc: { responseTimeout: 2500.6 } }),
  );
  const c = loadConfig({ env: {}, files: [file] });
  assert.equal([c.rabbit.transientQueuesTtl, c.rabbit.serverQueueTtl, c.rpc.responseTimeout], [1501, 60_000, 2501]);
  assert.is(loadConfig({ env: {}, overrides: { 'rabbit.transientQueuesTtl': '1.5' } }).rabbit.transientQueuesTtl, 2);
  await rejects(
    () => loadConfig({ env: {}, overrides: { 'rabbit.heartbeat': 1.5 } }),
    'HERMOD_ERR_CONFIG',
    /rabbit\.heartbeat .*whole seconds/,
  );
});

t('--config key=value, --config key value and --config-file', async () => {
  const r = parseConfigArgs([
    'srv',
    '--config',
    'rpc.retry=3',
    '--config',
    'controlExchange',
    'nova',
    '--config=log.level=debug',
    '--config-file',
    'x.json',
    '--topic',
    't',
  ]);
  assert.equal(r.overrides, { 'rpc.retry': '3', controlExchange: 'nova', 'log.level': 'debug' });
  assert.equal(r.files, ['x.json']);
  assert.equal(r.rest, ['srv', '--topic', 't']);
  await rejects(() => parseConfigArgs(['--config', 'rpc.retri=3']), 'HERMOD_ERR_CONFIG', /did you mean 'rpc.retry'/);
  await rejects(() => parseConfigArgs(['--config']), 'HERMOD_ERR_CONFIG', /needs key=value/);
  await rejects(() => parseConfigArgs(['--config', 'rpc.retry']), 'HERMOD_ERR_CONFIG', /needs a value/);
  await rejects(() => parseConfigArgs(['--config', '=5']), 'HERMOD_ERR_CONFIG', /--config =5 names no key/);
  await rejects(() => parseConfigArgs(['--config-file']), 'HERMOD_ERR_CONFIG', /needs a path/);
  // A later flag of the same key wins, as on any command line.
  assert.equal(parseConfigArgs(['--config', 'rpc.retry=1', '--config=rpc.retry=2']).overrides, { 'rpc.retry': '2' });
});

t('durations', async () => {
  assert.is(parseDuration('250ms'), 250);
  assert.is(parseDuration('1.5s'), 1500);
  assert.is(parseDuration('2m'), 120_000);
  assert.is(parseDuration('1h'), 3_600_000);
  // Node fires a longer timer after 1 ms: a longer timeout would end every call at once.
  assert.is(parseDuration('596h'), 2_145_600_000);
  assert.throws(() => parseDuration('1000h'), /at most 2147483647 ms/);
  assert.throws(() => parseDuration(3_000_000_000), /at most 2147483647 ms/);
  assert.is(parseDuration(42), 42);
  assert.throws(() => parseDuration('-1s'), /duration/);
});

t('tls.ca, tls.cert or tls.key with a URL that is not TLS is a ConfigError, not a plain-text connection', async () => {
  for (const url of ['amqp://127.0.0.1:1/', 'rabbit://127.0.0.1:1/']) {
    const err = await rejects(
      getTransport(url, { config: defaultConfig(), overrides: { 'tls.ca': '/etc/ssl/ca.pem', 'tls.cert': '/etc/ssl/c.pem' } }),
      'HERMOD_ERR_CONFIG',
      /tls\.ca, tls\.cert are set, but the transport URL \((amqp|rabbit):\/\/\) is not TLS: nothing would be encrypted; use (amqps|rabbits):\/\//,
    );
    assert.is((err as { key?: string }).key, 'tls.ca');
  }
  // verify alone changes nothing on a plain URL; the memory driver has no wire at all.
  const plain = await getTransport('memory://tls-unused', { config: defaultConfig(), overrides: { 'tls.ca': '/etc/ssl/ca.pem' } });
  await plain.close();
});

t('a list option given as a JSON array is read as one, not split on its commas', () => {
  assert.equal(loadConfig({ env: { HERMOD_NOTIFICATIONS_TOPICS: '["a", "b"]' } }).notifications.topics, ['a', 'b']);
  assert.equal(loadConfig({ env: { HERMOD_NOTIFICATIONS_TOPICS: 'a, b' } }).notifications.topics, ['a', 'b']);
  assert.throws(() => loadConfig({ env: { HERMOD_NOTIFICATIONS_TOPICS: '["a", 1]' } }), /must be a list of strings/);
});

t.run();
