import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Connection } from 'rhea';
import rhea from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Router, type RouterOptions } from '../../src/router/router.js';
import { pki } from '../support/pki.js';
import { rheaClose } from '../support/rhea-peer.js';

interface Ctx {
  dir: string;
  pki: Record<string, string>;
  router: Router | undefined;
  port: number;
  log: string[];
  conns: Connection[];
  sockets: net.Socket[];
}
const t = suite<Ctx>('router - TLS listener bounds', {
  dir: '',
  pki: {},
  router: undefined,
  port: 0,
  log: [],
  conns: [],
  sockets: [],
});

t.before((ctx) => {
  ctx.dir = mkdtempSync(path.join(tmpdir(), 'hermod-router-tls-'));
  ctx.pki = pki(ctx.dir);
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
  ctx.router = new Router({ port: 0, tls: { cert: ctx.pki.cert!, key: ctx.pki.key! }, log: (l) => ctx.log.push(l), ...o });
  ctx.port = await ctx.router.start();
}

/** A rhea client over TLS (anonymous); resolves with the open connection, or undefined when it was refused. */
async function tlsClient(ctx: Ctx): Promise<Connection | undefined> {
  const c = rhea.create_container();
  c.on('error', () => {});
  const conn = c.connect({
    port: ctx.port,
    host: '127.0.0.1',
    reconnect: false,
    transport: 'tls',
    ca: [readFileSync(ctx.pki.ca!)],
    servername: 'localhost',
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

t.run();
