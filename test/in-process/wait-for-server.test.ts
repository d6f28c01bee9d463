import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  AccessRefused,
  ClosedError,
  type Context,
  defaultConfig,
  getTransport,
  InvalidArgument,
  MessageDeliveryFailure,
  MessagingTimeout,
  RPCClient,
  RPCServer,
  RPCVersionCapError,
  Target,
  type Transport,
} from '../../src/index.js';
import { Router } from '../../src/router/router.js';
import { hashPassword } from '../../src/router/users.js';
import { scratchDir } from '../support/scratch.js';

// client.waitForServer(): a process that starts before the services it calls waits for one to
// answer, on memory:// and through the embedded router (RabbitMQ and an oslo.messaging server:
// integration/wait-for-server-rabbit).

class Echo {
  async echo(_ctx: Context, args: { v: unknown }) {
    return args.v;
  }
}

class EchoV2 {
  readonly target = new Target({ version: '2.0' });
  async echo(_ctx: Context, args: { v: unknown }) {
    return args.v;
  }
}

interface Ctx {
  url: string;
  stopBroker: () => Promise<void>;
  transports: Transport[];
  servers: RPCServer[];
}

const BROKERS: Array<[string, () => Promise<{ url: string; stop: () => Promise<void> }>]> = [
  ['memory', async () => ({ url: `memory://wait-${process.pid}`, stop: async () => {} })],
  [
    'amqp1 via the embedded router',
    async () => {
      const router = new Router({ port: 0 });
      const port = await router.start();
      return { url: `amqp://127.0.0.1:${port}/`, stop: () => router.stop() };
    },
  ],
];

let topics = 0;
for (const [name, broker] of BROKERS) {
  const t = suite<Ctx>(`waitForServer over ${name}`, {} as Ctx);
  t.before(async (ctx) => {
    const b = await broker();
    ctx.url = b.url;
    ctx.stopBroker = b.stop;
  });
  t.after(async (ctx) => {
    await ctx.stopBroker();
  });
  t.before.each((ctx) => {
    ctx.transports = [];
    ctx.servers = [];
  });
  t.after.each(async (ctx) => {
    for (const s of ctx.servers) {
      await s.stop();
      await s.wait(1000);
    }
    for (const tr of ctx.transports) await tr.close();
  });
  const transport = async (ctx: Ctx) => {
    const tr = await getTransport(ctx.url, { config: defaultConfig() });
    ctx.transports.push(tr);
    return tr;
  };
  const serve = async (ctx: Ctx, topic: string, server: string, options: { introspection?: boolean } = {}) => {
    const s = new RPCServer(await transport(ctx), new Target({ topic, server }), [new Echo()], options);
    ctx.servers.push(s);
    await s.start();
    return s;
  };

  t('resolves once a server that started later answers, with its name; the call after it goes through', async (ctx) => {
    const topic = `wait-${process.pid}-${++topics}`;
    const client = new RPCClient(await transport(ctx), new Target({ topic }), { timeout: 10_000 });
    const waiting = client.waitForServer({ interval: 100 });
    let settled = false;
    void waiting.finally(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 600));
    assert.not.ok(settled, 'nothing answered yet');
    await serve(ctx, topic, 's1');
    const found = await waiting;
    assert.is(found.server, 's1');
    assert.ok(found.waitedMs >= 550 && found.waitedMs < 6000, `waited ${found.waitedMs} ms`);
    assert.is(await client.call({}, 'echo', { v: 7 }), 7);
  });

  t('a server already there answers at once', async (ctx) => {
    const topic = `wait-${process.pid}-${++topics}`;
    await serve(ctx, topic, 's1');
    const client = new RPCClient(await transport(ctx), new Target({ topic }));
    const found = await client.waitForServer({ timeout: 5000 });
    assert.is(found.server, 's1');
    assert.ok(found.waitedMs < 2000, `waited ${found.waitedMs} ms`);
  });

  t('a target naming a server waits for that one, not another of the topic', async (ctx) => {
    const topic = `wait-${process.pid}-${++topics}`;
    await serve(ctx, topic, 'a');
    const client = new RPCClient(await transport(ctx), new Target({ topic, server: 'b' }));
    const waiting = client.waitForServer({ timeout: 8000, interval: 100 });
    await new Promise((r) => setTimeout(r, 400));
    await serve(ctx, topic, 'b');
    assert.is((await waiting).server, 'b');
  });

  t('with introspection off a server still counts (its NoSuchMethod is an answer), without a name', async (ctx) => {
    const topic = `wait-${process.pid}-${++topics}`;
    await serve(ctx, topic, 's1', { introspection: false });
    const client = new RPCClient(await transport(ctx), new Target({ topic }));
    const found = await client.waitForServer({ timeout: 5000 });
    assert.is(found.server, undefined);
  });

  t('a version nobody serves yet is waited for past the servers of another (a rolling upgrade)', async (ctx) => {
    const topic = `wait-${process.pid}-${++topics}`;
    await serve(ctx, topic, 'old');
    const client = new RPCClient(await transport(ctx), new Target({ topic, version: '2.0' }));
    const waiting = client.waitForServer({ timeout: 8000, interval: 100 });
    let settled = false;
    void waiting.finally(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 500));
    assert.not.ok(settled, 'the 1.0 server is not one for 2.0');
    const s = new RPCServer(await transport(ctx), new Target({ topic, server: 'new' }), [new EchoV2()]);
    ctx.servers.push(s);
    await s.start();
    assert.is((await waiting).server, 'new');
    // (Calls to the topic still reach either server, and the old one refuses 2.0.)
    assert.is(await client.prepare({ server: 'new' }).call({}, 'echo', { v: 2 }), 2);
  });

  t('a tiny timeout still makes one attempt; a close during the pause ends the wait at once', async (ctx) => {
    const topic = `wait-${process.pid}-${++topics}`;
    await serve(ctx, topic, 's1');
    const tr = await transport(ctx);
    // One attempt is made, of 1 ms: it finds the server, or (a router's round trip, a loaded
    // machine) names how it failed; before, none was made and the error named none.
    const tiny = await new RPCClient(tr, new Target({ topic })).waitForServer({ timeout: 0.0001 }).then(
      (found) => found.server,
      (e: Error) => e.message,
    );
    assert.ok(tiny === 's1' || /the last attempt: /.test(String(tiny)), String(tiny));
    const nobody = new RPCClient(tr, new Target({ topic: `${topic}-nobody` }));
    const waiting = nobody.waitForServer({ timeout: 60_000, interval: 30_000 }).then(
      () => undefined,
      (e: Error) => e,
    );
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    await tr.close();
    const err = await waiting;
    assert.instance(err, ClosedError);
    assert.ok(Date.now() - t0 < 1000, `settled ${Date.now() - t0} ms after the close`);
  });

  t('nobody comes: MessagingTimeout at the timeout, naming the topic', async (ctx) => {
    const topic = `wait-${process.pid}-${++topics}`;
    const client = new RPCClient(await transport(ctx), new Target({ topic }));
    const t0 = Date.now();
    const err = await client.waitForServer({ timeout: 800, interval: 100 }).then(
      () => undefined,
      (e: Error) => e,
    );
    const took = Date.now() - t0;
    assert.instance(err, MessagingTimeout);
    assert.match(err!.message, new RegExp(`no server of topic ${topic} answered within 800 ms`));
    assert.ok(took >= 750 && took < 3000, `took ${took} ms`);
  });

  t("the client's own errors are thrown at once: bad options, a version cap, a closed transport", async (ctx) => {
    const topic = `wait-${process.pid}-${++topics}`;
    const tr = await transport(ctx);
    const client = new RPCClient(tr, new Target({ topic }));
    for (const bad of [{ timeout: 0 }, { interval: -1 }, { timeot: 5 }] as never[]) {
      assert.instance(await client.waitForServer(bad).catch((e) => e), InvalidArgument, JSON.stringify(bad));
    }
    const capped = new RPCClient(tr, new Target({ topic, version: '2.0' }), { versionCap: '1.5' });
    const t0 = Date.now();
    assert.instance(await capped.waitForServer({ timeout: 5000 }).catch((e) => e), RPCVersionCapError);
    await tr.close();
    assert.instance(await client.waitForServer({ timeout: 5000 }).catch((e) => e), ClosedError);
    assert.ok(Date.now() - t0 < 1000);
  });

  t.run();
}

const b = suite('waitForServer before the broker is up');

b('through the embedded router started after the wait began: the wait goes on until a server answers', async () => {
  // A port that was free a moment ago: the router comes up on it later, as in a deployment whose
  // broker and services start together.
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const url = `amqp://127.0.0.1:${port}/`;
  const topic = `wait-${process.pid}-early`;
  const tr = await getTransport(url, { config: defaultConfig() });
  const client = new RPCClient(tr, new Target({ topic }));
  const waiting = client.waitForServer({ timeout: 20_000, interval: 200 });
  let router: Router | undefined;
  let server: RPCServer | undefined;
  let serverTransport: Transport | undefined;
  try {
    await new Promise((r) => setTimeout(r, 800));
    router = new Router({ port });
    await router.start();
    serverTransport = await getTransport(url, { config: defaultConfig() });
    server = new RPCServer(serverTransport, new Target({ topic, server: 'late' }), [new Echo()]);
    await server.start();
    const found = await waiting;
    assert.is(found.server, 'late');
    assert.is(await client.call({}, 'echo', { v: 'x' }), 'x');
  } finally {
    await waiting.catch(() => undefined);
    await server?.stop();
    await server?.wait(1000);
    await serverTransport?.close();
    await tr.close();
    await router?.stop();
  }
});

b('a refused login or a refused address is thrown at once, not waited on', async () => {
  const dir = scratchDir('hermod-wait-users-');
  const file = path.join(dir, 'users.json');
  writeFileSync(
    file,
    JSON.stringify({
      users: {
        alice: { password: await hashPassword('pw') },
        bob: { password: await hashPassword('pw'), send: ['other'], receive: ['other'] },
      },
    }),
  );
  const router = new Router({ port: 0, users: file });
  const port = await router.start();
  try {
    for (const [who, url, type] of [
      ['a wrong password', `amqp://alice:bad@127.0.0.1:${port}/`, AccessRefused],
      ['no right to send to the topic', `amqp://bob:pw@127.0.0.1:${port}/`, MessageDeliveryFailure],
    ] as const) {
      const tr = await getTransport(url, { config: defaultConfig() });
      try {
        const t0 = Date.now();
        const err = await new RPCClient(tr, new Target({ topic: 'acl' })).waitForServer({ timeout: 8000, interval: 100 }).then(
          () => undefined,
          (e: Error) => e,
        );
        assert.instance(err, type, `${who}: ${err}`);
        assert.ok(Date.now() - t0 < 4000, `${who}: thrown after ${Date.now() - t0} ms`);
      } finally {
        await tr.close();
      }
    }
  } finally {
    await router.stop();
  }
});

b.run();
