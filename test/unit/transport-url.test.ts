import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultConfig, getTransport, loadConfig, parseTransportUrl, redactUrl } from '../../src/index.js';
import { rejects } from '../support/assert.js';

const t = suite('transport url');

t('rabbit URL with several hosts, vhost and options', () => {
  const u = parseTransportUrl('rabbit://u1:p%40ss@h1:5672,u2:pw2@h2:5673/my%2Fvhost?heartbeat=30');
  assert.is(u.driver, 'rabbit');
  assert.is(u.tls, false);
  assert.equal(u.hosts, [
    { hostname: 'h1', port: 5672, username: 'u1', password: 'p@ss' },
    { hostname: 'h2', port: 5673, username: 'u2', password: 'pw2' },
  ]);
  assert.is(u.virtualHost, 'my/vhost');
  assert.equal(u.options, { 'rabbit.heartbeat': '30' });
});

t('default ports per scheme, IPv6 hosts, no credentials', () => {
  assert.is(parseTransportUrl('rabbit://h/').hosts[0]!.port, 5672);
  assert.is(parseTransportUrl('rabbits://h/').hosts[0]!.port, 5671);
  assert.is(parseTransportUrl('rabbits://h/').tls, true);
  const a = parseTransportUrl('amqp://[::1]:5673/');
  assert.is(a.driver, 'amqp1');
  assert.equal(a.hosts[0], { hostname: '::1', port: 5673 });
  assert.is(a.virtualHost, undefined);
  const s = parseTransportUrl('amqps://user@router');
  assert.equal(s.hosts[0], { hostname: 'router', port: 5671, username: 'user' });
});

t('memory URLs name an in-process broker', () => {
  assert.is(parseTransportUrl('memory://').name, 'default');
  assert.is(parseTransportUrl('memory://tests').name, 'tests');
  assert.is(String(parseTransportUrl('memory://tests')), 'memory://tests');
});

t(
  "a memory:// URL with credentials is refused (the password was the name's, logged with it); an AMQP 0-9-1 vhost over 255 bytes too",
  async () => {
    await rejects(
      () => parseTransportUrl('memory://u:s3cret@x'),
      'HERMOD_ERR_CONFIG',
      /memory:\/\/ URLs take a name only .*not credentials/,
    );
    const long = 'v'.repeat(256);
    // amqplib's encoder refused it at every connect, reported as "cannot connect" and retried.
    await rejects(
      () => parseTransportUrl(`rabbit://h/${long}`),
      'HERMOD_ERR_CONFIG',
      /the virtual host is 256 bytes long; AMQP 0-9-1 carries at most 255/,
    );
    await rejects(() => parseTransportUrl(`rabbit://h/${'é'.repeat(128)}`), 'HERMOD_ERR_CONFIG', /256 bytes long/);
    assert.is(parseTransportUrl(`rabbit://h/${'v'.repeat(255)}`).virtualHost!.length, 255);
    // AMQP 1.0 has no such field size.
    assert.is(parseTransportUrl(`amqp://h/${long}`).virtualHost, long);
  },
);

t('bad URLs give ConfigError saying what is wrong', async () => {
  await rejects(() => parseTransportUrl(''), 'HERMOD_ERR_CONFIG', /empty/);
  await rejects(() => parseTransportUrl('localhost:5672'), 'HERMOD_ERR_CONFIG', /no scheme/);
  await rejects(() => parseTransportUrl('kafka://h/'), 'HERMOD_ERR_CONFIG', /scheme 'kafka' is not supported/);
  await rejects(() => parseTransportUrl('rabbit://h:99999/'), 'HERMOD_ERR_CONFIG', /invalid port '99999'/);
  await rejects(() => parseTransportUrl('rabbit://h:abc/'), 'HERMOD_ERR_CONFIG', /invalid port/);
  await rejects(() => parseTransportUrl('rabbit://h1,,h2/'), 'HERMOD_ERR_CONFIG', /host #2 is empty/);
  await rejects(() => parseTransportUrl('rabbit:///vhost'), 'HERMOD_ERR_CONFIG', /names no host/);
  await rejects(() => parseTransportUrl('rabbit://[::1/'), 'HERMOD_ERR_CONFIG', /IPv6/);
  await rejects(() => parseTransportUrl('rabbit://u:%zz@h/'), 'HERMOD_ERR_CONFIG', /password of host #1 is not valid percent-encoding/);
  await rejects(
    () => parseTransportUrl('rabbit://h/?hartbeat=3'),
    'HERMOD_ERR_CONFIG',
    /'hartbeat' is not an option of the rabbit driver; did you mean 'heartbeat'/,
  );
  await rejects(() => parseTransportUrl('memory://x/y'), 'HERMOD_ERR_CONFIG', /name only/);
  await rejects(() => parseTransportUrl('memory://x?a=1'), 'HERMOD_ERR_CONFIG', /takes no options/);
});

t('passwords never appear in rendered URLs or errors', async () => {
  const u = parseTransportUrl('rabbit://alice:s3cret@h1:5672,bob:hunter2@h2/');
  assert.not.match(String(u), /s3cret|hunter2/);
  assert.match(String(u), /alice:\*\*\*\*@h1:5672/);
  assert.not.match(JSON.stringify(u.toString()), /s3cret/);
  assert.is(redactUrl('amqp://bob:hunter2@r1:5672,carol:pw@r2/'), 'amqp://bob:****@r1:5672,carol:****@r2/');
  const err = await rejects(() => parseTransportUrl('rabbit://alice:s3cret@h1:notaport/'), 'HERMOD_ERR_CONFIG');
  assert.not.match(err.message, /s3cret/);
  const err2 = await rejects(() => parseTransportUrl('rabbit:/alice:s3cret@h1/'), 'HERMOD_ERR_CONFIG');
  assert.not.match(err2.message, /s3cret/);
});

t('getTransport applies URL options over the config and rejects unavailable drivers cleanly', async () => {
  const tr = await getTransport('memory://urlopts', { config: defaultConfig(), overrides: { 'rpc.responseTimeout': '5s' } });
  assert.is(tr.config.rpc.responseTimeout, 5000);
  assert.is(tr.driver.kind, 'memory');
  assert.match(String(tr), /memory:\/\/urlopts/);
  await tr.close();
});

t('getTransport says what is wrong with an argument of the wrong kind', async () => {
  // A URL object was "transport URL is empty"; an overrides string "unknown configuration key
  // '0'"; a null or array config silently the defaults.
  await rejects(
    () => getTransport(new URL('rabbit://h/') as never),
    'HERMOD_ERR_CONFIG',
    /transport URL must be a string, got a URL object \(pass url\.href\)/,
  );
  await rejects(() => getTransport(5 as never), 'HERMOD_ERR_CONFIG', /must be a string, got a number/);
  await rejects(
    () => getTransport('memory://', { overrides: 'rpc.retry=1' as never }),
    'HERMOD_ERR_CONFIG',
    /overrides must be an object of 'key': value, got a string/,
  );
  await rejects(() => getTransport('memory://', { config: null as never }), 'HERMOD_ERR_CONFIG', /config must be an object, got null/);
  await rejects(() => getTransport('memory://', { config: [] as never }), 'HERMOD_ERR_CONFIG', /config must be an object, got an array/);
});

t("a '#' (a fragment: oslo drops it, it was kept in the vhost) and a repeated option are ConfigErrors", async () => {
  await rejects(() => parseTransportUrl('rabbit://h/vh#frag'), 'HERMOD_ERR_CONFIG', /has a '#' after its hosts: percent-encode it \(%23\)/);
  await rejects(() => parseTransportUrl('rabbit://h/?heartbeat=30&heartbeat=10'), 'HERMOD_ERR_CONFIG', /option 'heartbeat' is given twice/);
  // Options that set no key of their own were not counted: ssl=1&ssl=0 was TLS.
  await rejects(() => parseTransportUrl('rabbit://h/?ssl=1&ssl=0'), 'HERMOD_ERR_CONFIG', /option 'ssl' is given twice/);
  await rejects(() => parseTransportUrl('amqp://h/?ssl=1&ssl=1'), 'HERMOD_ERR_CONFIG', /option 'ssl' is given twice/);
  await rejects(
    () => parseTransportUrl('rabbit://h/?direct_mandatory_flag=true&direct_mandatory_flag=true'),
    'HERMOD_ERR_CONFIG',
    /option 'direct_mandatory_flag' is given twice/,
  );
  assert.is(parseTransportUrl('rabbit://u:p%23w@h/v%23h').virtualHost, 'v#h');
});

t('no part of an odd password is echoed, by any error of the parser or by redactUrl', async () => {
  // Each password's pieces are distinctive, so a fragment of one in a message is found.
  const passwords = [
    'QQa WWb',
    'QQa\tWWb',
    ' QQa  WWb ',
    'QQa@WWb',
    'QQa:WWb',
    'QQa/WWb',
    'QQa#WWb',
    'QQa?WWb',
    'QQa,WWb',
    'QQaΩ€😀WWb',
    'QQa%20WWb',
    'QQa%zzWWb',
    'QQa WWb@ZZc',
    'QQa@WWb ZZc',
    'QQa WWb/ZZc?YYd',
    "QQa'WWb",
    'QQa\nWWb',
  ];
  const shapes = [
    (s: string, pw: string) => `${s}://nova:${pw}@h:0/`, // bad port
    (s: string, pw: string) => `${s}://nova:${pw}@h!x/`, // bad host name
    (s: string, pw: string) => `${s}://nova:${pw}@h1,,h2/`, // empty host
    (s: string, pw: string) => `${s}://ok:fine@h0,nova:${pw}@h:0/v`, // several hosts
    (s: string, pw: string) => `${s}://nova:${pw}@h/v#frag`, // a fragment
    (s: string, pw: string) => `${s}://nova:${pw}@[::1/`, // unclosed bracket
    (s: string, pw: string) => `${s}:/nova:${pw}@h/`, // no scheme (one slash)
    (_s: string, pw: string) => `nova:${pw}@h:0/`, // no scheme at all
  ];
  const pieces = (pw: string) => pw.split(/[^A-Za-z]+/).filter((p) => p.length >= 3);
  let refused = 0;
  for (const scheme of ['rabbit', 'rabbits', 'amqp', 'amqps']) {
    for (const pw of passwords) {
      for (const shape of shapes) {
        const url = shape(scheme, pw);
        const leaks = (text: string) => pieces(pw).filter((p) => text.includes(p));
        let message: string | undefined;
        try {
          const u = parseTransportUrl(url);
          assert.equal(leaks(String(u)), [], `${JSON.stringify(url)} rendered as ${String(u)}`);
        } catch (err) {
          assert.is((err as { code?: string }).code, 'HERMOD_ERR_CONFIG', String(err));
          message = (err as Error).message;
          refused++;
        }
        if (message !== undefined) {
          assert.equal(leaks(message), [], `${JSON.stringify(url)}: ${JSON.stringify(message)}`);
          // The CLIs print a message through redactUrl again: it must not undo or mangle it.
          assert.is(redactUrl(message), message);
        }
        assert.equal(leaks(redactUrl(url)), [], `${JSON.stringify(url)} redacted as ${JSON.stringify(redactUrl(url))}`);
        // In a message's text, quoted as hermod quotes URLs; a quote in the password ends the quoted part.
        if (!pw.includes("'")) {
          const quoted = redactUrl(`cannot use '${url}': refused`);
          assert.equal(leaks(quoted), [], quoted);
          assert.ok(quoted.endsWith("': refused"), quoted);
        }
        // Unquoted in text: a URL with a scheme is still masked (a password with both '@' and
        // whitespace in unquoted text cannot be told from the words after it).
        if (url.includes('://') && !(pw.includes('@') && /\s/.test(pw))) {
          const inText = redactUrl(`cannot use ${url} today`);
          assert.equal(leaks(inText), [], inText);
        }
      }
    }
  }
  assert.ok(refused > 400, `${refused} refused`);
  // Well-formed, the same passwords parse to what was meant, and render masked.
  const ok = parseTransportUrl('rabbit://nova:QQa%20WWb@h1,bob:my secret@h2:5673/');
  assert.equal(
    ok.hosts.map((h) => h.password),
    ['QQa WWb', 'my secret'],
  );
  assert.is(String(ok), 'rabbit://nova:****@h1:5672,bob:****@h2:5673/');
});

t('URL options outrank every config source, and say so when they replace a value the config set', async () => {
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on('warning', onWarning);
  try {
    const config = loadConfig({ env: { HERMOD_AMQP1_REPLY_CREDIT: '50' }, overrides: { 'amqp1.idleTimeout': 7000 } });
    const tr = await getTransport('amqp://127.0.0.1:1/?idleTimeout=5000&replyCredit=60&serverCredit=100', { config });
    // serverCredit=100 is the default: nothing the config set is replaced, nothing said.
    assert.equal([tr.config.amqp1.idleTimeout, tr.config.amqp1.replyCredit, tr.config.amqp1.serverCredit], [5000, 60, 100]);
    await tr.close();
    await new Promise((r) => setImmediate(r));
    const said = warnings.filter((w) => w.name === 'HermodWarning').map((w) => w.message);
    assert.equal(said, [
      'the transport URL sets amqp1.idleTimeout=5000, over 7000 from the configuration (--config, HERMOD_*, a config file): URL options outrank them',
      'the transport URL sets amqp1.replyCredit=60, over 50 from the configuration (--config, HERMOD_*, a config file): URL options outrank them',
    ]);
  } finally {
    process.off('warning', onWarning);
  }
});

t.run();
