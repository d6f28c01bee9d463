import { copyFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { makePki, type TestPki } from '../../scripts/pki.js';
import { ConfigError, defaultConfig, getTransport, RPCClient, Target } from '../../src/index.js';
import { rejects, until } from '../support/assert.js';
import { scratchDir } from '../support/scratch.js';

// The tls.* files are checked when a transport is made. Met at each connect attempt instead, an
// unreadable or non-PEM file was retried as "cannot connect" for good, on rabbits:// leaking the
// TCP socket every attempt opened (42 open sockets after 8 s), or came out of amqps:// as
// OpenSSL's bare "PEM routines::no start line" (rpc-client exit 6, no key named).

interface Ctx {
  dir: string;
  pki: TestPki;
  /** A TCP listener that takes connections and never answers: counts every dial. */
  silent: net.Server;
  port: number;
  accepted: net.Socket[];
}
const t = suite<Ctx>('tls.* files: checked when the transport is made, named when unusable', {} as Ctx);

t.before((ctx) => {
  ctx.dir = scratchDir('hermod-tls-files-');
  ctx.pki = makePki(ctx.dir);
  writeFileSync(path.join(ctx.dir, 'junk.pem'), 'not a certificate\n');
});
t.before(async (ctx) => {
  ctx.accepted = [];
  ctx.silent = net.createServer((s) => {
    ctx.accepted.push(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => ctx.silent.listen(0, '127.0.0.1', r));
  ctx.port = (ctx.silent.address() as net.AddressInfo).port;
});
t.after(async (ctx) => {
  for (const s of ctx.accepted) s.destroy();
  await new Promise((r) => ctx.silent.close(r));
});

const open = (url: string, overrides: Record<string, unknown>) => getTransport(url, { config: defaultConfig(), overrides });

for (const scheme of ['rabbits', 'amqps']) {
  t(`${scheme}://: a missing, non-PEM or mismatched file is a ConfigError naming its key, before anything is dialled`, async (ctx) => {
    const url = `${scheme}://guest:guest@127.0.0.1:${ctx.port}/`;
    const junk = path.join(ctx.dir, 'junk.pem');
    const cases: Array<[Record<string, unknown>, string, RegExp]> = [
      [{ 'tls.ca': path.join(ctx.dir, 'none.pem') }, 'tls.ca', /tls\.ca: cannot read \S*none\.pem/],
      [{ 'tls.ca': junk }, 'tls.ca', /tls\.ca: \S*junk\.pem holds no PEM certificate/],
      [
        { 'tls.ca': ctx.pki.ca, 'tls.cert': junk, 'tls.key': ctx.pki.clientKey },
        'tls.cert',
        /tls\.cert: \S*junk\.pem is not a usable PEM certificate/,
      ],
      [
        { 'tls.ca': ctx.pki.ca, 'tls.cert': ctx.pki.clientCert, 'tls.key': junk },
        'tls.key',
        /tls\.key: \S*junk\.pem is not a usable PEM private key/,
      ],
      [
        { 'tls.ca': ctx.pki.ca, 'tls.cert': ctx.pki.clientCert, 'tls.key': ctx.pki.rogueKey },
        'tls.key',
        /tls\.key: \S*rogue\.key does not go with the certificate of tls\.cert \(\S*client\.pem\)/,
      ],
    ];
    for (const [overrides, key, message] of cases) {
      const err = await rejects(open(url, overrides), 'HERMOD_ERR_CONFIG', message);
      assert.instance(err, ConfigError);
      assert.is((err as ConfigError).key, key, JSON.stringify(overrides));
    }
    // The right files still make a transport (it dials on first use only).
    const ok = await open(url, { 'tls.ca': ctx.pki.ca, 'tls.cert': ctx.pki.clientCert, 'tls.key': ctx.pki.clientKey });
    await ok.close();
    assert.is(ctx.accepted.length, 0, 'nothing was dialled');
  });
}

t(
  'rabbits://: a CA file gone after the transport was made is retried without opening a socket, and dialled again once it is back',
  async (ctx) => {
    const ca = path.join(ctx.dir, 'ca-copy.pem');
    copyFileSync(ctx.pki.ca, ca);
    const before = ctx.accepted.length;
    const tr = await open(`rabbits://guest:guest@127.0.0.1:${ctx.port}/`, {
      'tls.ca': ca,
      'rabbit.retryInterval': 50,
      'rabbit.intervalMax': 100,
    });
    try {
      // Gone for a while, as during a certificate rotation that is not atomic.
      rmSync(ca);
      const c = new RPCClient(tr, new Target({ topic: 'tls-files' }), { timeout: 1500 });
      await rejects(c.call({}, 'ping'), 'HERMOD_ERR_TRANSPORT', /tls\.ca: cannot read \S*ca-copy\.pem.*still trying/);
      // Before: every attempt opened a TCP connection before reading the file, and left it open.
      assert.is(ctx.accepted.length - before, 0, 'no TCP connection was opened for an attempt that could not be made');
      copyFileSync(ctx.pki.ca, ca);
      // The transport was not given up for good: it dials again (this listener never answers, so no further).
      const call = c.call({}, 'ping').catch(() => undefined);
      await until(() => ctx.accepted.length > before, 'a dial once the file is back', 5000);
      await call;
    } finally {
      await tr.close();
    }
  },
);

t.run();
