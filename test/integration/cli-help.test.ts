import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

// Every bin's --help ends with the one exit table and offers the logging flags, so that a script
// author learns the statuses wherever they look; and --help never runs the program (hermod-demo
// ran the whole demo).

const t = suite('cli - every --help');

const binPath = (name: string) => fileURLToPath(new URL(`../../bin/${name}.js`, import.meta.url));

const help = (file: string, args: string[]) => spawnSync(process.execPath, [binPath(file), ...args], { encoding: 'utf8', timeout: 20_000 });

const CASES: Array<{ file: string; args: string[]; logFlags: boolean }> = [
  { file: 'rpc-server', args: ['--help'], logFlags: true },
  { file: 'rpc-client', args: ['--help'], logFlags: true },
  { file: 'notify-send', args: ['--help'], logFlags: true },
  { file: 'notify-listen', args: ['--help'], logFlags: true },
  { file: 'hermod-router', args: ['--help'], logFlags: true },
  { file: 'hermod-gateway', args: ['--help'], logFlags: true },
  { file: 'hermod', args: ['--help'], logFlags: false },
  { file: 'hermod', args: ['run', '--help'], logFlags: true },
  { file: 'hermod', args: ['status', '--help'], logFlags: true },
  { file: 'demo', args: ['--help'], logFlags: false },
];

for (const c of CASES) {
  t(`${c.file} ${c.args.join(' ')}: exit 0, the exit table${c.logFlags ? ', the logging flags' : ''}`, () => {
    const r = help(c.file, c.args);
    assert.is(r.status, 0, r.stderr);
    assert.is(r.stderr, '');
    assert.match(r.stdout, /^Usage: /);
    assert.match(r.stdout, /Exit status \(all hermod CLIs\):\n {2}0 {2}ok\n/);
    assert.match(r.stdout, /129 \/ 130 \/ 143 {2}a second SIGHUP \/ SIGINT \/ SIGTERM/);
    if (c.logFlags) {
      for (const flag of ['--log-level <level>', '--quiet', '--log-json']) assert.ok(r.stdout.includes(flag), `${flag} missing`);
    }
  });
}

t('hermod-demo --help says what the demo does and starts nothing; an unknown flag is exit 2', () => {
  const r = help('demo', ['--help']);
  assert.match(r.stdout, /embedded AMQP 1\.0 router/);
  assert.not.match(r.stdout, /▶/);
  const bad = help('demo', ['--bogus']);
  assert.is(bad.status, 2);
  assert.match(bad.stderr, /unknown option '--bogus'/);
  assert.not.match(bad.stdout, /▶/);
});

t('hermod with no command prints its usage and exits 2', () => {
  const r = help('hermod', []);
  assert.is(r.status, 2);
  assert.match(r.stdout, /Commands:\n {2}run /);
});

t.run();
