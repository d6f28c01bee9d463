/** rpc-client `--repeat`: the summary of a run, counting what was attempted, with latencies only when some call succeeded. */

/** What a `--repeat` run measured. */
export interface RepeatStats {
  /** `--repeat n`. */
  requested: number;
  /** Latency of each successful call or cast, ms. */
  latencies: number[];
  /** Calls that failed. */
  failed: number;
  /** `performance.now()` at the start. */
  started: number;
  /** `calls` or `casts`, for the text. */
  kind: 'calls' | 'casts';
}

/** A finished (or interrupted) run. */
export interface EndedRun extends RepeatStats {
  /** `performance.now()` at the end. */
  ended: number;
  /** Ctrl-C ended it. */
  interrupted: boolean;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/**
 * The `--json` summary. `count` is the calls attempted (finished either way), which is less
 * than `requested` when the run stopped early; rate and percentiles are null when no call
 * succeeded, rather than a made-up 0.
 */
export function summaryJson(r: EndedRun) {
  const seconds = (r.ended - r.started) / 1000;
  const ok = r.latencies.length;
  const sorted = [...r.latencies].sort((a, b) => a - b);
  return {
    count: ok + r.failed,
    requested: r.requested,
    ok,
    failed: r.failed,
    ...(r.interrupted ? { interrupted: true } : {}),
    seconds: Number(seconds.toFixed(3)),
    rate: ok > 0 && seconds > 0 ? Number((ok / seconds).toFixed(1)) : null,
    p50ms: ok > 0 ? Number(percentile(sorted, 50).toFixed(3)) : null,
    p99ms: ok > 0 ? Number(percentile(sorted, 99).toFixed(3)) : null,
  };
}

/** The text summary: `12 of 1000 calls attempted (interrupted), 11 ok, 1 failed in 3.2 s: 3.4/s, p50 1.2 ms, p99 2.3 ms`. */
export function summaryText(r: EndedRun): string {
  const s = summaryJson(r);
  const attempted = s.count === s.requested ? `${s.count} ${r.kind}` : `${s.count} of ${s.requested} ${r.kind} attempted`;
  const head = `${attempted}${s.interrupted ? ' (interrupted)' : ''}, ${s.ok} ok, ${s.failed} failed in ${s.seconds} s`;
  return s.ok > 0 ? `${head}: ${s.rate}/s, p50 ${s.p50ms} ms, p99 ${s.p99ms} ms` : head;
}
