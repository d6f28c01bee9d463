import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

// The test runner's diagnosis of a process held open by a leaked handle: it must name the leaked
// timer's creation site and the open sockets, and leave cleared or unref'd timers out.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const preload = pathToFileURL(path.join(root, 'scripts', 'linger-report.mjs')).href;

const t = suite('linger report (scripts/linger-report.mjs)');

t('SIGUSR2 lists the live ref’d timers with where they were made, and the open sockets', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hermod-linger-'));
  try {
    const script = path.join(dir, 'leaky.mjs');
    writeFileSync(
      script,
      [
        "import net from 'node:net';",
        'function leakTimer() { setTimeout(() => {}, 600000); }',
        'leakTimer();',
        'clearTimeout(setTimeout(() => {}, 500000));',
        'setTimeout(() => {}, 400000).unref();',
        'setInterval(() => {}, 300000);',
        "const server = net.createServer().listen(0, '127.0.0.1', () => {",
        "  net.connect(server.address().port, '127.0.0.1', () => console.log('ready'));",
        '});',
      ].join('\n'),
    );
    const child = spawn(process.execPath, ['--import', preload, script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      if (stdout.includes('ready')) {
        child.kill('SIGUSR2');
        setTimeout(() => child.kill('SIGTERM'), 500);
      }
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    await new Promise((r) => child.on('close', r));
    assert.match(stderr, /linger report: active resources: .*TCPServerWrap/);
    assert.match(stderr, /timer of 600000 ms, created at\n\s+at leakTimer \(.*leaky\.mjs:2:/);
    assert.match(stderr, /timer of 300000 ms \(interval\)/);
    assert.not.match(stderr, /500000|400000/, 'cleared and unref’d timers hold nothing open');
    assert.match(stderr, /server listening on \{"address":"127\.0\.0\.1"/);
    assert.match(stderr, /socket 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+ \(open\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t.run();
