/** rpc-server's `--endpoints` modules: loading them (a broken one is a usage error naming file and line) and saying what they serve. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { modulePathProblem } from '../core/module-paths.js';
import { commonJsSyntaxHint, loadErrorMessage, syntaxErrorOf, transformErrorWhere } from '../core/syntax-check.js';
import { findMethod } from '../rpc/dispatcher.js';
import { type EndpointContext, endpointsOfModule } from '../rpc/endpoint-module.js';
import { UsageError } from './exit-codes.js';

/** `file:line: SyntaxError: …` of a syntax error in `file` (see syntaxErrorOf). */
async function syntaxErrorAt(file: string): Promise<string | undefined> {
  const found = await syntaxErrorOf(file);
  return found ? `${found.where}: ${found.what}` : undefined;
}

/** How a module is imported: plain `import()` here; the bins pass one that also loads TypeScript. */
export type ModuleImporter = (file: string) => Promise<Record<string, unknown>>;

const plainImport: ModuleImporter = async (file) => (await import(pathToFileURL(file).href)) as Record<string, unknown>;

async function importModule(spec: string, load: ModuleImporter): Promise<Record<string, unknown>> {
  const file = path.resolve(spec);
  const problem = modulePathProblem(file);
  if (problem) throw new UsageError(`--endpoints ${spec}: ${problem}`);
  try {
    return await load(file);
  } catch (err) {
    const e = err as Error & { code?: string };
    if (e instanceof SyntaxError) {
      const at = await syntaxErrorAt(file);
      throw new UsageError(`--endpoints ${spec}: ${at ?? `${e.name}: ${e.message}`}${commonJsSyntaxHint(e.message, file)}`, { cause: err });
    }
    if (e?.code === 'ERR_MODULE_NOT_FOUND' || e?.code === 'ENOENT') {
      // Node's text for the module itself names hermod's loader as the importer: say it as `hermod run` does.
      if (!existsSync(file)) throw new UsageError(`--endpoints ${spec}: ${file} does not exist`, { cause: err });
      throw new UsageError(`--endpoints ${spec}: ${e.message}`, { cause: err });
    }
    // esbuild's report of a TypeScript file: its place and reason on one line, as `hermod run` says it.
    const where = transformErrorWhere(err, [file]);
    if (where) {
      const message = loadErrorMessage(err);
      throw new UsageError(`--endpoints ${spec}: ${where}: ${e.name}: ${message}${commonJsSyntaxHint(message, file)}`, { cause: err });
    }
    // The module ran and threw: its own error, with its own stack, is the useful report.
    throw new UsageError(`--endpoints ${spec}: loading it threw ${e?.name ?? 'an error'}: ${e?.message ?? String(err)}`, { cause: err });
  }
}

/** How long a module's endpoints factory may take, as `hermod run`'s first load (30 s). */
export const FACTORY_TIMEOUT_MS = 30_000;

/**
 * `making`, or a UsageError once it took `timeoutMs`. The timer is ref'd on purpose: it keeps
 * the process alive to say so (a factory whose promise never settled left rpc-server silent,
 * serving nothing, until a signal).
 */
async function withinFactoryBound<T>(making: Promise<T>, timeoutMs: number, spec: string): Promise<T> {
  making.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new UsageError(
            `--endpoints ${spec}: its endpoints factory did not finish within ${timeoutMs} ms (a promise that never settles?)`,
          ),
        ),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([making, bound]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Loads endpoint modules (what each may export: see endpointsOfModule); a factory gets
 * `factoryTimeoutMs` to make its endpoints (the import's own bound is `load`'s).
 */
export async function loadEndpoints(
  specs: string[],
  ctx: EndpointContext,
  load: ModuleImporter = plainImport,
  factoryTimeoutMs = FACTORY_TIMEOUT_MS,
): Promise<object[]> {
  const out: object[] = [];
  for (const spec of specs) {
    const mod = await importModule(spec, load);
    const making = endpointsOfModule(mod, ctx, (reason) => new UsageError(`--endpoints ${spec}: ${reason}`));
    out.push(...(await withinFactoryBound(making, factoryTimeoutMs, spec)));
  }
  return out;
}

/** The methods an endpoint serves (those the dispatcher would call), in definition order. */
export function methodNames(endpoint: object): string[] {
  const names = new Set<string>();
  for (let o: object | null = endpoint; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const n of Object.getOwnPropertyNames(o)) if (findMethod(endpoint, n)) names.add(n);
  }
  return [...names];
}

/** One endpoint for the log: `namespace compute v1.3: resize, reboot`. */
export function describeEndpoint(endpoint: object): string {
  const t = (endpoint as { target?: { namespace?: string; version?: string } }).target;
  const ns = t?.namespace ? `namespace ${t.namespace} ` : '';
  const methods = methodNames(endpoint);
  return `${ns}v${t?.version ?? '1.0'}: ${methods.length ? methods.join(', ') : '(no methods)'}`;
}
