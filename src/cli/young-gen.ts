/**
 * Imported first by the long-running CLIs (`rpc-server`, `hermod`, `notify-listen`,
 * `hermod-gateway`) for its side
 * effect: V8's young generation grows to two 4 MB semi-spaces at most instead of V8's 16 MB.
 *
 * Why: a busy server allocates fast but keeps little (a call lives a few ms), and V8 answers the
 * allocation rate by growing each semi-space from 1 MB to 16 MB. Scavenges then run less often,
 * but each copies only the few calls in flight, so past a few MB the CPU saved is lost in the
 * noise while the semi-spaces stay committed: 24 MB more of a server's resident memory than at
 * 4 MB. Measured with the rpc-server CLI at 64 calls in flight (README, Performance): RSS under
 * load 86-101 MB at V8's sizing, 76-79 MB here, CPU per call the same within the noise; held at
 * 1 MB it cost the server about 10 % more CPU.
 *
 * How: `--max-semi-space-size` is read only when the heap is set up, so it cannot be set from
 * inside a process started as `rpc-server ...`. The growth factor is read at each growth. So the
 * factor is 1 while the modules load (start-up's allocations all survive and would otherwise grow
 * the young generation at once), and after each garbage collection it is set to what takes the
 * current size to the cap in one step, or 1 once there. V8 may shrink the young generation when
 * allocation slows; the next collection then lets it grow back.
 *
 * Scavenges run on the main thread alone. With semi-spaces this small a scavenge copies about
 * 100 KB (the calls in flight), and V8 still splits it across helper threads; on a machine whose
 * cores are busy with the broker and the callers, handing the work over and waiting for it cost
 * more than the copy: pauses of 1.8 ms against 0.77 ms alone, and a little more CPU.
 *
 * A node flag of the user's own for the young generation or the scavenger (`node --max-semi-space-size=32
 * .../rpc-server.js`, or `NODE_OPTIONS=--max-semi-space-size=16` for V8's usual sizing) wins:
 * then this module does nothing.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';

/** The cap on each semi-space, in MB. */
export const SEMI_SPACE_MB = 4;

const OWN_FLAG =
  /--(?:no[-_])?(?:(?:max|min)[-_]semi[-_]space[-_]size|semi[-_]space[-_]growth[-_]factor|max[-_]young[-_]generation[-_]size|parallel[-_]scavenge|single[-_]threaded[-_]gc)\b/;

/** Whether the CLI governs the young generation's size (see the module comment). */
export function governsYoungGeneration(execArgv: readonly string[], env: NodeJS.ProcessEnv): boolean {
  return !execArgv.some((a) => OWN_FLAG.test(a)) && !OWN_FLAG.test(env.NODE_OPTIONS ?? '');
}

/** The growth factor that takes a semi-space of `semiMb` to the cap in one growth, or 1 at the cap. */
export function growthFactor(semiMb: number): number {
  return semiMb >= SEMI_SPACE_MB ? 1 : 2;
}

let factor = 0;
function setFactor(f: number): void {
  if (f === factor) return;
  factor = f;
  v8.setFlagsFromString(`--semi-space-growth-factor=${f}`);
}

if (governsYoungGeneration(process.execArgv, process.env)) {
  setFactor(1);
  v8.setFlagsFromString('--no-parallel-scavenge');
  // The new space is two semi-spaces.
  const semiMb = () => (v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0) / 2 ** 21;
  new PerformanceObserver(() => setFactor(growthFactor(semiMb()))).observe({ entryTypes: ['gc'] });
}
