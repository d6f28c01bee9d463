/**
 * Module customization hooks of hot reload (registered with `node:module` `register()`, run in
 * Node's loader thread). An endpoints module imported with `?hermod-reload=<generation>` passes
 * that generation on to every local file it imports, so one reload re-evaluates the module and
 * its local imports while packages stay cached; each local file is reported to the main
 * thread, which watches it. Written here rather than taken from tsx's namespaced `tsImport`:
 * that adds a loader to Node's chain per call that is never removed, so it grows with every reload.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { MessagePort } from 'node:worker_threads';

/** The query parameter that carries a reload generation. */
export const RELOAD_PARAM = 'hermod-reload';

let port: MessagePort | undefined;

/** Receives the port the main thread listens on for imported files. */
export function initialize(data: { port?: MessagePort } | undefined): void {
  port = data?.port;
  // A flush is answered on the port the reports travel on: the main thread then has them all.
  port?.on('message', (m: { flush?: number }) => {
    if (m.flush !== undefined) port?.postMessage({ flushed: m.flush });
  });
  port?.unref();
}

type Resolved = { url: string; format?: string | null; shortCircuit?: boolean };
type NextResolve = (specifier: string, context: { parentURL?: string }) => Promise<Resolved>;

/**
 * A package: a bare specifier (`hermod`, `lodash/fp`), resolved through node_modules. Its real
 * path may lie outside any node_modules (`npm link`, `npm i ../pkg`, a workspace), so the path
 * alone does not tell: tagged, such a package was loaded again by every reload, a second hermod
 * whose classes the running one refuses. The user's own files are imported by a relative or
 * absolute path, a file: URL, or the package's own `#` imports.
 */
function isPackage(specifier: string): boolean {
  return !/^(\.{1,2}(\/|$)|\/|file:|#)/.test(specifier) && !/^[a-zA-Z]:[\\/]/.test(specifier);
}

/**
 * `result`'s URL with the real path its specifier names now. Node's resolver keeps each path's
 * real path for the process's life, so an import that goes through a symlink swapped since (a
 * deploy's `current -> releases/v2`) resolved to the first target for good.
 */
function freshRealUrl(specifier: string, parent: string, result: string): URL {
  const url = new URL(result);
  if (!/^(\.{1,2}(\/|$)|\/|file:)/.test(specifier)) return url;
  try {
    const named = new URL(specifier, parent);
    const real = pathToFileURL(realpathSync(fileURLToPath(named)));
    // Only where the specifier names the file itself (tsx maps `./x.js` to `x.ts`, say).
    if (real.pathname.split('/').pop() === url.pathname.split('/').pop()) return new URL(real.href + url.search);
  } catch {
    // Not a file as written (tsx's extension mapping): what the resolver said.
  }
  return url;
}

/** Tags local imports of a reloaded module with its generation. */
export async function resolve(specifier: string, context: { parentURL?: string }, nextResolve: NextResolve): Promise<Resolved> {
  const result = await nextResolve(specifier, context);
  const parent = context.parentURL;
  if (!parent?.startsWith('file:') || !result.url.startsWith('file:') || result.url.includes('/node_modules/') || isPackage(specifier))
    return result;
  const generation = new URL(parent).searchParams.get(RELOAD_PARAM);
  if (generation === null) return result;
  const url = freshRealUrl(specifier, parent, result.url);
  url.searchParams.set(RELOAD_PARAM, generation);
  port?.postMessage({ generation, file: fileURLToPath(url) });
  return { ...result, url: url.href };
}
