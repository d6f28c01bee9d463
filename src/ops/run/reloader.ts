/**
 * Hot reload of one server's endpoint modules: chokidar watches each module and the local files
 * it imports; a change re-imports the modules as new instances (importFresh) and swaps them into
 * the running server, whose subscription and connection stay as they are. Requests already
 * running finish on the old code. A module that fails to load leaves the old code serving and
 * is logged with its file and line; the next save tries again.
 */
import { existsSync, statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { type FSWatcher, watch } from 'chokidar';
import { type EndpointContext, endpointsOf, freshPass, importFresh, loadErrorLocation, loadErrorMessage } from '../load-endpoints.js';
import type { RunLogger } from './types.js';

/** After a reload, when modification times are compared again (past chokidar's 50 ms change throttle). */
const VERIFY_MS = 120;
/** How often a deleted file's return is looked for; it is reported missing at the first look that still misses it. */
const MISSING_CHECK_MS = 250;

/** How files are watched. */
export interface WatchOptions {
  /**
   * Poll file stats instead of OS events: for containers with bind mounts and network
   * filesystems, where OS events do not arrive.
   * @default false
   */
  usePolling?: boolean;
  /** Polling interval, ms. @default 300 */
  interval?: number;
  /** Quiet time after the last change before reloading, ms (an editor's save is often several writes). @default 100 */
  debounceMs?: number;
  /**
   * How long a reload may take to import the modules, ms. A module whose top level awaits
   * something that never settles would otherwise hold every later reload (and the stop) behind
   * it; past this the reload counts as failed, the previous code keeps serving, and the next
   * save tries again (the stuck import is abandoned: ES module evaluation cannot be cancelled).
   * @default 30000
   */
  reloadTimeoutMs?: number;
}

/** {@link WatchOptions.reloadTimeoutMs}'s default. */
export const DEFAULT_RELOAD_TIMEOUT_MS = 30_000;

/** Where the new endpoints go: a running RPCServer. */
export interface EndpointTarget {
  /** Swaps them in; the promise, if any, resolves once nothing runs on the old ones (their modules' `dispose` waits for it). */
  replaceEndpoints(endpoints: readonly object[]): void | Promise<void>;
}

/** Counters of a reloader, for logs and tests. */
export interface ReloadStats {
  reloads: number;
  failures: number;
}

/** Watches and reloads the endpoint modules of one server. */
export class EndpointReloader {
  private readonly specs: readonly string[];
  private readonly files = new Set<string>();
  /** ES modules a CommonJS module require()s, told about once. */
  private readonly pinnedFiles = new Set<string>();
  private watcher: FSWatcher | undefined;
  private target: EndpointTarget | undefined;
  private timer: NodeJS.Timeout | undefined;
  private verify: NodeJS.Timeout | undefined;
  private settle: NodeJS.Timeout | undefined;
  private settling: Promise<void> | undefined;
  /**
   * Watched files deleted and not back yet (with when, and whether the operator was told), and
   * the timer that looks for their return.
   */
  private readonly missing = new Map<string, { since: number; warned: boolean }>();
  private missingTimer: NodeJS.Timeout | undefined;
  /** What each file was when the serving code was read from it. */
  private loadedStamps = new Map<string, string>();
  private running: Promise<void> | undefined;
  /** End the imports reloads wait for, when the reloader closes. */
  private readonly abandon = new Set<(err: Error) => void>();
  private again = false;
  private closed = false;
  /**
   * The `dispose` exports of the modules serving now, and of the last load not yet swapped in.
   * An ES module cannot be unloaded: without them an old instance's timers, sockets and pools
   * ran on after every reload (101 versions' intervals ticking after 100 SIGHUPs).
   */
  private disposers: Array<() => unknown> | undefined;
  private loadedDisposers: Array<() => unknown> = [];
  private readonly counts: ReloadStats = { reloads: 0, failures: 0 };

  constructor(
    specs: readonly string[],
    private readonly ctx: EndpointContext,
    private readonly log: RunLogger,
    private readonly options: WatchOptions = {},
    private readonly fields: Record<string, unknown> = {},
  ) {
    this.specs = specs.map((s) => path.resolve(s));
    for (const s of this.specs) this.files.add(s);
  }

  /**
   * Loads the modules as fresh instances, recording the local files they import. `cut` ends a
   * load that was abandoned (timed out, or the reloader closed): the modules after a stuck one,
   * and the factories of all, would otherwise still run once it settled, making database pools
   * or timers that nothing serves with and nothing closes.
   */
  async load(cut?: { abandoned: boolean }): Promise<object[]> {
    const out: object[] = [];
    const stamps = this.stamps();
    const check = () => {
      if (cut?.abandoned) throw new Error('the reload was abandoned');
    };
    const disposers: Array<() => unknown> = [];
    let loaded = false;
    try {
      out.push(...(await this.loadEach(stamps, disposers, check, cut)));
      loaded = true;
    } finally {
      // Modules loaded before one that failed (or before the load was abandoned) serve nothing:
      // what their factories made (timers, pools) is closed now, not left running.
      if (!loaded && disposers.length > 0) this.disposeOld(disposers);
    }
    this.loadedStamps = stamps;
    // Serving once start() or attach() takes them (the first load) or reload() swaps them in.
    this.loadedDisposers = disposers;
    return out;
  }

  private async loadEach(
    stamps: Map<string, string>,
    disposers: Array<() => unknown>,
    check: () => void,
    cut: { abandoned: boolean } | undefined,
  ): Promise<object[]> {
    const out: object[] = [];
    // One pass for every module of this load: a local file two of them import is one instance, as in a plain run.
    const pass = freshPass();
    for (const spec of this.specs) {
      check();
      const involved = [spec];
      const onFile = (f: string) => {
        involved.push(f);
        // A load cut by close() goes on in the background: chokidar's add() reopens a closed
        // watcher, and the file watch it makes is never closed.
        if (this.files.has(f) || this.closed) return;
        this.files.add(f);
        stamps.set(f, stampOf(f));
        this.watcher?.add(f);
      };
      try {
        const mod = await importFresh(spec, { pass, onFile, onPinned: (f) => this.pinned(f) });
        // Its top level ran: from here on, a load that serves nothing disposes it too.
        if (typeof mod.dispose === 'function') disposers.push(mod.dispose as () => unknown);
        check();
        out.push(...(await endpointsOf(mod, spec, this.ctx)));
        // A factory that outlived the reload timeout (or a close) made what nothing will serve.
        check();
      } catch (err) {
        if (cut?.abandoned) throw err;
        const candidates = [...new Set([...involved, ...this.files])];
        throw Object.assign(err instanceof Error ? err : new Error(String(err)), { location: await loadErrorLocation(err, candidates) });
      }
    }
    return out;
  }

  /** The last load's modules are the ones serving (the run's first load, before any reload). */
  private takeLoaded(): void {
    this.disposers ??= this.loadedDisposers;
    this.loadedDisposers = [];
  }

  /**
   * Calls the `dispose` exports of the modules a reload replaced, each bounded by the reload
   * timeout; a failure is logged, never thrown: the new code already serves.
   */
  private disposeOld(old: Array<() => unknown>): void {
    const ms = this.options.reloadTimeoutMs ?? DEFAULT_RELOAD_TIMEOUT_MS;
    for (const dispose of old) {
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`dispose() did not finish within ${ms} ms`)), ms);
        timer.unref();
      });
      Promise.race([Promise.resolve().then(dispose), bound])
        .catch((err: unknown) =>
          this.log.warn(`dispose() of the replaced module failed: ${loadErrorMessage(err)}`, {
            ...this.fields,
            event: 'dispose-failed',
            error: (err as Error)?.message ?? String(err),
          }),
        )
        .finally(() => clearTimeout(timer));
    }
  }

  /** Says once per file that a reload cannot take edits to `file` (see FreshImport.onPinned). */
  private pinned(file: string): void {
    if (this.pinnedFiles.has(file) || this.closed) return;
    this.pinnedFiles.add(file);
    this.log.warn(
      `${file} is an ES module that CommonJS require()s: Node keeps its first instance, so a reload does not take edits to it (import() it instead, or restart)`,
      { ...this.fields, event: 'not-reloadable', file },
    );
  }

  /** Starts watching; changes then go to `target`. Resolves once the watcher is ready. */
  async start(target: EndpointTarget): Promise<void> {
    this.target = target;
    this.takeLoaded();
    const watcher = watch([...this.files], {
      ignoreInitial: true,
      usePolling: this.options.usePolling ?? false,
      interval: this.options.interval ?? 300,
    });
    this.watcher = watcher;
    watcher.on('all', (event, file) => {
      if (event === 'change' || event === 'add') this.schedule();
      // Nothing to reload from, and nothing to stop: a deploy that swaps files may be midway.
      // The operator hears of it once per deletion; the file's return is an `add`, a reload.
      else if (event === 'unlink' && !this.closed) {
        // chokidar drops a file's watch when it is deleted, and adding it back raced its own
        // cleanup (a CI run missed the return): the file's return is looked for here as well.
        // The warning waits for that first look: an editor or a deploy that replaces a file
        // (delete, then write) leaves it missing for a moment, and a poll can fall in it.
        if (!this.missing.has(file)) this.missing.set(file, { since: performance.now(), warned: false });
        this.missingTimer ??= setInterval(() => this.lookForMissing(), MISSING_CHECK_MS).unref();
      }
    });
    watcher.on('error', (err) => this.log.warn(`watching endpoint modules: ${(err as Error).message}`, this.fields));
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
    this.settling = this.settled();
  }

  /**
   * No event reports an edit made before the watcher took its baseline: one between load() and
   * start() (the broker connection may take seconds), or, when polling, one before fs.watchFile's
   * first stat, which runs on libuv's thread pool after chokidar's `ready` (an edit right after
   * start was lost that way on a loaded machine). So the files are compared once with what was
   * loaded: at once for OS events; when polling, after a stat of our own has come back through
   * the same pool and one interval has passed, by when the watcher's baseline is taken.
   */
  private async settled(): Promise<void> {
    if (this.options.usePolling) {
      await Promise.all([...this.files].map((f) => stat(f).catch(() => undefined)));
      await new Promise<void>((resolve) => {
        this.settle = setTimeout(resolve, this.options.interval ?? 300);
      });
      this.settle = undefined;
    }
    if (!this.closed && this.changedSince(this.loadedStamps)) this.schedule();
  }

  /**
   * Sends reloads to `target` without watching any file: they come from {@link reloadNow} only
   * (a SIGHUP to a run that does not watch). `serving`: the `dispose` exports of the modules
   * serving now when they were loaded without this reloader (a run's startup load), called when
   * the first reload replaces them.
   */
  attach(target: EndpointTarget, serving?: ReadonlyArray<() => unknown>): void {
    this.target = target;
    if (serving) this.loadedDisposers = [...serving];
    this.takeLoaded();
  }

  /**
   * Reloads now, after the reload running (a save's) if any, never beside it: two at once could
   * swap in the older code last. Resolves with whether the new code serves.
   */
  async reloadNow(): Promise<boolean> {
    while (this.running) await this.running;
    if (this.closed) return false;
    let took = false;
    this.running = this.reload().then((ok) => {
      took = ok;
      this.running = undefined;
    });
    await this.running;
    // A save that came meanwhile found a reload running and was left for it to take up.
    if (this.again) {
      this.again = false;
      this.run();
    }
    return took;
  }

  /** Reloads and counts; never throws (a failure is logged and the old code keeps serving). */
  async reload(): Promise<boolean> {
    if (this.closed || !this.target) return false;
    const t0 = performance.now();
    this.log.debug('reloading endpoint modules', { ...this.fields, event: 'reloading' });
    try {
      const cut = { abandoned: false };
      const endpoints = await this.bounded(this.load(cut), cut);
      if (this.closed) {
        // Closed while it loaded: the new modules never serve.
        const unserved = this.loadedDisposers;
        this.loadedDisposers = [];
        this.disposeOld(unserved);
        return false;
      }
      let retired: void | Promise<void>;
      try {
        retired = this.target.replaceEndpoints(endpoints);
      } catch (err) {
        // Refused (a contract or long list naming no method): the new modules will never serve.
        const rejected = this.loadedDisposers;
        this.loadedDisposers = [];
        this.disposeOld(rejected);
        throw err;
      }
      const old = this.disposers ?? [];
      this.disposers = this.loadedDisposers;
      this.loadedDisposers = [];
      // Calls (and jobs) still running on the old code may need what its dispose() closes (a
      // pool): it ran at once, and a call in flight failed with "pool is closed".
      if (old.length > 0 && retired) void retired.then(() => this.disposeOld(old));
      else this.disposeOld(old);
      this.counts.reloads++;
      const ms = performance.now() - t0;
      this.log.info(
        `reloaded ${this.specs.map((s) => path.basename(s)).join(', ')} (${endpoints.length} endpoint(s), ${ms.toFixed(0)} ms)`,
        {
          ...this.fields,
          event: 'reload',
          durationMs: Math.round(ms),
        },
      );
      return true;
    } catch (err) {
      if (this.closed) return false;
      this.counts.failures++;
      const where = (err as { location?: string }).location ?? this.specs[0];
      this.log.error(`reload failed at ${where}: ${loadErrorMessage(err)}; the previous code keeps serving`, {
        ...this.fields,
        event: 'reload-failed',
        file: where,
        error: (err as Error).message,
      });
      return false;
    }
  }

  /** `loading`, or a rejection once it took longer than the reload timeout or the reloader closed. */
  private async bounded<T>(loading: Promise<T>, cut: { abandoned: boolean }): Promise<T> {
    const ms = this.options.reloadTimeoutMs ?? DEFAULT_RELOAD_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    let abandon: ((err: Error) => void) | undefined;
    const stop = new Promise<never>((_, reject) => {
      abandon = reject;
      this.abandon.add(reject);
      timer = setTimeout(
        () =>
          reject(
            Object.assign(new Error(`the import did not finish within ${ms} ms (a top-level await that never settles?); it is abandoned`), {
              location: this.specs[0],
            }),
          ),
        ms,
      );
    });
    // A load that fails after being abandoned has no one to tell.
    loading.catch(() => undefined);
    try {
      return await Promise.race([loading, stop]);
    } catch (err) {
      cut.abandoned = true;
      throw err;
    } finally {
      clearTimeout(timer);
      this.abandon.delete(abandon!);
    }
  }

  /** Reloads and failures so far. */
  stats(): ReloadStats {
    return { ...this.counts };
  }

  /** Resolves when no reload runs or waits to run (for tests and orderly shutdowns). */
  async idle(): Promise<void> {
    if (this.settling && !this.closed) await this.settling;
    while (this.running || this.timer || this.verify || this.again) {
      await (this.running ?? new Promise((r) => setTimeout(r, 10)));
    }
  }

  /** A deleted file that is back is watched again and reloaded from; one still gone is reported once. */
  private lookForMissing(): void {
    const now = performance.now();
    for (const [f, m] of this.missing) {
      if (existsSync(f)) {
        this.missing.delete(f);
        if (!this.closed) this.watcher?.add(f);
        this.schedule();
      } else if (!m.warned && now - m.since >= MISSING_CHECK_MS * 0.9 && !this.closed) {
        m.warned = true;
        this.log.warn(`endpoint module ${f} was deleted; the code loaded from it keeps serving until it is back`, {
          ...this.fields,
          event: 'deleted',
          file: f,
        });
      }
    }
    if (this.missing.size === 0) {
      clearInterval(this.missingTimer);
      this.missingTimer = undefined;
    }
  }

  /** Stops watching; a reload in progress is abandoned (the code serving stays). */
  async close(): Promise<void> {
    this.closed = true;
    for (const abandon of this.abandon) abandon(new Error('the reloader closed'));
    clearInterval(this.missingTimer);
    this.missingTimer = undefined;
    clearTimeout(this.timer);
    clearTimeout(this.verify);
    clearTimeout(this.settle);
    await this.watcher?.close();
    await this.running;
  }

  private stamps(): Map<string, string> {
    return new Map([...this.files].map((f) => [f, stampOf(f)]));
  }

  private schedule(): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    clearTimeout(this.verify);
    this.verify = undefined;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.run();
    }, this.options.debounceMs ?? 100);
  }

  private run(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    const before = this.stamps();
    this.running = this.reload().then(() => {
      this.running = undefined;
      if (this.again || this.changedSince(before)) {
        this.again = false;
        this.run();
        return;
      }
      // chokidar drops a file's change event within 50 ms of its previous one: a save landing
      // then is found by comparing modification times once that window is over.
      this.verify = setTimeout(() => {
        this.verify = undefined;
        if (this.changedSince(before)) this.schedule();
      }, VERIFY_MS);
    });
  }

  private changedSince(before: Map<string, string>): boolean {
    for (const [f, t] of this.stamps()) if (before.get(f) !== t) return true;
    return false;
  }
}

/**
 * A file's modification time, change time and size: a rewrite of the same length within the
 * file system's timestamp tick changes none of them and is not seen (as by chokidar itself).
 */
function stampOf(file: string): string {
  try {
    const s = statSync(file);
    return `${s.mtimeMs}/${s.ctimeMs}/${s.size}`;
  } catch {
    return 'missing';
  }
}

/**
 * Under a watched run, warns when the run file itself changes: it is read once, at start (the
 * workers get the primary's copy), so an edit to it took no effect and nothing said so.
 */
export class RunFileWatch {
  private readonly watcher: FSWatcher;
  private timer: NodeJS.Timeout | undefined;
  /** Looks for the file while it is deleted (see the reloader's lookForMissing). */
  private missingTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(file: string, log: RunLogger, options: WatchOptions = {}) {
    this.watcher = watch(file, { ignoreInitial: true, usePolling: options.usePolling ?? false, interval: options.interval ?? 300 });
    // An editor's save is often several writes: one line per save.
    const changed = () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(
        () =>
          log.warn(
            `${file} changed: the run file is read once, at start; restart the run to apply it (endpoint modules reload by themselves)`,
            {
              event: 'run-file-changed',
              file,
            },
          ),
        options.debounceMs ?? 100,
      );
    };
    this.watcher.on('change', changed);
    this.watcher.on('add', () => {
      clearInterval(this.missingTimer);
      this.missingTimer = undefined;
      changed();
    });
    // chokidar stops watching a file that is deleted, and does not reliably see it come back: a
    // run file deleted and written again a second later was never told. It is looked for until
    // it is back, as a deleted endpoint module is.
    this.watcher.on('unlink', () => {
      this.missingTimer ??= setInterval(() => {
        if (this.closed || !existsSync(file)) return;
        clearInterval(this.missingTimer);
        this.missingTimer = undefined;
        this.watcher.add(file);
        changed();
      }, MISSING_CHECK_MS).unref();
    });
    this.watcher.on('error', () => undefined);
  }

  /** Stops watching. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    clearInterval(this.missingTimer);
    await this.watcher.close();
  }
}
