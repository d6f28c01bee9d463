import { spawn } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultConfig, getTransport, NotificationListener, Notifier, Target, type Transport } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { sleep, until } from '../support/assert.js';
import { bin, type CliProc, startCli } from '../support/cli-procs.js';

// notify-listen as a subprocess behind a reader that does not keep up, against the embedded
// router in this process (AMQP 1.0). README "Stopping": notifications are acknowledged once the
// endpoints ran, and a stop loses none.

interface Ctx {
  router: Router;
  url: string;
  transport: Transport;
}
const t = suite<Ctx>('notify-listen: a slow reader', {} as Ctx);

t.before(async (ctx) => {
  ctx.router = new Router({ port: 0, log: () => {} });
  ctx.url = `amqp://127.0.0.1:${await ctx.router.start()}/`;
  ctx.transport = await getTransport(ctx.url, { config: defaultConfig() });
});
t.after(async (ctx) => {
  await ctx.transport?.close();
  await ctx.router?.stop();
});

/** Lines of about 2 KB: 300 of them are far more than a pipe and the reading side's buffer hold. */
const N = 300;
const BIG = 'x'.repeat(2000);

/** Starts notify-listen whose stdout nobody reads yet: the pipe fills, and its writes wait. */
async function stalled(args: string[]): Promise<CliProc> {
  const l = startCli('notify-listen', args, { killAfterMs: 60_000 });
  l.child.stdout!.pause();
  await until(() => l.err.includes('listening on'), `the listener (${l.err})`, 30_000);
  return l;
}

/** Sends N notifications on `topic` without waiting for them; resolves `sent` once all are accepted. */
function publish(ctx: Ctx, topic: string) {
  const notifier = new Notifier(ctx.transport, { publisherId: 'p', topics: [topic] });
  const state = { accepted: 0, all: Promise.resolve() };
  state.all = Promise.all(
    Array.from({ length: N }, (_, i) =>
      notifier.info({}, 'bulk.ev', { i, big: BIG }).then(() => {
        state.accepted++;
      }),
    ),
  ).then(() => {});
  return state;
}

/** Waits until the listener exited or stopped taking notifications (none accepted for 1 s). */
async function untilExitedOrStalled(l: CliProc, sent: { accepted: number }): Promise<void> {
  let last = -1;
  let since = Date.now();
  await until(
    () => {
      if (l.child.exitCode !== null || l.child.signalCode !== null) return true;
      if (sent.accepted !== last) {
        last = sent.accepted;
        since = Date.now();
      }
      return Date.now() - since >= 1000;
    },
    'the listener to exit or stall',
    30_000,
  );
}

const printed = (out: string) =>
  out
    .split('\n')
    .filter((s) => s !== '')
    .map((s) => (JSON.parse(s.slice(s.indexOf('{'))) as { i: number }).i);

t('| head -1: the line head read is acknowledged, the ones after it go back (none printed twice)', async (ctx) => {
  // From a review: the lines written after head had gone failed (EPIPE) and marked stdout
  // errored before the first line's own write callback ran, so the line head had printed was
  // given back too and the next listener printed it again.
  const script = `"${process.execPath}" "${bin('notify-listen')}" --topic headed --transport-url ${ctx.url} | head -1`;
  const sh = spawn('sh', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let headOut = '';
  let err = '';
  sh.stdout.on('data', (d: Buffer) => {
    headOut += d.toString();
  });
  sh.stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise((r) => sh.on('close', r));
  await until(() => err.includes('listening on'), `the listener (${err})`, 30_000);
  const notifier = new Notifier(ctx.transport, { publisherId: 'p', topics: ['headed'] });
  // Not awaited: those given back wait in the router for the next listener.
  const sent = Promise.allSettled([0, 1, 2].map((i) => notifier.info({}, 'h.ev', { i })));
  await exited;
  const byHead = printed(headOut);
  assert.is(byHead.length, 1, headOut);
  const got: number[] = [];
  const next = new NotificationListener(
    ctx.transport,
    [new Target({ topic: 'headed' })],
    [
      {
        info: (_c: unknown, _p: string, _e: string, payload: { i: number }) => {
          got.push(payload.i);
        },
      },
    ],
  );
  await next.start();
  try {
    await sent;
    await until(
      () => got.length + byHead.length >= 3,
      `the other two (got ${JSON.stringify(got)}, head ${JSON.stringify(byHead)})`,
      10_000,
    );
    await sleep(300);
    assert.equal(
      [...byHead, ...got].sort(),
      [0, 1, 2],
      `head printed ${JSON.stringify(byHead)}, the next listener got ${JSON.stringify(got)}`,
    );
  } finally {
    await next.stop();
    await next.wait(1000);
  }
});

t('--count with a reader that reads late: every notification taken is printed; none acknowledged unprinted', async (ctx) => {
  const l = await stalled(['--topic', 'slowc', '--count', String(N), '--transport-url', ctx.url]);
  const sent = publish(ctx, 'slowc');
  // Before: all N taken and acknowledged at once, `--count reached … nothing in flight`, exit 0
  // with the lines still in the listener's buffer: lost. Now the full pipe holds the listener up.
  await untilExitedOrStalled(l, sent);
  l.child.stdout!.resume();
  assert.is(await l.exited, 0, l.err);
  await sent.all;
  const got = printed(l.out);
  assert.is(got.length, N, `printed ${got.length} of ${N}\n${l.err}`);
  assert.is(new Set(got).size, N);
});

t('a stop while the reader does not read: what was not printed goes back to the queue, none lost', async (ctx) => {
  const l = await stalled(['--topic', 'slows', '--shutdown-timeout', '0.5', '--transport-url', ctx.url]);
  const sent = publish(ctx, 'slows');
  await untilExitedOrStalled(l, sent);
  l.child.kill('SIGTERM');
  // Read only after it exited: what it printed is in the pipe; nothing else may have been acknowledged.
  const code = await l.exited;
  l.child.stdout!.resume();
  await new Promise((r) => l.child.stdout!.once('close', r));
  assert.ok(code === 0 || code === 7, `exit ${code}\n${l.err}`);
  // A line cut at the exit is not counted: its notification was not acknowledged.
  const lines = l.out.split('\n').slice(0, -1);
  const shown = new Set(printed(lines.join('\n')));
  const rest = new Set<number>();
  const next = new NotificationListener(
    ctx.transport,
    [new Target({ topic: 'slows' })],
    [
      {
        info: (_c: unknown, _p: string, _e: string, payload: { i: number }) => {
          rest.add(payload.i);
        },
      },
    ],
  );
  await next.start();
  await sent.all;
  await until(() => shown.size + rest.size >= N, `every notification printed or still queued (${shown.size} + ${rest.size} of ${N})`);
  await sleep(100);
  await next.stop();
  await next.wait(1000);
  for (let i = 0; i < N; i++) assert.ok(shown.has(i) || rest.has(i), `notification ${i} lost (printed ${shown.size}, queued ${rest.size})`);
  assert.ok(shown.size < N, `the reader held the listener up (printed ${shown.size})`);
});

t.run();
