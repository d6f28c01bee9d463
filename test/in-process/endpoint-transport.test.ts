// An endpoints module gets the transport it is served on (EndpointContext.transport), under
// `rpc-server --endpoints` and `hermod run`, for calls and notifications of its own. Before, its
// factory got only names: a module's own getTransport() fell back to memory://, so its calls to
// the services beside it went nowhere and its notifications to an in-process broker.
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultConfig, getTransport, RPCClient, Target, type Transport } from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { until } from '../support/assert.js';
import { scratchDir } from '../support/scratch.js';

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const INDEX = pathToFileURL(path.join(dist, 'src', 'index.js')).href;

interface Ctx {
  router: Router;
  url: string;
  dir: string;
  transport: Transport;
  children: ChildProcess[];
}
const t = suite<Ctx>('endpoints modules get the transport they are served on', {} as Ctx);
t.before(async (ctx) => {
  ctx.router = new Router({ port: 0 });
  ctx.url = `amqp://127.0.0.1:${await ctx.router.start()}/`;
  ctx.dir = scratchDir('hermod-endpoint-transport-');
  writeFileSync(path.join(ctx.dir, 'package.json'), '{"type":"module"}\n');
  // Calls another topic through the transport it was given: the run's, or rpc-server's.
  writeFileSync(
    path.join(ctx.dir, 'relay.js'),
    `import { RPCClient, Target } from ${JSON.stringify(INDEX)};
export default ({ server, transport }) => ({
  async ping() {
    return { server };
  },
  async relay(_ctx, { to }) {
    return new RPCClient(transport, new Target({ topic: to }), { timeout: 5000 }).call({}, 'ping', {});
  },
});
`,
  );
  ctx.transport = await getTransport(ctx.url, { config: defaultConfig() });
  ctx.children = [];
});
t.after(async (ctx) => {
  for (const c of ctx.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await ctx.transport.close();
  await ctx.router.stop();
});

function start(ctx: Ctx, bin: string, args: string[]): { child: ChildProcess; out: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [path.join(dist, 'bin', bin), ...args], { cwd: ctx.dir, stdio: ['ignore', 'pipe', 'pipe'] });
  ctx.children.push(child);
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  return { child, out: () => out, exited: new Promise((r) => child.once('exit', (code) => r(code))) };
}

t('rpc-server --endpoints: a module calls its own topic through the server transport', async (ctx) => {
  const s = start(ctx, 'rpc-server.js', ['rs1', '--topic', 'relay-rs', '--endpoints', './relay.js', '--transport-url', ctx.url]);
  await until(() => /serving topic relay-rs/.test(s.out()), 'rpc-server serving', 20_000).catch((err: Error) => {
    throw new Error(`${err.message}:\n${s.out()}`);
  });
  const client = new RPCClient(ctx.transport, new Target({ topic: 'relay-rs' }), { timeout: 8000 });
  assert.equal(await client.call({}, 'relay', { to: 'relay-rs' }), { server: 'rs1' });
  s.child.kill('SIGTERM');
  assert.is(await s.exited, 0, s.out());
});

t("hermod run: a service's module calls another service of the run through the run's transport", async (ctx) => {
  writeFileSync(
    path.join(ctx.dir, 'hermod.config.json'),
    JSON.stringify({
      config: { transportUrl: ctx.url },
      services: {
        front: { endpoints: './relay.js', topic: 'relay-front', server: 'f1' },
        back: { endpoints: './relay.js', topic: 'relay-back', server: 'b1' },
      },
    }),
  );
  const run = start(ctx, 'hermod.js', ['run', 'hermod.config.json']);
  await until(() => (run.out().match(/"event":"serving"/g) ?? []).length === 2, 'both services serving', 20_000).catch((err: Error) => {
    throw new Error(`${err.message}:\n${run.out()}`);
  });
  const client = new RPCClient(ctx.transport, new Target({ topic: 'relay-front' }), { timeout: 8000 });
  assert.equal(await client.call({}, 'relay', { to: 'relay-back' }), { server: 'b1' });
  run.child.kill('SIGTERM');
  assert.is(await run.exited, 0, run.out());
});

t.run();
