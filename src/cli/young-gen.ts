/**
 * Imported first by the long-running CLIs (`rpc-server`, `hermod`, `notify-listen`,
 * `hermod-gateway`, `hermod-router`) for its side effect: V8's young generation stops growing at
 * two 4 MB semi-spaces, and scavenges run on the main thread alone.
 *
 * Why: a busy server allocates fast but keeps little (a call lives a few ms), and V8 answers the
 * allocation rate by growing each semi-space up to its maximum (16 MB on a machine with 8 GB or
 * more). Scavenges then run less often, but each copies only the calls in flight, so past a few
 * MB the CPU saved is lost in the noise while the semi-spaces stay committed. Measured with the
 * rpc-server CLI at 64 calls in flight on a 24 GB machine (README, "Memory of the long-running
 * CLIs"): RSS under load 82-84 MiB with V8's sizing against 73-77 MiB, CPU per call the same
 * within the noise. Held at 1 MB instead, it cost the server about 10 % more CPU.
 *
 * Single-threaded scavenges: at this size a scavenge copies about 120 KB, and V8 still splits
 * it across helper threads; on a machine whose cores are busy with the broker and the callers,
 * handing the work over and waiting for it cost more than the copy (pauses of 1.8 ms against
 * 0.8 ms alone).
 *
 * How: `--max-semi-space-size` is read only when the heap is set up, so it cannot be set from
 * inside a process started as `rpc-server ...`. The growth factor is read at each growth, so after
 * every garbage collection it is set to what takes the semi-space to the cap in one growth, or to
 * 1 once there. Both flags are set again after every collection: starting a worker thread (a
 * module loader registered with `module.register`, such as tsx's, is one) puts V8's flags back to
 * their defaults. The cap is best-effort: the setting follows a collection, so a long synchronous
 * burst of surviving allocations can grow the young generation past it before the next one.
 *
 * A node flag of the user's own that sizes the heap or chooses the young generation's collector
 * (`node --max-semi-space-size=32 .../rpc-server.js`, or `NODE_OPTIONS=--max-semi-space-size=16`
 * for V8's usual sizing) wins: then this module does nothing.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';

/** The cap on each semi-space, in MB. */
export const SEMI_SPACE_MB = 4;

const OWN_FLAG =
  /--(?:no[-_])?(?:(?:max|min)[-_]semi[-_]space[-_]size|semi[-_]space[-_]growth[-_]factor|max[-_]young[-_]generation[-_]size|max[-_]heap[-_]size|parallel[-_]scavenge|single[-_]threaded(?:[-_]gc)?|minor[-_]m[cs])\b/;

/** Whether the CLI governs the young generation (see the module comment). */
export function governsYoungGeneration(execArgv: readonly string[], env: NodeJS.ProcessEnv): boolean {
  return !execArgv.some((a) => OWN_FLAG.test(a)) && !OWN_FLAG.test(env.NODE_OPTIONS ?? '');
}

/** The growth factor that takes a semi-space of `semiMb` (whole MB) to the cap in one growth, or 1 at or past it. */
export function growthFactor(semiMb: number): number {
  return semiMb >= SEMI_SPACE_MB ? 1 : Math.max(1, Math.floor(SEMI_SPACE_MB / Math.max(1, semiMb)));
}

/** One semi-space's capacity in whole MB: the new space's used plus available bytes (its committed size counts a second semi-space only once it is in use). */
function semiSpaceMb(): number {
  const s = v8.getHeapSpaceStatistics().find((x) => x.space_name === 'new_space');
  return s ? Math.round((s.space_used_size + s.space_available_size) / 2 ** 20) : SEMI_SPACE_MB;
}

function govern(): void {
  v8.setFlagsFromString(`--semi-space-growth-factor=${growthFactor(semiSpaceMb())}`);
  v8.setFlagsFromString('--no-parallel-scavenge');
}

if (governsYoungGeneration(process.execArgv, process.env)) {
  govern();
  new PerformanceObserver(govern).observe({ entryTypes: ['gc'] });
}
