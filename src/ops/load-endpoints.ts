/**
 * Loading endpoint modules by path, for `rpc-server --endpoints`, `hermod run` and hot reload.
 * A module's default export (or its `endpoints` export) is an endpoint object, a list of them, a
 * class (constructed with the {@link EndpointContext}) or a factory (called with it, may be async).
 * TypeScript modules (`.ts`, `.mts`, `.cts`) load through tsx, registered on first need.
 */
import { realpathSync } from 'node:fs';
import { createRequire, register as registerHooks } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel } from 'node:worker_threads';
import { ConfigError } from '../core/errors.js';
import { loadErrorMessage, sourceFile, syntaxErrorOf } from '../core/syntax-check.js';

export { loadErrorMessage };

import { type EndpointContext, endpointsOfModule } from '../rpc/endpoint-module.js';

export type { EndpointContext };

import { RELOAD_PARAM } from './run/reload-hooks.js';

const TS = /\.[cm]?tsx?$/;
let tsx: Promise<unknown> | undefined;
interface ReloadHooks {
  /** Sends the local files a module of `generation` imports to `listener`; returns its removal. */
  listen(generation: string, listener: (file: string) => void): () => void;
  /** Resolves once every file the loader reported so far has reached its listener. */
  flush(): Promise<void>;
}
let hooks: ReloadHooks | undefined;

/**
 * Registers tsx once, so `.ts` modules (and their `.ts` imports) can be imported. Both of its
 * loaders: a `.ts` file outside a `"type": "module"` package is CommonJS to Node, whose own
 * loader then reads it, and without tsx's hook there it failed on the first type annotation.
 */
export function enableTypeScript(): Promise<unknown> {
  tsx ??= Promise.all([import('tsx/esm/api').then((m) => m.register()), import('tsx/cjs/api').then(registerTypeScriptOnly)]);
  return tsx;
}

/** Node's CommonJS module cache and loaders by extension: the same objects for every `require` of the process. */
const { cache: requireCache, extensions: requireExtensions } = createRequire(import.meta.url);

/**
 * tsx's CommonJS hook for TypeScript files alone. It also takes over `.js` and `.mjs`, compiling
 * an ES module that CommonJS require()s into a second CommonJS copy: a service's
 * `require('hermod')` then got classes of its own (`its target must be a Target`), and a module
 * shared with an ES module was two modules, once any service of the process was TypeScript.
 */
function registerTypeScriptOnly(api: { register(): unknown }): void {
  const kept = ['.js', '.mjs', '.cjs'].map((ext) => [ext, Object.getOwnPropertyDescriptor(requireExtensions, ext)] as const);
  api.register();
  const compile = requireExtensions['.ts'];
  for (const [ext, descriptor] of kept) {
    if (descriptor) Object.defineProperty(requireExtensions, ext, descriptor);
    else delete requireExtensions[ext];
  }
  // `.cts` reached tsx through its `.js` loader, which Node uses for unknown extensions.
  if (compile) requireExtensions['.cts'] = compile;
}

/**
 * The local CommonJS modules loaded from `roots`: each root that loaded as CommonJS and what it
 * required, down the tree (`node_modules` left out, as in an ES module's reload). `keys` are
 * their cache keys (a file name; on Node 22 and later sometimes with the import URL's query).
 * `pinned` are the ES modules among what they required: require() returns the instance Node's
 * ES module loader holds for good, whatever the cache says, so no reload reads them again.
 * Native addons are left alone: most cannot be loaded twice ("did not self-register").
 */
function localCommonJs(roots: Iterable<string>): { keys: Set<string>; pinned: Set<string> } {
  const keys = new Set<string>();
  const pinned = new Set<string>();
  const walk = (key: string, required: boolean) => {
    if (keys.has(key) || key.endsWith('.node') || key.split(path.sep).includes('node_modules')) return;
    const mod = requireCache[key];
    if (!mod) return;
    if ((mod.exports as { [Symbol.toStringTag]?: unknown } | null)?.[Symbol.toStringTag] === 'Module') {
      if (required) pinned.add(key.replace(/\?.*$/, ''));
      return;
    }
    keys.add(key);
    for (const child of mod.children) walk(child.filename, true);
  };
  const all = Object.keys(requireCache);
  for (const root of roots) {
    walk(root, false);
    // Node 22 keeps a module that tsx's CommonJS hook compiled under the URL's query too
    // (`ep.ts?hermod-reload=7`), one more key per reload.
    for (const k of all) if (k.startsWith(`${root}?`)) walk(k, false);
  }
  return { keys, pinned };
}

/** Per module path, the local files its last fresh import loaded (the roots of its CommonJS tree). */
const freshFiles = new Map<string, string[]>();

/**
 * Registers the reload hooks once; they report, per reload generation, the local files a module
 * imported (for the watcher).
 */
function reloadHooks(): ReloadHooks {
  if (hooks) return hooks;
  const { port1, port2 } = new MessageChannel();
  // Several imports of one reload pass share its generation, and each hears every file of it.
  const listeners = new Map<string, Set<(file: string) => void>>();
  const flushes = new Map<number, () => void>();
  let flushId = 0;
  port1.on('message', (m: { generation: string; file: string } | { flushed: number }) => {
    if ('flushed' in m) flushes.get(m.flushed)?.();
    else for (const listener of listeners.get(m.generation) ?? []) listener(m.file);
  });
  port1.unref();
  registerHooks('./run/reload-hooks.js', import.meta.url, { data: { port: port2 }, transferList: [port2] });
  hooks = {
    listen(generation, listener) {
      const set = listeners.get(generation) ?? new Set();
      listeners.set(generation, set.add(listener));
      return () => {
        set.delete(listener);
        if (set.size === 0 && listeners.get(generation) === set) listeners.delete(generation);
      };
    },
    // The loader thread answers a flush on the port its reports travel on, so the answer comes
    // after them: import() alone may resolve before they arrive (it did on a loaded machine,
    // and a file edited just after was never watched).
    flush() {
      const id = ++flushId;
      port1.ref();
      return new Promise<void>((resolve) => {
        flushes.set(id, () => {
          flushes.delete(id);
          if (flushes.size === 0) port1.unref();
          resolve();
        });
        port1.postMessage({ flush: id });
      });
    },
  };
  return hooks;
}

let generations = 0;

/**
 * One reload pass: the imports given it (every endpoint module a reload loads) share one
 * generation, so a local file two of them import is evaluated once, one instance shared by both
 * as in a plain import, and a CommonJS module they both require is read again once.
 */
export interface FreshPass {
  readonly generation: string;
  /** require.cache keys this pass dropped already: dropped again, a second import would read a second copy. */
  readonly cleared: Set<string>;
}

/** A new reload pass for {@link importFresh}'s `pass`. */
export function freshPass(): FreshPass {
  return { generation: String(++generations), cleared: new Set() };
}

/** Options of {@link importFresh}. */
export interface FreshImport {
  /** The reload pass this import belongs to (see {@link freshPass}); without it, a pass of its own. */
  pass?: FreshPass;
  /** Called with every local file the module imports, as the loader resolves it. */
  onFile?: (file: string) => void;
  /**
   * Called with every local ES module that a CommonJS module of this import require()s: Node
   * keeps its first instance for the process's life, so no reload takes edits to it.
   */
  onPinned?: (file: string) => void;
}

/**
 * Imports `file` as a new module instance: it and its local imports are evaluated again
 * (`node_modules` stays cached), so edited code is what runs. Each call leaves the old instance
 * in Node's module map (ESM modules are never unloaded): memory grows by one copy of the
 * module's code per reload, which is why this is for development-time and occasional reloads.
 */
export async function importFresh(file: string, options: FreshImport = {}): Promise<Record<string, unknown>> {
  // Only for TypeScript: tsx compiles a `.js` file outside a `"type": "module"` package to
  // CommonJS even when its syntax is ESM (which Node itself runs as ESM), and its exports then
  // arrive wrapped (see esModuleExports).
  if (TS.test(file)) await enableTypeScript();
  const pass = options.pass ?? freshPass();
  const generation = pass.generation;
  const reload = reloadHooks();
  const abs = path.resolve(file);
  // Imported by its real path: Node's resolver keeps the real path of every path it resolved for
  // the process's life, so a symlink swapped since (a deploy's `current -> releases/v2`) still led
  // to the first release, and the reload served the old code while saying it took the new.
  const real = realPath(abs);
  const reported = real === abs ? [abs] : [abs, real];
  const onFile = options.onFile ?? (() => {});
  const done = reload.listen(generation, (f) => {
    reported.push(f);
    onFile(f);
  });
  // Node's CommonJS loader keeps a module by file name, whatever the query of the URL it was
  // imported by: without this, a CommonJS module (`.cjs`, a `.js` in a package without
  // `"type": "module"`, TypeScript there) and what it requires kept their old code while the
  // reload was logged. Computed now rather than at the last load: a require() run inside a
  // method since is part of the tree too.
  // A module loaded once by a plain import (a run that does not watch, reloaded on SIGHUP) has
  // no tree recorded yet: its own file is where the tree starts.
  for (const key of localCommonJs(freshFiles.get(abs) ?? [real]).keys) {
    if (pass.cleared.has(key)) continue;
    pass.cleared.add(key);
    delete requireCache[key];
  }
  try {
    const url = new URL(pathToFileURL(real));
    url.searchParams.set(RELOAD_PARAM, generation);
    return esModuleExports((await import(url.href)) as Record<string, unknown>);
  } finally {
    // Also when the import failed: the files it got to are where the error may be.
    await reload.flush();
    freshFiles.set(abs, reported);
    // What CommonJS modules require() passes by the loader hooks: watched from here.
    const seen = new Set(reported);
    const tree = localCommonJs(reported);
    for (const key of tree.keys) {
      const f = key.replace(/\?.*$/, '');
      if (seen.has(f)) continue;
      seen.add(f);
      onFile(f);
    }
    for (const f of tree.pinned) options.onPinned?.(f);
    // Late reports from the loader thread still reach the listener for a moment.
    setTimeout(done, 1000).unref();
  }
}

/** `file`'s real path, read now (no cache); `file` itself when it does not exist (the import says so). */
function realPath(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return file;
  }
}

/**
 * How long a module may take to load (its top-level awaits included) before it is refused, as a
 * reload is refused past watch.reloadTimeoutMs (30 s by default, the same bound).
 */
export const MODULE_LOAD_TIMEOUT_MS = 30_000;

/**
 * Imports a service or run-file module. Bounded: a top-level await that never settles made
 * `hermod run` exit 0 at once with nothing said (nothing kept the event loop alive), or wait
 * forever with nothing served when something else did. The timer keeps the process alive for
 * the error; the import itself cannot be cancelled and is abandoned.
 */
export async function importModule(file: string, timeoutMs = MODULE_LOAD_TIMEOUT_MS): Promise<Record<string, unknown>> {
  return withinLoadBound(importOnce(file), timeoutMs, file);
}

/** Imports a module once (TypeScript through tsx), unbounded. */
async function importOnce(file: string): Promise<Record<string, unknown>> {
  if (TS.test(file)) await enableTypeScript();
  return esModuleExports((await import(pathToFileURL(path.resolve(file)).href)) as Record<string, unknown>);
}

/** What a load bound names when it runs out: the module, and what may be holding it. */
export interface LoadStage {
  what: string;
  hint: string;
}

const TOP_LEVEL_AWAIT = 'a top-level await that never settles?';

/**
 * `loading`, or a ConfigError naming `what` once it took `timeoutMs` (`what` may be asked at
 * that moment, for a load of several modules). The timer is ref'd on purpose: it keeps the
 * process alive to say so.
 */
export async function withinLoadBound<T>(loading: Promise<T>, timeoutMs: number, what: string | (() => LoadStage)): Promise<T> {
  loading.catch(() => undefined);
  const stage = typeof what === 'string' ? () => ({ what, hint: TOP_LEVEL_AWAIT }) : what;
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const { what, hint } = stage();
      reject(new ConfigError(`${what}: did not finish loading within ${timeoutMs} ms (${hint})`, { key: what }));
    }, timeoutMs);
  });
  try {
    return await Promise.race([loading, bound]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The exports an ES module's author wrote, also when it was compiled to CommonJS on the way in
 * (tsx does so for an ESM-syntax `.js` file outside a `"type": "module"` package once it is
 * registered for a TypeScript service in the same process): Node then hands over
 * `{ default: { __esModule: true, default, ...named } }`, and without this the factory itself
 * would be served as an RPC method called `default`. Babel's and TypeScript's interop rule.
 */
export function esModuleExports(mod: Record<string, unknown>): Record<string, unknown> {
  const inner = mod.default as Record<string, unknown> | null | undefined;
  if (inner && (typeof inner === 'object' || typeof inner === 'function') && inner.__esModule === true) return inner;
  return mod;
}

/** Turns a module's exports into endpoint objects. */
export function endpointsOf(mod: Record<string, unknown>, spec: string, ctx: EndpointContext): Promise<object[]> {
  return endpointsOfModule(mod, ctx, (reason) => new ConfigError(`${spec}: ${reason}`, { key: spec }));
}

/** What {@link loadEndpoints} loaded. */
export interface LoadedEndpoints {
  endpoints: object[];
  /**
   * The modules' `dispose` exports: a SIGHUP reload that replaces them calls these, as a watched
   * reload does (they were dropped, and the startup instance's timers and pools ran on).
   */
  disposers: Array<() => unknown>;
}

/**
 * Loads the endpoints of every module in `specs` (paths, relative to the working directory),
 * all of it within `timeoutMs`: the imports and the factories they export. A factory whose
 * promise never settled left `hermod run` without a watch silent for good, as a top-level await
 * did before the imports were bounded. The error names the module being loaded then.
 */
export async function loadEndpoints(
  specs: readonly string[],
  ctx: EndpointContext,
  timeoutMs = MODULE_LOAD_TIMEOUT_MS,
): Promise<LoadedEndpoints> {
  let stage: LoadStage = { what: specs[0] ?? '', hint: TOP_LEVEL_AWAIT };
  const loading = (async () => {
    const endpoints: object[] = [];
    const disposers: Array<() => unknown> = [];
    for (const spec of specs) {
      stage = { what: spec, hint: TOP_LEVEL_AWAIT };
      const mod = await importOnce(spec);
      if (typeof mod.dispose === 'function') disposers.push(mod.dispose as () => unknown);
      stage = { what: spec, hint: 'an endpoints factory whose promise never settles?' };
      endpoints.push(...(await endpointsOf(mod, spec, ctx)));
    }
    return { endpoints, disposers };
  })();
  return withinLoadBound(loading, timeoutMs, () => stage);
}

const LOCATION = /(file:\/\/[^\s)?:]+|\/[^\s():?]+\.[cm]?[jt]sx?)(?:\?[^\s):]*)?:(\d+)(?::(\d+))?/g;
/**
 * hermod's own code, never where a user's module failed: dist/src/ (this file is in its ops/), and
 * src/ for stacks mapped back to the TypeScript sources (--enable-source-maps).
 */
const DIST_SRC = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '..');
const OWN = [DIST_SRC, path.resolve(DIST_SRC, '..', '..', 'src')].map((d) => d + path.sep);

function location(text: string, known: readonly string[] = []): string | undefined {
  for (const m of text.matchAll(LOCATION)) {
    const file = m[1]!.startsWith('file:') ? fileURLToPath(m[1]!) : m[1]!;
    // Frames in hermod (an export that is no endpoint is reported from endpointsOf) or a package
    // (tsx, esbuild) would send the reader to code that is not theirs.
    if (OWN.some((d) => file.startsWith(d)) || file.includes(`${path.sep}node_modules${path.sep}`)) continue;
    return `${sourceFile(file, known)}:${m[2]}${m[3] ? `:${m[3]}` : ''}`;
  }
  return undefined;
}

/**
 * Where a module failed to load, as `file:line[:column]`: from the error (esbuild transform
 * errors, a throw at the top level), else, for a JavaScript syntax error (V8 does not put the
 * file in the error of an ESM parse), by `node --check` on each file the load involved (`files`,
 * the module first). Falls back to the module's path.
 */
export async function loadErrorLocation(err: unknown, files: readonly string[]): Promise<string> {
  const text = err instanceof Error ? `${err.message}\n${err.stack ?? ''}` : String(err);
  const found = location(text, files);
  if (found || !(err instanceof SyntaxError)) return found ?? files[0] ?? '?';
  for (const file of files.filter((f) => /\.[cm]?js$/.test(f))) {
    const found = await syntaxErrorOf(file);
    const where = found && location(found.where);
    if (where) return where;
  }
  return files[0] ?? '?';
}
