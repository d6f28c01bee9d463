import * as assert from 'uvu/assert';

/** Asserts that `fn` throws (sync or async) an error with `code`, optionally matching `message`. Returns it. */
export async function rejects(fn: (() => unknown) | Promise<unknown>, code: string, message?: RegExp): Promise<Error & { code?: string }> {
  let caught: unknown;
  try {
    await (typeof fn === 'function' ? fn() : fn);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof Error, `expected an error with code ${code}, nothing was thrown`);
  const err = caught as Error & { code?: string };
  assert.is(err.code, code, `expected code ${code}, got ${err.code}: ${err.message}`);
  if (message) assert.match(err.message, message);
  return err;
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/**
 * As {@link sleep}, for the losing side of a race (a bound on a wait): its timer does not hold
 * the test process open once the race is won (a 10 s bound kept a file alive 7 s after its tests).
 */
export const lapse = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/** Polls `check` until it returns true or `timeoutMs` passes; throws with `what` on timeout. */
export async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}
