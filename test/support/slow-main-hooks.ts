import { writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Module hooks of {@link ./slow-main.ts}: they run on Node's hooks thread. */
export async function resolve(
  specifier: string,
  context: unknown,
  next: (specifier: string, context: unknown) => Promise<{ url: string }>,
): Promise<{ url: string }> {
  const r = await next(specifier, context);
  const marker = process.env.SLOW_MAIN_MARKER;
  if (marker && /\/bin\/main\/[^/]+\.js$/.test(r.url)) {
    writeFileSync(marker, r.url);
    await sleep(Number(process.env.SLOW_MAIN_MS ?? 1500));
  }
  return r;
}
