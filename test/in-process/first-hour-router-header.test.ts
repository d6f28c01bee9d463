// The router answers a protocol header it does not take with its own and closes (AMQP 1.0 §2.2,
// as Qpid Dispatch Router and RabbitMQ do), so that an AMQP 0-9-1 client learns at once what the
// port speaks (issue #13, "Both quick starts use port 5672"). Raw sockets and amqplib against the
// real embedded router on port 0.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import amqplib from 'amqplib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Router } from '../../src/router/router.js';
import { setPassword } from '../../src/router/users.js';

/** Writes `bytes` to the router and collects what comes back until it closes (bounded). */
function exchange(port: number, bytes: Buffer): Promise<{ got: Buffer; closed: boolean; ms: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const chunks: Buffer[] = [];
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(bytes));
    const timer = setTimeout(() => finish(false), 3000);
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ got: Buffer.concat(chunks), closed, ms: Date.now() - t0 });
    };
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => {});
    s.once('close', () => finish(true));
  });
}

const AMQP091 = Buffer.from('AMQP\x00\x00\x09\x01', 'latin1');

interface Ctx {
  routers: Router[];
  log: string[];
  dir: string;
}
const t = suite<Ctx>('router: a foreign protocol header gets the router own header, then the close', { routers: [], log: [], dir: '' });
t.before((ctx) => {
  ctx.dir = mkdtempSync(path.join(tmpdir(), 'hermod-router-header-'));
});
t.after.each(async (ctx) => {
  for (const r of ctx.routers) await r.stop();
  ctx.routers = [];
  ctx.log = [];
});
t.after((ctx) => rmSync(ctx.dir, { recursive: true, force: true }));

async function router(ctx: Ctx, options: ConstructorParameters<typeof Router>[0] = {}): Promise<number> {
  const r = new Router({ port: 0, log: (l) => ctx.log.push(l), ...options });
  ctx.routers.push(r);
  return r.start();
}

t('an AMQP 0-9-1 header: AMQP 1.0 header back (anonymous router), then the socket closes, logged', async (ctx) => {
  const port = await router(ctx);
  const r = await exchange(port, AMQP091);
  assert.ok(r.closed, 'the router closed the socket');
  assert.is(r.got.toString('latin1'), 'AMQP\x00\x01\x00\x00');
  assert.ok(r.ms < 1500, `answered after ${r.ms} ms`);
  assert.ok(
    ctx.log.some((l) => /closing 127\.0\.0\.1:\d+: not an AMQP 1\.0 protocol header \(414d515000000901\)/.test(l)),
    ctx.log.join('\n'),
  );
});

t('a router that requires a login answers with the SASL header; other junk gets the header too', async (ctx) => {
  const file = path.join(ctx.dir, 'users.json');
  await setPassword(file, 'alice', 'wonderland');
  const port = await router(ctx, { users: file });
  const r = await exchange(port, AMQP091);
  assert.ok(r.closed);
  assert.is(r.got.toString('latin1'), 'AMQP\x03\x01\x00\x00');
  const http = await exchange(port, Buffer.from('GET / HTTP/1.1\r\n\r\n', 'latin1'));
  assert.is(http.got.toString('latin1'), 'AMQP\x03\x01\x00\x00');
  assert.ok(http.closed);
});

t('a router that requires a login answers an AMQP 1.0 client that skipped SASL with the SASL header, then closes', async (ctx) => {
  const file = path.join(ctx.dir, 'users.json');
  await setPassword(file, 'alice', 'wonderland');
  const port = await router(ctx, { users: file });
  const r = await exchange(port, Buffer.from('AMQP\x00\x01\x00\x00', 'latin1'));
  assert.ok(r.closed, 'the router closed the socket');
  assert.is(r.got.toString('latin1'), 'AMQP\x03\x01\x00\x00');
  assert.ok(
    ctx.log.some((l) => /closing 127\.0\.0\.1:\d+: Expecting SASL layer/.test(l)),
    ctx.log.join('\n'),
  );
});

t('an AMQP 1.0 client is unaffected: its header gets the usual answer and the socket stays open', async (ctx) => {
  const port = await router(ctx);
  const r = await new Promise<Buffer>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(Buffer.from('AMQP\x03\x01\x00\x00', 'latin1')));
    s.once('data', (d: Buffer) => {
      s.destroy();
      resolve(d);
    });
  });
  // The SASL header and then the mechanisms frame: the handshake goes on.
  assert.is(r.subarray(0, 8).toString('latin1'), 'AMQP\x03\x01\x00\x00');
});

t('amqplib fails at once (it reads the answer as a bad frame) instead of waiting for a handshake that never comes', async (ctx) => {
  const port = await router(ctx);
  const t0 = Date.now();
  let err: Error | undefined;
  try {
    const c = await amqplib.connect(`amqp://guest:guest@127.0.0.1:${port}`);
    await c.close();
  } catch (e) {
    err = e as Error;
  }
  assert.ok(err, 'amqplib cannot connect to an AMQP 1.0 router');
  // "Frame size 1342177536 …": the bytes "AMQP" read as a frame length; before, "Socket closed abruptly".
  assert.match(err!.message, /Frame size 1342177536/);
  assert.ok(Date.now() - t0 < 2000, `failed after ${Date.now() - t0} ms`);
});

t.run();
