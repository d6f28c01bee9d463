import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type Context, defaultConfig, getTransport, RPCServer, Target, type Transport } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { until } from '../support/assert.js';
import { startCli } from '../support/cli-procs.js';
import { scratchDir } from '../support/scratch.js';

// hermod-gateway as a subprocess, against an RPC server in this process through the embedded
// router. README "Stopping": a second signal aborts what runs and exits at once, and the callers
// are answered, not left with a dropped connection.

/** A method that runs until the test lets it go. */
class Slow {
  entered = 0;
  private releases: Array<() => void> = [];
  async sleep(_ctx: Context, _args: Record<string, unknown>) {
    this.entered++;
    await new Promise<void>((r) => this.releases.push(r));
    return 'slept';
  }
  release() {
    for (const r of this.releases.splice(0)) r();
  }
}

interface Ctx {
  router: Router;
  url: string;
  transport: Transport;
  server: RPCServer;
  slow: Slow;
  file: string;
}
const t = suite<Ctx>('hermod-gateway: a second signal', {} as Ctx);

t.before(async (ctx) => {
  ctx.router = new Router({ port: 0, log: () => {} });
  ctx.url = `amqp://127.0.0.1:${await ctx.router.start()}/`;
  ctx.transport = await getTransport(ctx.url, { config: defaultConfig() });
  ctx.slow = new Slow();
  ctx.server = new RPCServer(ctx.transport, new Target({ topic: 'gsig', server: 's1' }), [ctx.slow]);
  await ctx.server.start();
  ctx.file = path.join(scratchDir('hermod-gw-sig-'), 'gw.json');
  writeFileSync(
    ctx.file,
    JSON.stringify({ listen: { host: '127.0.0.1', port: 0 }, routes: [{ topic: 'gsig', method: 'sleep', timeout: 60_000 }] }),
  );
});
t.after(async (ctx) => {
  ctx.slow?.release();
  await ctx.server?.stop();
  await ctx.server?.wait(1000);
  await ctx.transport?.close();
  await ctx.router?.stop();
});

for (const workers of ['1', '2']) {
  t(`--workers ${workers}: the call in flight at a second SIGTERM is answered 504 CallCut, exit 143`, async (ctx) => {
    const gw = startCli(
      'hermod-gateway',
      ['--config-file', ctx.file, '--workers', workers, '--shutdown-timeout', '30', '--transport-url', ctx.url],
      {
        killAfterMs: 60_000,
      },
    );
    try {
      await until(() => /listening on http:\/\/\S+/.test(gw.out), `the gateway (${gw.err})`, 30_000);
      const base = /listening on (http:\/\/\S+)/.exec(gw.out)![1]!;
      const entered = ctx.slow.entered;
      const call = fetch(`${base}/v1/gsig/sleep`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      }).then(
        async (res) => ({ status: res.status, text: await res.text() }),
        (err: Error) => ({ status: 0, text: String((err as { cause?: unknown }).cause ?? err) }),
      );
      await until(() => ctx.slow.entered > entered, 'the call to run', 30_000);
      gw.child.kill('SIGTERM');
      await until(() => /SIGTERM: no new work/.test(gw.out), `the graceful stop (${gw.out})`, 30_000);
      gw.child.kill('SIGTERM');
      // Before: the connections were closed at once, an empty reply (curl's 000).
      const r = await call;
      assert.is(r.status, 504, r.text);
      assert.match(r.text, /HERMOD_ERR_CALL_CUT/);
      assert.is(await gw.exited, 143, gw.err);
    } finally {
      if (gw.child.exitCode === null) gw.child.kill('SIGKILL');
      ctx.slow.release();
    }
  });
}

t.run();
