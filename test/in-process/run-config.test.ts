// The run file is validated strictly: unknown keys name the nearest known one, bad values name
// their place; the CLI turns each into exit status 2 with that message.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultConfig, getTransport } from '../../src/index.js';
import { importModule, loadEndpoints } from '../../src/ops/load-endpoints.js';
import { checkWatchInterval, parseRunSpec, type RunWatch } from '../../src/ops/run/config.js';
import { rejects, sleep, until } from '../support/assert.js';
import { hermodRun } from '../support/ops-run.js';

const HERMOD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'hermod.js');
const ok = { endpoints: './ep.js', topic: 'compute' };

test('run file: a valid file resolves paths and keeps every field', () => {
  const spec = parseRunSpec(
    {
      workers: 2,
      watch: { usePolling: true, interval: 500, reloadTimeoutMs: 5000, recycleAfter: 0 },
      metricsPort: '0.0.0.0:9100',
      beacons: { intervalMs: 2000, version: '2.0.1' },
      config: { transportUrl: 'rabbit://h/', rpc: { responseTimeout: '5s' } },
      services: {
        compute: {
          ...ok,
          endpoints: ['./a.js', 'b.ts'],
          server: 'n1',
          exchange: 'nova',
          namespace: 'c',
          version: '1.3',
          concurrency: 8,
          workers: 'max',
          config: { 'rpc.sendTraceback': true },
        },
        billing: { endpoints: './billing.js', topic: 'billing' },
      },
    },
    '/srv/app/hermod.config.json',
  );
  const c = spec.services[0]!;
  assert.equal(c.endpoints, ['/srv/app/a.js', '/srv/app/b.ts']);
  assert.equal(
    [c.server, c.exchange, c.namespace, c.version, c.concurrency, c.workers],
    ['n1', 'nova', 'c', '1.3', 8, os.availableParallelism()],
  );
  assert.equal(c.config, { 'rpc.sendTraceback': true });
  assert.equal(spec.config, { transportUrl: 'rabbit://h/', 'rpc.responseTimeout': '5s' });
  assert.equal(spec.watch, { usePolling: true, interval: 500, reloadTimeoutMs: 5000, recycleAfter: 0 }, 'recycleAfter 0: never recycle');
  assert.is(spec.metricsPort, '0.0.0.0:9100');
  assert.equal(spec.beacons, { intervalMs: 2000, version: '2.0.1' });
  const plain = parseRunSpec({ metricsPort: 9100, beacons: true, services: { a: ok } }, 'h.json');
  assert.equal([plain.metricsPort, plain.beacons], ['9100', {}]);
  assert.equal(parseRunSpec({ services: { a: ok } }, 'h.json').beacons, false, 'beacons are off unless asked');
  assert.is(spec.services[1]!.server, os.hostname(), 'the server name defaults to the host name');
});

test('run file: unknown keys suggest a known key only when close, bad values name their place', async () => {
  const f = 'h.json';
  const cases: Array<[unknown, RegExp]> = [
    [{ servics: {} }, /h\.json: unknown key 'servics'; did you mean 'services'\?/],
    // Refused by Target only at start, naming no place; an empty name served as "serving : …".
    [{ services: { a: { ...ok, server: 's\u001b[2J\nfake' } } }, /h\.json: services\.a: target server .*must not contain/],
    [{ services: { a: { ...ok, topic: 'a b/c*#' } } }, /h\.json: services\.a: target topic/],
    [{ services: { '': ok } }, /h\.json: services: a service needs a name, got ""/],
    [{ services: { a: { ...ok, topc: 'x' } } }, /services\.a: unknown key 'topc'; did you mean 'topic'\?/],
    [
      { services: { a: { ...ok, config: { rpc: { responseTimout: 1 } } } } },
      /services\.a\.config\.rpc\.responseTimout: unknown configuration key .*did you mean 'rpc\.responseTimeout'/,
    ],
    [{ config: { rabit: { heartbeat: 1 } }, services: { a: ok } }, /config\.rabit: unknown configuration key 'rabit'/],
    // A known section that is not an object is named as a section (it was "unknown key 'rpc'").
    [{ config: { rpc: null }, services: { a: ok } }, /config\.rpc: configuration section 'rpc' must be an object of rpc\.\* options/],
    // Far from every key: no suggestion (a wild guess misleads), the known keys instead.
    [{ services: { a: { ...ok, xyzzy: 1 } } }, /services\.a: unknown key 'xyzzy' \(known keys: endpoints, topic, server,/],
    [
      { services: { a: { ...ok, config: { frobnicate: 1 } } } },
      /unknown configuration key 'frobnicate' \(hermod run --help-config lists them\)$/,
    ],
    [{ services: { a: { topic: 'x' } } }, /services\.a: needs 'endpoints'/],
    [{ services: { a: { ...ok, topic: '' } } }, /services\.a\.topic: must be a non-empty string/],
    [{ services: { a: { ...ok, workers: 0 } } }, /services\.a\.workers: must be a whole number from 1 to 256 or "max"/],
    [{ services: { a: { ...ok, version: '1' } } }, /services\.a\.version: must be of the form X\.Y/],
    [{ services: { a: { ...ok, concurrency: 1.5 } } }, /services\.a\.concurrency: must be a whole number ≥ 1/],
    // Accepted before, as a work pool of that size (past a prefetch count is allowed).
    [{ services: { a: { ...ok, concurrency: 1e300 } } }, /services\.a\.concurrency: must be at most 4294967295 \(AMQP 1\.0's credit\)/],
    [{ watch: { polling: true }, services: { a: ok } }, /watch: unknown key 'polling'; did you mean 'usePolling'\?/],
    [
      { watch: { recycleAfter: -1 }, services: { a: ok } },
      /watch\.recycleAfter: must be a whole number of reloads ≥ 0 \(0: never recycle\)/,
    ],
    [{ watch: { recycleAftr: 5 }, services: { a: ok } }, /watch: unknown key 'recycleAftr'; did you mean 'recycleAfter'\?/],
    // Numbers written as strings are refused as every number of the file is ("debounceMs": "100"
    // was): these two were taken, as the flags of the same names take text.
    [{ workers: '1', services: { a: ok } }, /h\.json: workers: must be a whole number from 1 to 256 or "max", got "1"/],
    [{ services: { a: { ...ok, workers: '2' } } }, /services\.a\.workers: must be a whole number from 1 to 256 or "max", got "2"/],
    [
      { watch: { recycleAfter: '7' }, services: { a: ok } },
      /watch\.recycleAfter: must be a whole number of reloads ≥ 0 \(0: never recycle\), got "7"/,
    ],
    [{ watch: { debounceMs: '100' }, services: { a: ok } }, /watch\.debounceMs: must be a whole number ≥ 1, got "100"/],
    [{ watch: { reloadTimeoutMs: 0 }, services: { a: ok } }, /watch\.reloadTimeoutMs: must be/],
    // Process-wide settings a service's config cannot change (they were accepted and ignored).
    [{ services: { a: { ...ok, config: { log: { level: 'debug' } } } } }, /services\.a\.config\.log\.level: applies to the whole run/],
    [
      { services: { a: { ...ok, config: { 'rpc.stopTimeout': 1000 } } } },
      /services\.a\.config\.rpc\.stopTimeout: applies to the whole run/,
    ],
    [{ services: {} }, /services: declares no service/],
    [{ metricsPort: 'http://x', services: { a: ok } }, /metricsPort: must be a port or "host:port"/],
    [{ beacons: { interval: 1 }, services: { a: ok } }, /beacons: unknown key 'interval'; did you mean 'intervalMs'\?/],
    [{ beacons: { intervalMs: 10 }, services: { a: ok } }, /beacons\.intervalMs: must be at least 50 ms/],
    [{ services: [ok] }, /services: must be an object, got an array/],
    // typeof null is 'object': the message said "must be an object, got object".
    [{ services: null }, /services: must be an object, got null$/],
    [{ services: { a: null } }, /services\.a: must be an object, got null$/],
    // Past 2^31-1 ms Node fires a timer after 1 ms: every hand-over failed at once.
    [{ watch: { handOverTimeoutMs: 3_000_000_000 }, services: { a: ok } }, /watch\.handOverTimeoutMs: must be at most 2147483647 ms/],
    [{ watch: { reloadTimeoutMs: 2 ** 31 }, services: { a: ok } }, /watch\.reloadTimeoutMs: must be at most 2147483647 ms/],
    // Dotted and nested at once: the last won, and a bad value written first was never seen.
    [
      { config: { 'rpc.retry': 'x', rpc: { retry: 1 } }, services: { a: ok } },
      /config\.rpc\.retry: configuration key rpc\.retry is given twice \(dotted and nested\)/,
    ],
    [
      { services: { a: { ...ok, config: { rpc: { retry: 1 }, 'rpc.retry': 2 } } } },
      /services\.a\.config\.rpc\.retry: configuration key rpc\.retry is given twice/,
    ],
  ];
  for (const [data, message] of cases) await rejects(() => parseRunSpec(data, f), 'HERMOD_ERR_CONFIG', message);
  // chokidar reads the interval only when polling: it was accepted and dropped. Whether anything
  // polls is known once --watch-polling and CHOKIDAR_USEPOLLING had their say.
  const watchOf = (watch: unknown) => parseRunSpec({ watch, services: { a: ok } }, f).watch as RunWatch;
  await rejects(
    () => checkWatchInterval(watchOf({ interval: 500 }), f, {}),
    'HERMOD_ERR_CONFIG',
    /watch\.interval: applies only with polling: set "usePolling": true beside it \(or --watch-polling\)/,
  );
  await rejects(() => checkWatchInterval(watchOf({ usePolling: false, interval: 500 }), f, {}), 'HERMOD_ERR_CONFIG', /watch\.interval/);
  await rejects(
    () => checkWatchInterval(watchOf({ usePolling: true, interval: 500 }), f, { CHOKIDAR_USEPOLLING: 'false' }),
    'HERMOD_ERR_CONFIG',
    /watch\.interval/,
  );
  checkWatchInterval(watchOf({ usePolling: true, interval: 500 }), f, {});
  checkWatchInterval(watchOf({ interval: 500 }), f, { CHOKIDAR_USEPOLLING: '1' });
  checkWatchInterval({ ...watchOf({ interval: 500 }), usePolling: true }, f, {}); // --watch-polling
});

test('hermod run: a bad file, a bad config value and an unknown command exit 2 with the reason', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hermod-runcfg-'));
  try {
    const file = path.join(dir, 'hermod.config.json');
    writeFileSync(path.join(dir, 'ep.js'), 'export default { async ping() { return 1; } };\n');
    // hermod run's log is JSON, and so is its startup failure: the reason is the line's msg.
    const hermod = (args: string[]) => {
      const r = spawnSync(process.execPath, [HERMOD, ...args], { cwd: dir, encoding: 'utf8', timeout: 10_000 });
      const msgOf = (l: string) => {
        try {
          return String((JSON.parse(l) as { msg?: unknown }).msg);
        } catch {
          return l;
        }
      };
      return { ...r, stderr: r.stderr.split('\n').map(msgOf).join('\n') };
    };
    writeFileSync(file, JSON.stringify({ services: { a: { ...ok, wrokers: 2 } } }));
    let r = hermod(['run']);
    assert.is(r.status, 2, r.stderr);
    assert.match(r.stderr, /services\.a: unknown key 'wrokers'; did you mean 'workers'\?/);
    writeFileSync(file, JSON.stringify({ services: { a: { ...ok, config: { 'rpc.responseTimeout': 'soon' } } } }));
    r = hermod(['run', 'hermod.config.json']);
    assert.is(r.status, 2, r.stderr);
    assert.match(r.stderr, /invalid value for rpc\.responseTimeout \(from hermod\.config\.json: services\.a\.config\)/);
    writeFileSync(file, JSON.stringify({ config: { 'rpc.responseTimeout': 'soon' }, services: { a: ok } }));
    r = hermod(['run']);
    assert.is(r.status, 2, r.stderr);
    assert.match(r.stderr, /invalid value for rpc\.responseTimeout \(from hermod\.config\.json: config\)/);
    // A transport URL with a scheme hermod has no driver for names the service it is for.
    writeFileSync(file, JSON.stringify({ config: { transportUrl: 'gopher://h/' }, services: { a: ok } }));
    r = hermod(['run']);
    assert.is(r.status, 2, r.stderr);
    assert.match(r.stderr, /services\.a: transportUrl: .*gopher/);
    // A --config or environment mistake is its own, not the run file's.
    writeFileSync(file, JSON.stringify({ services: { a: ok } }));
    r = hermod(['run', '--config', 'rpc.responseTimeout=soon']);
    assert.is(r.status, 2, r.stderr);
    assert.match(r.stderr, /invalid value for rpc\.responseTimeout \(from --config\)/);
    assert.not.match(r.stderr, /hermod\.config\.json/);
    // A missing endpoints module: before any worker starts (was exit 1, or workers restarted forever).
    writeFileSync(file, JSON.stringify({ services: { a: { ...ok, endpoints: './nope.js' } } }));
    for (const args of [['run'], ['run', '--workers', '2'], ['run', '--watch']]) {
      r = hermod(args);
      assert.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /services\.a\.endpoints: \S*nope\.js does not exist/);
    }
    // Without its extension, as require() would take it: the file meant is named.
    writeFileSync(file, JSON.stringify({ services: { a: { ...ok, endpoints: './ep' } } }));
    r = hermod(['run']);
    assert.is(r.status, 2, r.stderr);
    assert.match(r.stderr, /services\.a\.endpoints: \S*ep does not exist; did you mean \S*ep\.js\?/);
    // A module that does not load: exit 2 naming service, file and line, before any service
    // serves (it served the services before it, then exited 1; with workers, restarted forever).
    writeFileSync(path.join(dir, 'bad.js'), 'export default {\n  async a() { return 1 + ; }\n};\n');
    writeFileSync(
      file,
      JSON.stringify({
        config: { transportUrl: 'memory://' },
        services: { calc: ok, broken: { ...ok, topic: 'b', endpoints: './bad.js' } },
      }),
    );
    for (const args of [['run'], ['run', '--workers', '2']]) {
      r = hermod(args);
      assert.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /services\.broken\.endpoints: \S*bad\.js:2: SyntaxError: Unexpected token ';'/, args.join(' '));
      assert.not.match(r.stdout, /"event":"serving"/, `${args.join(' ')}: nothing served`);
      assert.not.match(r.stdout + r.stderr, /restarting in/);
      assert.not.match(r.stdout, /aborted \d+ piece/);
    }
    // Endpoints that load but that no server takes (a contract naming no method): refused with
    // the others, before anything serves (the services before it served, then the run exited 1).
    writeFileSync(path.join(dir, 'contract.js'), 'export default { contracts: { nope: { args: {} } }, async a() { return 1; } };\n');
    writeFileSync(
      file,
      JSON.stringify({
        config: { transportUrl: 'memory://' },
        services: { calc: ok, contracted: { ...ok, topic: 'c', endpoints: './contract.js' } },
      }),
    );
    r = hermod(['run']);
    assert.is(r.status, 2, r.stderr);
    assert.match(
      r.stderr,
      /services\.contracted\.endpoints: \S*contract\.js: InvalidArgument: endpoint #1 \(Object\) has a contract for nope but no callable method/,
    );
    assert.not.match(r.stdout, /"event":"serving"/, 'nothing served');
    // CommonJS export shapes: Node hands the whole module.exports over as `default`, so
    // `exports.endpoints` served nothing, and `{}` or `{ Calc }` were served as they were.
    mkdirSync(path.join(dir, 'cjs'));
    writeFileSync(path.join(dir, 'cjs', 'package.json'), '{ "type": "commonjs" }\n');
    writeFileSync(path.join(dir, 'cjs', 'list.js'), 'exports.endpoints = [{ async e1() { return 1; } }, { async e2() { return 2; } }];\n');
    writeFileSync(path.join(dir, 'cjs', 'empty.js'), 'module.exports = {};\n');
    writeFileSync(path.join(dir, 'cjs', 'named.js'), 'class Calc { async add() { return 1; } }\nmodule.exports = { Calc };\n');
    writeFileSync(path.join(dir, 'cjs', 'esm.js'), 'export default { async a() { return 1; } };\n');
    writeFileSync(path.join(dir, 'cjs', 'target.js'), "exports.endpoints = [{ target: { namespace: 'n' }, async a() { return 1; } }];\n");
    const shapes: Array<[string, RegExp]> = [
      // An ES module where Node reads CommonJS: what to do, not only "Unexpected token 'export'".
      [
        'esm.js',
        /esm\.js:1: SyntaxError: Unexpected token 'export' \(Node reads esm\.js as CommonJS.*rename it \.mjs, set "type": "module"/,
      ],
      ['empty.js', /services\.s\.endpoints: \S*empty\.js: its endpoint has no methods to serve/],
      ['named.js', /services\.s\.endpoints: \S*named\.js: its endpoint serves only classes as methods \(Calc\): export the class itself/],
      // The server's own check named no file: `endpoint #1: its target must be a Target`.
      [
        'target.js',
        /services\.s\.endpoints: \S*target\.js: its endpoint #1 has a target that is a plain object, not a Target: make it new Target\(\{ namespace: "n" \}\)/,
      ],
    ];
    for (const [module, message] of shapes) {
      writeFileSync(
        file,
        JSON.stringify({ config: { transportUrl: 'memory://' }, services: { s: { ...ok, endpoints: `./cjs/${module}` } } }),
      );
      r = hermod(['run']);
      assert.is(r.status, 2, r.stderr);
      assert.match(r.stderr, message);
    }
    writeFileSync(file, JSON.stringify({ config: { transportUrl: 'memory://' }, services: { s: { ...ok, endpoints: './cjs/list.js' } } }));
    const listed = hermodRun([], dir);
    try {
      await until(() => listed.lines.some((l) => l.event === 'serving'), `serving (${listed.err})`, 30_000);
      assert.match(String(listed.lines.find((l) => l.event === 'serving')!.msg), /2 endpoint\(s\)/);
    } finally {
      listed.child.kill('SIGTERM');
    }
    assert.is(await listed.exited, 0, listed.err);
    // hermod.config.cjs is looked for too (a CommonJS package's module run file), after .json.
    const cjsDir = path.join(dir, 'cjs');
    writeFileSync(path.join(cjsDir, 'hermod.config.cjs'), 'module.exports = { servics: {} };\n');
    const found = spawnSync(process.execPath, [HERMOD, 'run'], { cwd: cjsDir, encoding: 'utf8', timeout: 10_000 });
    assert.is(found.status, 2, found.stderr);
    assert.match(found.stderr, /hermod\.config\.cjs: unknown key 'servics'; did you mean 'services'\?/);
    r = hermod(['run', '--workers', 'lots']);
    assert.is(r.status, 2);
    assert.match(r.stderr, /--workers: must be a whole number/);
    writeFileSync(file, '{ "services": ');
    r = hermod(['run']);
    assert.is(r.status, 2);
    assert.match(r.stderr, /cannot read run file hermod\.config\.json/);
    // A copied service block not renamed: JSON.parse kept the second and the first was never served.
    writeFileSync(
      file,
      '{ "services": {\n  "calc": { "endpoints": "./ep.js", "topic": "a" },\n  "calc": { "endpoints": "./ep.js", "topic": "b" }\n} }\n',
    );
    r = hermod(['run']);
    assert.is(r.status, 2, r.stderr);
    assert.match(r.stderr, /cannot read run file hermod\.config\.json: key services\.calc appears twice \(line 3\)/);
    assert.not.match(r.stdout, /"event":"serving"/);
    for (const args of [['--version'], ['-V'], ['run', '--version']]) {
      r = hermod(args);
      assert.is(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stdout, /^\d+\.\d+\.\d+\S*\n$/);
    }
    r = hermod(['statsu']);
    assert.is(r.status, 2);
    assert.match(r.stderr, /unknown command 'statsu'; did you mean 'status'\?/);
    r = hermod(['deploy']);
    assert.is(r.status, 2);
    assert.match(r.stderr, /unknown command 'deploy' \(commands: run, status\)/);
    assert.not.match(r.stderr, /did you mean/);
    r = spawnSync(process.execPath, [HERMOD, 'run'], { cwd: os.tmpdir(), encoding: 'utf8', timeout: 10_000 });
    assert.is(r.status, 2);
    assert.match(r.stderr, /no run file named/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('hermod run: two services on one server queue exit 2 naming both, as each worker and exchange will serve', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hermod-runcfg-'));
  try {
    const file = path.join(dir, 'hermod.config.json');
    writeFileSync(path.join(dir, 'ep.js'), 'export default { async ping() { return 1; } };\n');
    const hermod = (args: string[]) =>
      spawnSync(process.execPath, [HERMOD, 'run', ...args], { cwd: dir, encoding: 'utf8', timeout: 10_000 });
    const run = (services: Record<string, unknown>, args: string[] = [], config: Record<string, unknown> = {}) => {
      writeFileSync(file, JSON.stringify({ config: { transportUrl: 'memory://', ...config }, services }));
      return hermod(args);
    };
    const refused = (r: ReturnType<typeof hermod>, message: RegExp) => {
      assert.is(r.status, 2, r.stderr + r.stdout);
      assert.match(r.stderr, message);
      assert.not.match(r.stdout, /"event":"serving"/);
    };
    refused(
      run({ a: { ...ok, server: 's' }, b: { ...ok, server: 's' } }),
      /services\.b: serves topic 'compute' as server 's' like services\.a/,
    );
    // The exchange left out is the control exchange: the same queue as one naming it.
    refused(
      run({ a: { ...ok, server: 's' }, b: { ...ok, server: 's', exchange: 'openstack' } }),
      /services\.b: serves topic 'compute' as server 's' like services\.a \(exchange openstack\)/,
    );
    refused(
      run({ a: { ...ok, server: 's', exchange: 'nova' }, b: { ...ok, server: 's', config: { controlExchange: 'nova' } } }),
      /services\.b: .* like services\.a \(exchange nova\)/,
    );
    // Workers serve as <server>-<n>: server 'h' with 2 workers is also 'h-1'.
    refused(
      run({ a: { ...ok, server: 'h', workers: 2 }, b: { ...ok, server: 'h-1' } }),
      /services\.b: serves topic 'compute' as server 'h-1' like services\.a/,
    );
    refused(
      run({ a: { ...ok, server: 'h-2' }, b: { ...ok, server: 'h', workers: 2 } }),
      /services\.b: serves topic 'compute' as server 'h-2' \(one of its 2 workers\) like services\.a/,
    );
    // RabbitMQ names the queue <topic>.<server> on any exchange.
    refused(
      run({ a: { ...ok, server: 's', exchange: 'x' }, b: { ...ok, server: 's', exchange: 'y' } }, [], {
        transportUrl: 'rabbit://127.0.0.1:1/',
      }),
      /services\.b: serves topic 'compute' as server 's' like services\.a: one of them/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('hermod run --watch: an edit to the run file itself is told once (it is read at start), and the run stops cleanly', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hermod-runfile-'));
  try {
    writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
    writeFileSync(path.join(dir, 'ep.js'), 'export default { async ping() { return 1; } };\n');
    const file = path.join(dir, 'hermod.config.json');
    const spec = (topic: string) =>
      JSON.stringify({ config: { transportUrl: 'memory://', log: { level: 'info' } }, services: { s: { ...ok, topic } } });
    writeFileSync(file, spec('a'));
    const run = hermodRun(['--watch'], dir);
    try {
      await until(() => run.lines.some((l) => l.event === 'serving'), `serving (${run.err})`, 15_000);
      // Edited, as an editor saves: it changed nothing and nothing said so.
      writeFileSync(file, spec('b'));
      writeFileSync(file, spec('c'));
      await until(() => run.lines.some((l) => l.event === 'run-file-changed'), 'the warning', 10_000);
      await sleep(400);
      const told = run.lines.filter((l) => l.event === 'run-file-changed');
      assert.is(told.length, 1, JSON.stringify(told));
      assert.is(told[0]!.level, 'warn');
      assert.match(String(told[0]!.msg), /hermod\.config\.json changed: the run file is read once, at start; restart the run to apply it/);
      // Deleted, then written again more than a second later: told too (chokidar stops watching
      // a deleted file, and the recreated one went unseen).
      rmSync(file);
      await sleep(1500);
      writeFileSync(file, spec('d'));
      await until(
        () => run.lines.filter((l) => l.event === 'run-file-changed').length === 2,
        'the warning after the file came back',
        10_000,
      );
      await sleep(600);
      assert.is(run.lines.filter((l) => l.event === 'run-file-changed').length, 2, 'once');
    } finally {
      run.child.kill('SIGTERM');
    }
    assert.is(await run.exited, 0, run.err);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('hermod run: a service module whose top-level await never settles fails at watch.reloadTimeoutMs, naming it; a run module so, at its bound', async () => {
  // From a fuzzer: nothing was logged and nothing served, for as long as one cared to wait; a run
  // module so made `hermod run` exit 0 at once, with nothing said.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hermod-runtla-'));
  try {
    writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
    writeFileSync(path.join(dir, 'never.js'), 'await new Promise(() => {});\nexport default { async ping() { return 1; } };\n');
    writeFileSync(
      path.join(dir, 'hermod.config.json'),
      JSON.stringify({
        config: { transportUrl: 'memory://', log: { level: 'info' } },
        watch: { reloadTimeoutMs: 1500 },
        services: { s: { topic: 'tla', endpoints: './never.js' } },
      }),
    );
    const run = hermodRun([], dir);
    try {
      await until(
        () =>
          run.lines.some((l) =>
            /services\.s\.endpoints: \S*never\.js: did not finish loading within 1500 ms \(a top-level await that never settles\?\)/.test(
              String(l.msg),
            ),
          ),
        `the load refused (${run.err})`,
        15_000,
      );
      assert.not.ok(
        run.lines.some((l) => l.event === 'serving'),
        'nothing served',
      );
    } finally {
      run.child.kill('SIGTERM');
    }
    await run.exited;
    // A run file that is a module goes through the same bound (30 s there: nothing configures it yet).
    await rejects(importModule(path.join(dir, 'never.js'), 300), 'HERMOD_ERR_CONFIG', /never\.js: did not finish loading within 300 ms/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a service's first load without a watch bounds its endpoints factory too, naming the module", async () => {
  // From a review: only the import was bounded, so `hermod run` with no watch section and a
  // factory whose promise never settled served nothing and said nothing, for good.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hermod-runfactory-'));
  const transport = await getTransport('memory://never-factory', { config: defaultConfig() });
  try {
    writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
    writeFileSync(path.join(dir, 'fine.js'), 'export default { async ping() { return 1; } };\n');
    writeFileSync(path.join(dir, 'stuck.js'), 'export default async () => { await new Promise(() => {}); };\n');
    const ctx = { server: 's', topic: 'factory', transport };
    const files = [path.join(dir, 'fine.js'), path.join(dir, 'stuck.js')];
    // Unbounded, the load never ends: this says so instead of the test never finishing.
    let guard: NodeJS.Timeout | undefined;
    const stuck = new Promise<never>((_, reject) => {
      guard = setTimeout(() => reject(new Error('still loading after 5 s')), 5000);
    });
    await rejects(
      Promise.race([loadEndpoints(files, ctx, 300), stuck]),
      'HERMOD_ERR_CONFIG',
      /stuck\.js: did not finish loading within 300 ms \(an endpoints factory whose promise never settles\?\)/,
    );
    clearTimeout(guard);
    assert.is((await loadEndpoints([files[0]!], ctx, 300)).endpoints.length, 1, 'a load that finishes is what it was');
  } finally {
    await transport.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
