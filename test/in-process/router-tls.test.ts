import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import type { Connection } from 'rhea';
import rhea from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { makePki, type TestPki } from '../../scripts/pki.js';
import { Router, type RouterOptions } from '../../src/router/router.js';
import { sleep, until } from '../support/assert.js';
import { rheaClose } from '../support/rhea-peer.js';

interface Ctx {
  dir: string;
  pki: TestPki;
  router: Router | undefined;
  port: number;
  log: string[];
  conns: Connection[];
  sockets: net.Socket[];
}
const t = suite<Ctx>('router - TLS listener bounds', {
  dir: '',
  pki: {} as TestPki,
  router: undefined,
  port: 0,
  log: [],
  conns: [],
  sockets: [],
});

t.before((ctx) => {
  ctx.dir = mkdtempSync(path.join(tmpdir(), 'hermod-router-tls-'));
  ctx.pki = makePki(ctx.dir);
});
t.after((ctx) => rmSync(ctx.dir, { recursive: true, force: true }));
t.before.each((ctx) => {
  ctx.conns = [];
  ctx.sockets = [];
  ctx.router = undefined;
});
t.after.each(async (ctx) => {
  for (const s of ctx.sockets) s.destroy();
  for (const c of ctx.conns) await rheaClose(c);
  await ctx.router?.stop();
});

async function startRouter(ctx: Ctx, o: RouterOptions = {}): Promise<void> {
  ctx.log = [];
  ctx.router = new Router({ port: 0, tls: { cert: ctx.pki.cert, key: ctx.pki.key }, log: (l) => ctx.log.push(l), ...o });
  ctx.port = await ctx.router.start();
}

/** A rhea client over TLS (anonymous unless `options` give a client certificate); resolves with the open connection, or undefined when it was refused. */
async function tlsClient(ctx: Ctx, options: Record<string, unknown> = {}): Promise<Connection | undefined> {
  const c = rhea.create_container();
  c.on('error', () => {});
  const conn = c.connect({
    port: ctx.port,
    host: '127.0.0.1',
    reconnect: false,
    transport: 'tls',
    ca: [readFileSync(ctx.pki.ca)],
    servername: 'localhost',
    ...options,
  } as never);
  ctx.conns.push(conn);
  return new Promise((resolve) => {
    conn.once('connection_open', () => resolve(conn));
    conn.once('disconnected', () => resolve(undefined));
  });
}

t('TLS: connections that finished their login do not count against maxHandshakesPerAddress', async (ctx) => {
  await startRouter(ctx, { maxHandshakesPerAddress: 3 });
  // One after another, each open before the next: never more than one in its handshake.
  for (let i = 0; i < 6; i++) assert.ok(await tlsClient(ctx), `connection ${i + 1} refused:\n${ctx.log.join('\n')}`);
  assert.is(ctx.router!.stats().refused, 0);
});

t('TLS: a client certificate logs in with SASL EXTERNAL only when the router CA signed it', async (ctx) => {
  await startRouter(ctx, { tls: { cert: ctx.pki.cert, key: ctx.pki.key, ca: ctx.pki.ca } });
  const login = (cert: string, key: string) =>
    tlsClient(ctx, { cert: readFileSync(cert), key: readFileSync(key), enable_sasl_external: true });
  // Node verifies a server-side TLSSocket's peer only for sockets its tls.Server made (a TLSSocket
  // made by hand over the TCP socket completes TLS with any certificate and is never authorized).
  // The rogue certificate, from another CA, has the same CN as the real one.
  assert.not.ok(await login(ctx.pki.rogueCert, ctx.pki.rogueKey), ctx.log.join('\n'));
  assert.not.ok(
    ctx.log.some((l) => /user=svc-1/.test(l)),
    ctx.log.join('\n'),
  );
  assert.ok(await login(ctx.pki.clientCert, ctx.pki.clientKey), ctx.log.join('\n'));
  await until(() => ctx.log.some((l) => /user=svc-1/.test(l)), 'the certificate CN as the user');
});

/** A TCP connection to the router that starts a TLS handshake and never finishes it (no ClientHello sent). */
async function rawTcp(ctx: Ctx): Promise<{ socket: net.Socket; closed: Promise<void> }> {
  const socket = net.connect({ port: ctx.port, host: '127.0.0.1' });
  ctx.sockets.push(socket);
  socket.on('error', () => {});
  await new Promise((r) => socket.once('connect', r));
  return { socket, closed: new Promise((r) => socket.once('close', () => r())) };
}

t('TLS: sockets past a limit are refused as on plain TCP: counted once, logged with their address at most once per 10 s', async (ctx) => {
  await startRouter(ctx, { maxConnections: 2 });
  const held = [await rawTcp(ctx), await rawTcp(ctx)];
  const refused = await Promise.all(Array.from({ length: 5 }, () => rawTcp(ctx)));
  await Promise.all(refused.map((r) => r.closed));
  await sleep(100);
  assert.is(ctx.router!.stats().refused, 5, ctx.log.join('\n'));
  const lines = ctx.log.filter((l) => l.startsWith('refused'));
  assert.is(lines.length, 1, lines.join('\n'));
  assert.match(lines[0]!, /^refused 127\.0\.0\.1:\d+: connection limit of 2 reached$/);
  for (const h of held) assert.not.ok(h.socket.destroyed);
});

t('TLS: a client that rejects the router certificate is logged with its address:port, once', async (ctx) => {
  await startRouter(ctx);
  const client = tls.connect({ port: ctx.port, host: '127.0.0.1', servername: 'localhost' });
  const failed = new Promise<string>((r) => client.once('error', (e: NodeJS.ErrnoException) => r(String(e.code))));
  // The router's certificate is signed by the test CA, which this client does not trust.
  assert.is(await failed, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  await until(() => ctx.log.some((l) => l.includes('TLS handshake failed')), 'the failure logged');
  await sleep(100);
  const lines = ctx.log.filter((l) => l.includes('TLS handshake failed'));
  assert.is(lines.length, 1, lines.join('\n'));
  assert.match(lines[0]!, /^refused 127\.0\.0\.1:\d+: TLS handshake failed: /);
  assert.is(ctx.router!.stats().refused, 1);
});

t(
  'TLS: sockets that hang up or send garbage instead of a handshake: each counted, logged at most once per 10 s with the count since',
  async (ctx) => {
    // Each line's time, to send the last socket once the throttle's 10 s are surely over.
    let lastLineAt = 0;
    await startRouter(ctx, {
      // The flood comes from one address: the handshake limit is not what this case is about.
      maxHandshakesPerAddress: 1000,
      log: (l) => {
        ctx.log.push(l);
        if (l.includes('TLS handshake failed')) lastLineAt = Date.now();
      },
    });
    const failed = () => ctx.log.filter((l) => l.includes('TLS handshake failed'));
    const n = 200;
    const t0 = Date.now();
    for (let i = 0; i < n; i += 20) {
      await Promise.all(
        Array.from({ length: 20 }, async (_, j) => {
          const { socket, closed } = await rawTcp(ctx);
          // Half hang up at once, half send a request in clear (a client that forgot TLS).
          if ((i + j) % 2) socket.end('GET / HTTP/1.0\r\n\r\n');
          else socket.destroy();
          await closed;
        }),
      );
    }
    await until(() => ctx.router!.stats().refused >= n, `${n} refusals counted (${ctx.router!.stats().refused})`, 20_000);
    await sleep(200);
    assert.is(ctx.router!.stats().refused, n, ctx.log.join('\n'));
    // One line per started 10 s at most (one on an unloaded machine), naming its socket.
    const lines = failed();
    assert.ok(lines.length >= 1 && lines.length <= Math.floor((Date.now() - t0) / 10_000) + 1, lines.join('\n'));
    for (const l of lines) assert.match(l, /^refused 127\.0\.0\.1:\d+: TLS handshake failed: /);
    // Past the interval, the next failure is logged with what was held back: every failure is
    // either a line or in a later line's count.
    await sleep(Math.max(0, lastLineAt + 11_000 - Date.now()));
    const last = await rawTcp(ctx);
    last.socket.destroy();
    await until(() => failed().length > lines.length, 'the next line', 10_000);
    const all = failed();
    assert.is(all.length, lines.length + 1, all.join('\n'));
    assert.match(all.at(-1)!, / \(and \d+ more since the last such line\)$/);
    const accounted = all.reduce((sum, l) => sum + 1 + Number(/\(and (\d+) more/.exec(l)?.[1] ?? 0), 0);
    assert.is(accounted, n + 1, all.join('\n'));
    assert.is(ctx.router!.stats().refused, n + 1);
  },
);

t('TLS: one handshake deadline from TCP connect, TLS included (the AMQP one started over once TLS was done)', async (ctx) => {
  // Wide margins for a loaded machine: TLS gets a second to finish before the deadline, and the
  // old behaviour (closed at 1000 + 2000 ms) is far from the new (2000 ms).
  await startRouter(ctx, { handshakeTimeout: 2000 });
  // TLS done at 1 s, then silence: closed at 2 s from connect, not 1 + 2.
  const slow = await rawTcp(ctx);
  const t0 = Date.now();
  const closedAt = slow.closed.then(() => Date.now() - t0);
  await sleep(1000);
  const secure = tls.connect({ socket: slow.socket, ca: [readFileSync(ctx.pki.ca)], servername: 'localhost' });
  secure.on('error', () => {});
  let tlsDone = false;
  // Raced with the close: a handshake the deadline cut must fail the test, not hang it.
  await Promise.race([new Promise((r) => secure.once('secureConnect', r)).then(() => (tlsDone = true)), slow.closed]);
  assert.ok(tlsDone, 'TLS finished before the deadline');
  const ms = await closedAt;
  assert.ok(ms >= 1900 && ms < 2800, `closed after ${ms} ms`);
  await until(() => ctx.log.some((l) => /^closing 127\.0\.0\.1:\d+: no AMQP open within 2000 ms$/.test(l)), 'the deadline logged');
  // No TLS at all: closed at the same deadline, said once, counted once.
  ctx.log.length = 0;
  const silent = await rawTcp(ctx);
  const port = silent.socket.localPort;
  const t1 = Date.now();
  await silent.closed;
  assert.ok(Date.now() - t1 < 2800, `closed after ${Date.now() - t1} ms`);
  await sleep(100);
  assert.equal(
    ctx.log.filter((l) => !l.startsWith('connection closed')),
    [`closing 127.0.0.1:${port}: no AMQP open within 2000 ms (TLS handshake not finished)`],
  );
  assert.is(ctx.router!.stats().refused, 2);
});

t.run();
