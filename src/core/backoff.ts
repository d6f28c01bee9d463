/** Reconnect delays: capped exponential growth with ±25% jitter, so clients do not retry in step. */
export interface BackoffOptions {
  /** First delay, ms. */
  initial: number;
  /** Growth factor per failed attempt. */
  factor: number;
  /** Cap, ms. */
  max: number;
}

/**
 * The delay before attempt `failures + 1` (after `failures` failed ones, at least 1).
 * `random` is injectable for tests.
 */
export function backoffDelay(failures: number, o: BackoffOptions, random: () => number = Math.random): number {
  const base = Math.min(o.max, o.initial * o.factor ** Math.max(0, failures - 1));
  return Math.min(o.max, Math.round(base * (0.75 + random() * 0.5)));
}
