#!/usr/bin/env node
// `npm run demo`: the embedded router, two rpc-server processes on one topic, and a client
// showing a call, a cast, a server-directed call, a fanout cast, a remote error, a long
// call kept alive by heartbeats and a job followed to its result; then `hermod run` with two
// workers and a metrics scrape. Everything runs on loopback and shuts down cleanly.
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { Command } from 'commander';
import { demoJob } from '../src/cli/demo-job.js';
import { demoRun } from '../src/cli/demo-run.js';
import { EXIT_TABLE, exitOnUsage } from '../src/cli/exit-codes.js';
import { HERMOD_VERSION } from '../src/cli/program.js';
import { onOutputClosed } from '../src/cli/shutdown.js';
import { defaultConfig, getTransport, type RemoteError, RPCClient, Target } from '../src/index.js';
import { Router } from '../src/router/router.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// Bold only on a terminal, and never with NO_COLOR (https://no-color.org).
const bold = process.stdout.isTTY === true && !process.env.NO_COLOR;
const say = (s: string) => process.stdout.write(bold ? `\n\x1b[1m▶ ${s}\x1b[0m\n` : `\n▶ ${s}\n`);
// Values as plain text: console.log would colour them whenever FORCE_COLOR is set, NO_COLOR or not.
const show = (v: unknown) => inspect(v, { colors: false });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  // A reader that went away (`| head`) ends the command quietly, as it would a Unix tool.
  onOutputClosed(() => process.exit(0));
  // Takes no options: --help says what it does instead of running it, a stray flag is a usage error.
  new Command('hermod-demo')
    .description(
      'The demo (npm run demo): an embedded AMQP 1.0 router, two rpc-server processes on topic demo, and a client showing a call, a cast, a directed call, a fanout, a remote error, a call kept alive by heartbeats, a job, then hermod run with two workers and a metrics scrape. Loopback only; needs no broker; everything stops at the end.',
    )
    .version(HERMOD_VERSION, '-V, --version', "print hermod's version")
    .addHelpText('after', `\n${EXIT_TABLE}`)
    .allowExcessArguments(false)
    .exitOverride(exitOnUsage)
    .parse();
  const router = new Router({ port: 0 });
  const port = await router.start();
  const url = `amqp://127.0.0.1:${port}/`;
  say(`embedded AMQP 1.0 router listening on ${url}`);

  const servers: ChildProcess[] = [];
  for (const name of ['alpha', 'beta']) {
    const child = spawn(process.execPath, [path.join(here, 'rpc-server.js'), name, '--topic', 'demo', '--transport-url', url], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    child.stdout!.on('data', (d: Buffer) =>
      process.stdout.write(`    [${name}] ${d.toString().trimEnd().split('\n').join(`\n    [${name}] `)}\n`),
    );
    servers.push(child);
  }

  const transport = await getTransport(url, { config: defaultConfig() });
  const client = new RPCClient(transport, new Target({ topic: 'demo' }), { timeout: 10_000 });
  try {
    // Wait until both servers answer on their own addresses.
    for (const name of ['alpha', 'beta']) {
      for (let i = 0; ; i++) {
        try {
          await client.prepare({ server: name, timeout: 500 }).call({}, 'info');
          break;
        } catch (err) {
          if (i > 40) throw err;
        }
      }
    }
    const ctx = { request_id: 'req-demo-1', user: 'demo' };

    say("call add(a=2, b=3) on topic 'demo' (any server)");
    console.log(`    result: ${show(await client.call(ctx, 'add', { a: 2, b: 3 }))}`);

    say("cast echo(value='fire and forget') (no reply)");
    await client.cast(ctx, 'echo', { value: 'fire and forget' });
    console.log('    cast sent');

    say("call info() directed to server 'beta'");
    const info = await client.prepare({ server: 'beta' }).call<{ server: string; pid: number }>(ctx, 'info');
    console.log(`    answered by ${info.server} (pid ${info.pid})`);

    say("fanout cast echo(value='hello everyone') to every server on the topic");
    // A cast has no reply and servers log successful requests at debug only: each server's call
    // count, asked before and after, shows that every one of them received it.
    const names = ['alpha', 'beta'];
    const served = async (name: string) => (await client.prepare({ server: name }).call<{ calls: number }>(ctx, 'info')).calls - 1; // not this info call
    const before = await Promise.all(names.map(served));
    await client.prepare({ fanout: true }).cast(ctx, 'echo', { value: 'hello everyone' });
    for (const [i, name] of names.entries()) {
      // Calls since the count before: its own info call, the earlier polls, and the echo once it arrived.
      let got = 0;
      for (let poll = 0; poll < 40 && got === 0; poll++) {
        if (poll > 0) await sleep(50);
        got = (await served(name)) - before[i]! - 1 - poll;
      }
      const was = before[i]! + 1;
      console.log(got > 0 ? `    ${name} received it: calls served ${was} → ${was + got}` : `    ${name} did not receive it`);
    }

    say("call fail(message='boom'): the remote error arrives typed");
    try {
      await client.call(ctx, 'fail', { message: 'boom' });
    } catch (err) {
      const e = err as RemoteError;
      console.log(`    ${e.name}: type=${e.excType} module=${e.module} message=${e.value}`);
    }

    say(
      'call sleep(seconds=3) with a 2 s call monitor: the server heartbeats every 1 s (as oslo: every N/2 s, only when that is at least 1 s) and keeps it alive',
    );
    const t0 = Date.now();
    const slept = await client.call(ctx, 'sleep', { seconds: 3 }, { callMonitorTimeout: 2000 });
    console.log(`    result after ${((Date.now() - t0) / 1000).toFixed(1)} s: ${show(slept)}`);

    await demoJob(url, ctx, say);

    // hermod run: two workers and one metrics scrape (src/cli/demo-run.ts).
    await demoRun(path.join(here, 'hermod.js'), url, transport, { say, line: (text) => console.log(`    ${text}`) });
  } finally {
    await transport.close();
    say('shutting down: SIGTERM to the servers (they finish in-flight work), then the router');
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.exitCode !== null) return resolve();
            s.once('exit', () => resolve());
            s.kill('SIGTERM');
          }),
      ),
    );
    await router.stop();
    console.log(`    router forwarded ${router.stats().forwarded} messages; all stopped`);
  }
}

main().catch((err) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
