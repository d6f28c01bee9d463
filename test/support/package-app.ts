import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as assert from 'uvu/assert';

/** The checkout's root (tests run from dist/test). */
export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

const npm = (args: string[], cwd: string) =>
  spawnSync('npm', args, { cwd, encoding: 'utf8', timeout: 180_000, env: { ...process.env, npm_config_update_notifier: 'false' } });

/** A scratch app with hermod installed from its `npm pack` tarball. */
export interface PackedApp {
  dir: string;
  app: string;
  tarball: string;
  /** The tarball's file list, as `npm pack --json` reports it (paths relative to the package root). */
  files: string[];
}

/**
 * Packs the checkout and installs the tarball into an empty ES-module app in a temp dir, with
 * `extra` packages beside it (e.g. TypeScript). The caller removes `dir`.
 */
export function packAndInstall(extra: string[] = []): PackedApp {
  const dir = mkdtempSync(path.join(tmpdir(), 'hermod-pkg-'));
  // dist/ is already built by `npm test`; --ignore-scripts keeps `prepare` from rebuilding it
  // under the suites that are running from it.
  const pack = npm(['pack', '--json', '--ignore-scripts', '--pack-destination', dir], root);
  assert.is(pack.status, 0, pack.stderr);
  const [info] = JSON.parse(pack.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const tarball = path.join(dir, info!.filename);
  const app = path.join(dir, 'app');
  mkdirSync(app);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'scratch-app', private: true, type: 'module' }));
  // --prefer-offline: the packages are in npm's cache after `npm ci`; the registry is only asked when they are not.
  const install = npm(['install', '--prefer-offline', '--no-audit', '--no-fund', tarball, ...extra], app);
  assert.is(install.status, 0, install.stdout + install.stderr);
  return { dir, app, tarball, files: info!.files.map((f) => f.path) };
}

/** `typescript@<the checkout's version>`: the scratch app compiles with what hermod is built with. */
export function typescriptSpec(): string {
  const { version } = JSON.parse(readFileSync(path.join(root, 'node_modules/typescript/package.json'), 'utf8')) as { version: string };
  return `typescript@${version}`;
}
