import * as assert from 'uvu/assert';
import type { RabbitNode } from '../../scripts/rabbit-node.js';
import { defaultConfig, getTransport, NotificationListener, Notifier, Target } from '../../src/index.js';
import { sleep, until } from './assert.js';
import type { Proc } from './shutdown-procs.js';

// A backlog of notifications for the "busy" cells of notify-listen: queued before it starts, so
// it is consuming when the signal comes; afterwards every notification must be printed or still
// queued.

/** Queues `n` info notifications `{ n: 0..n-1 }` on `<topic>.info` of `url` before anyone listens. */
export async function backlog(node: RabbitNode, vhost: string, url: string, topic: string, n: number): Promise<void> {
  const tr = await getTransport(url, { config: defaultConfig() });
  try {
    const notifier = new Notifier(tr, { publisherId: 'backlog', topics: [topic] });
    for (let i = 0; i < n; i += 500) {
      await Promise.all(Array.from({ length: Math.min(500, n - i) }, (_, k) => notifier.info({}, 'backlog.item', { n: i + k })));
    }
  } finally {
    await tr.close();
  }
  assert.is((await node.queues(vhost)).get(`${topic}.info`)?.messages, n, 'the backlog is queued');
}

/** The `n` of every notification `notify-listen --json` printed (whole lines: the last may still be arriving). */
export const printedNs = (p: Proc): number[] =>
  p.out
    .split('\n')
    .slice(0, -1)
    .filter((l) => l.startsWith('{'))
    .map((l) => (JSON.parse(l) as { payload: { n: number } }).payload.n);

/** Consumes what is left on `<topic>.info` (once the listener under test exited): the `n`s, at least `expected` of them. */
export async function drainRest(url: string, topic: string, expected: number, timeoutMs = 20_000): Promise<number[]> {
  const got: number[] = [];
  const tr = await getTransport(url, { config: defaultConfig() });
  try {
    const l = new NotificationListener(
      tr,
      [new Target({ topic })],
      [{ info: (_c: unknown, _p: string, _e: string, payload: { n: number }) => void got.push(payload.n) }],
      { concurrency: 200 },
    );
    await l.start();
    await until(() => got.length >= expected, `the ${expected} notification(s) left on the queue (got ${got.length})`, timeoutMs);
    // Anything beyond `expected` (a notification printed and also left) would arrive now.
    await sleep(300);
    await l.stop();
    await l.wait(1000);
  } finally {
    await tr.close();
  }
  return got;
}

/**
 * Every notification 0..n-1 was printed or is still queued: none lost. Unless `allowTwice` (an
 * abort may leave acknowledgements unsent: at least once), none is both printed and queued, i.e.
 * what was printed was acknowledged and what was not stayed queued.
 */
export function accounted(printed: number[], rest: number[], n: number, allowTwice = false): { twice: number } {
  assert.is(new Set(printed).size, printed.length, 'nothing printed twice');
  const left = new Set(rest);
  const twice = printed.filter((x) => left.has(x)).length;
  if (!allowTwice) assert.is(twice, 0, `${twice} notification(s) printed and also left on the queue`);
  const all = new Set([...printed, ...rest]);
  assert.is(all.size, n, `lost ${n - all.size} notification(s)`);
  return { twice };
}
