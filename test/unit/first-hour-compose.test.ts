// The first hour's setup files (issue #13, "Library and package" and "--help texts"):
// docker-compose images pinned to release tags, each with a health check (so `docker compose up
// --wait` means ready), and `--help-config` showing the CLIs' own transport default.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const bin = path.join(root, 'dist', 'bin', 'rpc-server.js');

/** The services of docker-compose.yml with their image and whether they declare a healthcheck (indentation-based, no YAML dependency). */
function services(text: string): Array<{ name: string; image?: string; healthcheck: boolean }> {
  const out: Array<{ name: string; image?: string; healthcheck: boolean }> = [];
  let inServices = false;
  for (const line of text.split('\n')) {
    if (/^services:\s*$/.test(line)) inServices = true;
    else if (/^\S/.test(line)) inServices = false;
    else if (inServices && /^ {2}[\w-]+:\s*$/.test(line)) out.push({ name: line.trim().slice(0, -1), healthcheck: false });
    else if (inServices && out.length) {
      const s = out[out.length - 1]!;
      const image = /^ {4}image:\s*(\S+)/.exec(line);
      if (image) s.image = image[1];
      if (/^ {4}healthcheck:/.test(line)) s.healthcheck = true;
    }
  }
  return out;
}

test('docker-compose: every image pinned to a release tag, every service with a health check', () => {
  const list = services(readFileSync(path.join(root, 'docker-compose.yml'), 'utf8'));
  assert.ok(list.length >= 2, `services found: ${JSON.stringify(list)}`);
  for (const s of list) {
    assert.ok(s.image, `${s.name} has an image`);
    const tag = s.image!.split(':').pop()!;
    assert.match(tag, /^\d+\.\d+\.\d+/, `${s.name}: ${s.image} is pinned to a release (x.y.z), not a moving tag`);
    assert.ok(s.healthcheck, `${s.name} has a healthcheck`);
  }
});

test('rpc-server --help-config shows the router as the transport default, and the library default beside it', () => {
  const r = spawnSync(process.execPath, [bin, '--help-config'], { encoding: 'utf8', timeout: 15_000 });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /transportUrl\s+\(default "amqp:\/\/127\.0\.0\.1:5672\/" here, library default "memory:\/\/"/);
});

test.run();
