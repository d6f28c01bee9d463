import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Connection, EventContext } from 'rhea';
import rhea from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { makePki } from '../../scripts/pki.js';
import { defaultConfig, getTransport, RPCClient, RPCServer, Target, type Transport } from '../../src/index.js';
import { LoginChecks } from '../../src/router/login-checks.js';
import { Router, type RouterOptions } from '../../src/router/router.js';
import { setPassword, UserDb, verifyPassword } from '../../src/router/users.js';
import { raw } from '../support/amqp-raw.js';
import { rejects, sleep, until } from '../support/assert.js';
import { rheaClose } from '../support/rhea-peer.js';

// rhea's frame codec, to write a SASL init without a client that waits for its outcome.
const frames = createRequire(import.meta.url)('rhea/lib/frames.js') as {
  write_frame(f: unknown): Buffer;
  sasl_frame(p: unknown): unknown;
  sasl_init(o: { mechanism: string; initial_response: Buffer }): unknown;
  sasl_mechanisms(o: { sasl_server_mechanisms: string[] }): unknown;
  sasl_outcome(o: { code: number }): unknown;
  amqp_frame(channel: number, performative: unknown): unknown;
  open(o: Record<string, unknown>): unknown;
  begin(o: Record<string, unknown>): unknown;
};

interface Ctx {
  dir: string;
  users: string;
  router: Router | undefined;
  port: number;
  log: string[];
  conns: Connection[];
  transports: Transport[];
  servers: RPCServer[];
}
const t = suite<Ctx>('router - authentication and authorisation', {
  dir: '',
  users: '',
  router: undefined,
  port: 0,
  log: [],
  conns: [],
  transports: [],
  servers: [],
});

t.before(async (ctx) => {
  ctx.dir = mkdtempSync(path.join(tmpdir(), 'hermod-auth-'));
  ctx.users = path.join(ctx.dir, 'users.json');
  await setPassword(ctx.users, 'alice', 'wonderland');
  await setPassword(ctx.users, 'bob', 'builder');
  // bob may only use work/ (and reply addresses); alice has no rules.
  const file = JSON.parse(readFileSync(ctx.users, 'utf8'));
  file.users.bob.send = ['work/'];
  file.users.bob.receive = ['work/'];
  writeFileSync(ctx.users, JSON.stringify(file));
});
t.after((ctx) => rmSync(ctx.dir, { recursive: true, force: true }));
t.before.each((ctx) => {
  ctx.conns = [];
  ctx.transports = [];
  ctx.servers = [];
  ctx.router = undefined;
});
t.after.each(async (ctx) => {
  for (const s of ctx.servers) await s.stop();
  for (const tr of ctx.transports) await tr.close();
  for (const c of ctx.conns) await rheaClose(c);
  await ctx.router?.stop();
});

async function startRouter(ctx: Ctx, o: RouterOptions = {}): Promise<void> {
  ctx.log = [];
  ctx.router = new Router({ port: 0, users: ctx.users, log: (l) => ctx.log.push(l), ...o });
  ctx.port = await ctx.router.start();
}

/** Connects a plain rhea client; resolves with the open connection or the error it failed with. */
async function attempt(
  ctx: Ctx,
  options: Record<string, unknown>,
): Promise<{ conn?: Connection; error?: { condition?: string; message?: string } }> {
  const c = rhea.create_container();
  c.on('error', () => {});
  const conn = c.connect({ port: ctx.port, host: '127.0.0.1', reconnect: false, ...options } as never);
  ctx.conns.push(conn);
  return new Promise((resolve) => {
    conn.once('connection_open', () => resolve({ conn }));
    conn.once('connection_error', (e: EventContext) =>
      resolve({ error: (e as unknown as { error: { condition?: string; message?: string } }).error }),
    );
    conn.once('disconnected', () => resolve({ error: { condition: 'disconnected' } }));
  });
}

t('users file: scrypt hashes, right password accepted, wrong one and unknown user refused', async (ctx) => {
  const text = readFileSync(ctx.users, 'utf8');
  assert.ok(!text.includes('wonderland'));
  assert.match(text, /"password":\s*"scrypt\$16384\$8\$1\$/);
  const db = UserDb.load(ctx.users);
  assert.ok(await db.check('alice', 'wonderland'));
  assert.not.ok(await db.check('alice', 'Wonderland'));
  assert.not.ok(await db.check('carol', 'wonderland'));
});

t('users file: a password that is not a hash from passwd refuses to load, naming the user; verifyPassword never throws', async (ctx) => {
  const cases: Array<[string, string]> = [
    ['plaintext', 'the password in clear'],
    ['malformed', 'scrypt$abc$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA'],
    ['short hash', 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA'],
    ['cost not a power of two', 'scrypt$1000$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='],
  ];
  const good = JSON.parse(readFileSync(ctx.users, 'utf8'));
  for (const [name, password] of cases) {
    const file = path.join(ctx.dir, 'bad-users.json');
    writeFileSync(file, JSON.stringify({ users: { ...good.users, [name]: { password } } }));
    assert.throws(
      () => UserDb.load(file),
      (e: Error & { code?: string }) =>
        e.code === 'HERMOD_ERR_CONFIG' &&
        e.message.includes(`user "${name}": "password" is not a hash written by \`hermod-router passwd\``),
      name,
    );
    assert.throws(() => new Router({ port: 0, users: file }), /is not a hash written by `hermod-router passwd`/, name);
    // The only way out is the one the message names: passwd replaces the entry.
    await setPassword(file, name, 'fixed');
    assert.ok(await UserDb.load(file).check(name, 'fixed'), name);
    assert.is(await verifyPassword('x', password), false, name);
  }
});

t('SASL PLAIN: a rhea client with the right password gets in, with a wrong one is refused at once and logged', async (ctx) => {
  await startRouter(ctx);
  const ok = await attempt(ctx, { username: 'alice', password: 'wonderland' });
  assert.ok(ok.conn?.is_open());
  await until(() => ctx.log.some((l) => /connection open from 127\.0\.0\.1:\d+ user=alice/.test(l)), 'the open logged with the user');
  const t0 = Date.now();
  const bad = await attempt(ctx, { username: 'alice', password: 'nope' });
  assert.is(bad.error?.condition, 'amqp:unauthorized-access');
  assert.ok(Date.now() - t0 < 2000);
  assert.ok(ctx.log.some((l) => /refused 127\.0\.0\.1:\d+: authentication failed for user "alice"/.test(l)));
});

t("hermod's client logs in with a non-ASCII name and password (SASL PLAIN in UTF-8 bytes)", async (ctx) => {
  // rhea's own PLAIN sized its response in characters: `pé` went out as `p` and a NUL, refused
  // as a wrong password. The router itself read UTF-8 right (python3-qpid-proton got in).
  await setPassword(ctx.users, 'usé', 'pé:ü/✓');
  await startRouter(ctx);
  const user = encodeURIComponent('usé');
  const tr = await getTransport(`amqp://${user}:${encodeURIComponent('pé:ü/✓')}@127.0.0.1:${ctx.port}/`, { config: defaultConfig() });
  ctx.transports.push(tr);
  await tr.connect(5_000);
  await until(() => ctx.log.some((l) => /connection open from 127\.0\.0\.1:\d+ user=usé/.test(l)), 'the open logged with the user');
  const wrong = await getTransport(`amqp://${user}:${encodeURIComponent('pe:ü/✓')}@127.0.0.1:${ctx.port}/`, { config: defaultConfig() });
  ctx.transports.push(wrong);
  await rejects(() => wrong.connect(5_000), 'HERMOD_ERR_ACCESS_REFUSED');
});

t('wrong-password logins from peers that hang up at once are not checked: a real login after 200 of them gets in', async (ctx) => {
  await startRouter(ctx);
  const saslHeader = Buffer.from('AMQP\x03\x01\x00\x00', 'latin1');
  const init = frames.write_frame(
    frames.sasl_frame(frames.sasl_init({ mechanism: 'PLAIN', initial_response: Buffer.from('\0alice\0wrong') })),
  );
  let sent = 0;
  await new Promise<void>((resolve) => {
    let open = 0;
    const go = () => {
      while (open < 32 && sent < 200) {
        open++;
        sent++;
        const s = net.connect(ctx.port, '127.0.0.1');
        s.on('error', () => {});
        s.once('connect', () => {
          s.write(Buffer.concat([saslHeader, init]));
          setImmediate(() => s.destroy());
        });
        s.once('close', () => {
          open--;
          if (sent >= 200 && open === 0) resolve();
          else go();
        });
      }
    };
    go();
  });
  const t0 = Date.now();
  const ok = await attempt(ctx, { username: 'alice', password: 'wonderland' });
  assert.ok(ok.conn?.is_open(), JSON.stringify(ok.error));
  const took = Date.now() - t0;
  // Every one was checked before (scrypt on libuv's pool, in order), the real login last: 600
  // took it 17.6 s. Now only those whose peer was still there when a slot came up.
  const checked = ctx.log.filter((l) => /authentication failed for user "alice"/.test(l)).length;
  console.log(`    a real login ${took} ms after 200 wrong ones from peers that left; ${checked} of them checked`);
  assert.ok(checked < 40, `${checked} of 200 wrong passwords checked`);
});

t('a login checked after its client hung up leaves nothing: no open connection, no receiver on its address', async (ctx) => {
  // From a fuzzer: SASL PLAIN, the AMQP header, open, begin and a receiver's attach and flow in
  // one write, the socket closed while the password was checked. rhea replayed the buffered open
  // and attach once the check passed: the router counted a connection with no socket for good,
  // and messages to the address went to its dead receiver, never settled.
  await startRouter(ctx);
  const amqp = (p: unknown) => frames.write_frame(frames.amqp_frame(0, p));
  const login = Buffer.concat([
    Buffer.from('AMQP\x03\x01\x00\x00', 'latin1'),
    frames.write_frame(frames.sasl_frame(frames.sasl_init({ mechanism: 'PLAIN', initial_response: Buffer.from('\0alice\0wonderland') }))),
    Buffer.from('AMQP\x00\x01\x00\x00', 'latin1'),
    amqp(frames.open({ container_id: 'zombie', max_frame_size: 65536 })),
    amqp(frames.begin({ next_outgoing_id: 0, incoming_window: 2048, outgoing_window: 2048 })),
    raw.attach(0, 'receiver', 'zombie.q'),
    raw.flow({ handle: 0, delivery_count: 0, link_credit: 10 }),
  ]);
  for (const delay of [0, 5, 20, 40]) {
    for (let i = 0; i < 5; i++) {
      const s = net.connect(ctx.port, '127.0.0.1');
      s.on('error', () => {});
      s.once('connect', () => {
        s.write(login);
        setTimeout(() => s.destroy(), delay);
      });
    }
  }
  // Twenty checks at two a time, about 50 ms each, then whatever follows them.
  await sleep(2500);
  const stats = ctx.router!.stats();
  assert.equal([stats.connections, stats.addresses], [0, 0], ctx.log.filter((l) => /open|closed/.test(l)).join('\n'));
  assert.not.ok(ctx.log.some((l) => /connection open from undefined/.test(l)));
});

t('logins past what the router checks at once from one address are answered sasl `sys` (retry), not refused as wrong', async (ctx) => {
  // The 32 held take seconds of scrypt on a loaded machine: the handshake deadline is not under test.
  await startRouter(ctx, { handshakeTimeout: 60_000 });
  // 60 at once from 127.0.0.1 (64 may be in their handshake): 32 held (2 checked at a time), the
  // rest turned away.
  const results = await Promise.all(Array.from({ length: 60 }, () => attempt(ctx, { username: 'alice', password: 'nope' })));
  const conditions = results.map((r) => r.error?.condition);
  const busy = conditions.filter((c) => c === 'amqp:internal-error').length;
  const refused = conditions.filter((c) => c === 'amqp:unauthorized-access').length;
  assert.is(busy + refused, 60, conditions.join(' '));
  assert.ok(refused >= 32 && busy >= 1, `${refused} refused, ${busy} turned away`);
  assert.ok(ctx.log.some((l) => /refused 127\.0\.0\.1:\d+: too many logins being checked \(\d+\); it may try again/.test(l)));
  // Turned away is not locked out.
  const ok = await attempt(ctx, { username: 'alice', password: 'wonderland' });
  assert.ok(ok.conn?.is_open(), JSON.stringify(ok.error));
});

t(
  'the login bounds are options: raised, 60 logins at once from one address are all checked; lowered, most are turned away',
  async (ctx) => {
    const wrong = (n: number) => Promise.all(Array.from({ length: n }, () => attempt(ctx, { username: 'alice', password: 'nope' })));
    const count = (results: { error?: { condition?: string } }[], condition: string) =>
      results.filter((r) => r.error?.condition === condition).length;
    // 60 scrypt checks, two at a time, take seconds on a loaded machine: past the default 5 s
    // handshake deadline the last ones were cut ("disconnected"), which is not what this checks.
    await startRouter(ctx, { maxLoginsPerAddress: 64, handshakeTimeout: 60_000 });
    // The same 60 as above, where the default of 32 per address turned some away.
    const raised = await wrong(60);
    assert.is(count(raised, 'amqp:unauthorized-access'), 60, raised.map((r) => r.error?.condition).join(' '));
    await ctx.router!.stop();
    for (const c of ctx.conns.splice(0)) await rheaClose(c);
    await startRouter(ctx, { maxLoginChecks: 1, maxLoginsWaiting: 1 });
    // One check running and one waiting: of 20 sent together, at most a few are checked.
    const lowered = await wrong(20);
    const busy = count(lowered, 'amqp:internal-error');
    assert.is(busy + count(lowered, 'amqp:unauthorized-access'), 20);
    assert.ok(busy >= 12, `${busy} of 20 turned away`);
    assert.ok((await attempt(ctx, { username: 'alice', password: 'wonderland' })).conn?.is_open(), 'a later login gets in');
    for (const key of ['maxLoginChecks', 'maxLoginsWaiting', 'maxLoginsPerAddress'] as const) {
      assert.throws(
        () => new Router({ port: 0, users: ctx.users, [key]: 0 }),
        new RegExp(`router ${key} must be a whole number ≥ 1, got 0`),
      );
    }
  },
);

t("hermod's client retries a login the router turned away, and gets in once there is room", async (ctx) => {
  await startRouter(ctx);
  // No room at all: every login is turned away until the router's checks are put back.
  const router = ctx.router as unknown as { logins: LoginChecks };
  const room = router.logins;
  router.logins = new LoginChecks(0, 0, 0);
  const tr = await getTransport(`amqp://alice:wonderland@127.0.0.1:${ctx.port}/`, { config: defaultConfig() });
  ctx.transports.push(tr);
  const reasons: string[] = [];
  tr.on('state', (st: { state: string; reason?: string }) => {
    if (st.state === 'reconnecting') reasons.push(String(st.reason));
  });
  const connected = tr.connect(30_000);
  await until(() => ctx.log.filter((l) => /too many logins being checked/.test(l)).length >= 1, 'a login turned away');
  await sleep(1500);
  assert.is(tr.state.state === 'connected', false);
  router.logins = room;
  await connected;
  assert.is(tr.state.state, 'connected', 'retried, not refused as a wrong password');
  // Whether it tries again is the reconnect line's to say: the reason said "retrying" even in
  // the give-up that ended a spent budget.
  assert.ok(reasons.length >= 1);
  for (const r of reasons) assert.is(r, 'SASL failed: the peer could not check the login now (outcome sys)');
});

t('a SASL outcome sys-perm from a peer is AccessRefused at once: retrying cannot help', async (ctx) => {
  // A bare AMQP 1.0 peer: it offers PLAIN and answers every login with outcome 3 (sys-perm).
  const saslHeader = Buffer.from('AMQP\x03\x01\x00\x00', 'latin1');
  const logins: number[] = [];
  const server = net.createServer((s) => {
    s.on('error', () => {});
    let seen = 0;
    s.on('data', (d: Buffer) => {
      seen += d.length;
      // The header and then the sasl-init frame: answer the init.
      if (seen > 8 && logins.push(Date.now())) s.end(frames.write_frame(frames.sasl_frame(frames.sasl_outcome({ code: 3 }))));
    });
    s.write(
      Buffer.concat([saslHeader, frames.write_frame(frames.sasl_frame(frames.sasl_mechanisms({ sasl_server_mechanisms: ['PLAIN'] })))]),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  try {
    const port = (server.address() as net.AddressInfo).port;
    const tr = await getTransport(`amqp://alice:wonderland@127.0.0.1:${port}/`, { config: defaultConfig() });
    ctx.transports.push(tr);
    const t0 = Date.now();
    await rejects(tr.connect(20_000), 'HERMOD_ERR_ACCESS_REFUSED', /permanent system error \(outcome sys-perm\)/);
    assert.ok(Date.now() - t0 < 5000, `refused after ${Date.now() - t0} ms`);
    assert.is(logins.length, 1, 'one login, no retries');
  } finally {
    server.close();
  }
});

t('with a users file ANONYMOUS is not offered unless allowed', async (ctx) => {
  await startRouter(ctx);
  const anon = await attempt(ctx, { username: 'anonymous' });
  assert.is(anon.error?.condition, 'amqp:unauthorized-access');
  assert.match(String(anon.error?.message), /server supports PLAIN/);
  // A client that skips SASL altogether is cut off too.
  const none = await attempt(ctx, {});
  assert.ok(none.error);
  await ctx.router!.stop();
  await startRouter(ctx, { allowAnonymous: true });
  assert.ok((await attempt(ctx, {})).conn?.is_open());
  assert.ok((await attempt(ctx, { username: 'alice', password: 'wonderland' })).conn?.is_open());
});

t('without users the router is anonymous on loopback, and refuses to listen beyond it unless asked', async (ctx) => {
  ctx.router = new Router({ port: 0 });
  ctx.port = await ctx.router.start();
  assert.ok((await attempt(ctx, {})).conn?.is_open());
  assert.throws(() => new Router({ host: '0.0.0.0', port: 0 }), /without authentication must be asked for/);
  const log: string[] = [];
  const open = new Router({ host: '0.0.0.0', port: 0, allowAnonymous: true, log: (l) => log.push(l) });
  await open.start();
  await open.stop();
  assert.ok(log.some((l) => /WARNING: anonymous clients are accepted on 0\.0\.0\.0/.test(l)));
});

t('address rules: bob may attach and send only under work/, anonymous relay included; alice has no rules', async (ctx) => {
  await startRouter(ctx);
  const bob = (await attempt(ctx, { username: 'bob', password: 'builder' })).conn!;
  const errors: string[] = [];
  const onErr = (name: string) => (e: EventContext) =>
    errors.push(`${name}:${((e.sender ?? e.receiver)?.error as { condition?: string } | undefined)?.condition}`);
  bob.open_receiver('secret/inbox').on('receiver_error', onErr('recv secret'));
  bob.open_sender('secret/inbox').on('sender_error', onErr('send secret'));
  const okRecv = bob.open_receiver('work/a');
  const got: unknown[] = [];
  okRecv.on('message', (e: EventContext) => got.push(e.message?.body));
  await until(() => errors.length === 2, 'two refusals');
  assert.equal(errors.sort(), ['recv secret:amqp:unauthorized-access', 'send secret:amqp:unauthorized-access']);
  const relay = bob.open_sender({ target: {} } as never);
  await until(() => relay.sendable(), 'relay credit');
  const outcomes: string[] = [];
  relay.on('rejected', (e: EventContext) =>
    outcomes.push(`rejected:${(e.delivery?.remote_state as { error?: { condition?: string } })?.error?.condition}`),
  );
  relay.on('accepted', () => outcomes.push('accepted'));
  relay.send({ to: 'secret/inbox', body: 'no' } as never);
  relay.send({ to: 'work/a', body: 'yes' } as never);
  await until(() => outcomes.length === 2, 'two outcomes');
  assert.equal(outcomes.sort(), ['accepted', 'rejected:amqp:unauthorized-access']);
  assert.equal(got, ['yes']);
  const alice = (await attempt(ctx, { username: 'alice', password: 'wonderland' })).conn!;
  const r = alice.open_receiver('secret/inbox');
  await until(() => r.is_open(), 'alice attached anywhere');
});

t(
  'address rules: refused links are logged at most once per 10 s per connection, and a connection refused past maxLinks is closed',
  async (ctx) => {
    await startRouter(ctx, { maxLinks: 50 });
    const bob = (await attempt(ctx, { username: 'bob', password: 'builder' })).conn!;
    let closed: { condition?: string; description?: string } | undefined;
    bob.on('connection_error', (e: EventContext) => {
      closed = e.connection.error as typeof closed;
    });
    bob.on('receiver_error', () => {});
    // One at a time, each detached before the next: as refused links they never counted against
    // maxLinks, and each wrote a line. The first address is the peer's choice: long, with a forged
    // log line in it.
    // The refusal that closes the connection detaches nothing.
    const gone = new Promise<void>((resolve) => bob.once('connection_error', () => resolve()));
    const refusedOne = (address: string) =>
      Promise.race([gone, new Promise<void>((resolve) => bob.open_receiver(address).once('receiver_close', () => resolve()))]);
    await refusedOne(`evil\n2026-01-01T00:00:00.000Z INFO  hermod-router: forged ${'A'.repeat(50_000)}`);
    for (let i = 0; i < 100 && !closed; i++) await refusedOne(`forbidden.${i}`);
    await until(() => closed !== undefined, 'the connection closed');
    assert.is(closed!.condition, 'amqp:unauthorized-access');
    assert.match(String(closed!.description), /more than 50 links refused by its address rules/);
    const lines = ctx.log.filter((l) => l.includes('may not'));
    assert.is(lines.length, 1, lines.map((l) => l.slice(0, 300)).join('\n'));
    assert.match(lines[0]!, /^refused 127\.0\.0\.1:\d+ \(bob\): may not receive from "evil\\n2026.*AAA…" \(50\d\d\d characters\)$/);
    assert.ok(lines[0]!.length < 400);
    assert.ok(ctx.log.some((l) => /closing 127\.0\.0\.1:\d+ \(bob\): more than 50 links refused/.test(l)));
    // Another connection's first refusal is still logged.
    const again = (await attempt(ctx, { username: 'bob', password: 'builder' })).conn!;
    again.on('receiver_error', () => {});
    again.open_receiver('secret/inbox');
    await until(() => ctx.log.filter((l) => l.includes('may not')).length === 2, 'the second connection refusal logged');
  },
);

async function transport(ctx: Ctx, url: string): Promise<Transport> {
  const tr = await getTransport(url, { config: defaultConfig() });
  ctx.transports.push(tr);
  return tr;
}

t(
  'hermod driver: calls with credentials work; a wrong password or a mechanism not offered fails at once with TransportError',
  async (ctx) => {
    await startRouter(ctx);
    const server = new RPCServer(
      await transport(ctx, `amqp://alice:wonderland@127.0.0.1:${ctx.port}/`),
      new Target({ topic: 'auth', server: 's1' }),
      [{ echo: async (_c: unknown, a: { v: number }) => a.v }],
    );
    await server.start();
    ctx.servers.push(server);
    const okClient = new RPCClient(await transport(ctx, `amqp://alice:wonderland@127.0.0.1:${ctx.port}/`), new Target({ topic: 'auth' }), {
      timeout: 5000,
    });
    assert.is(await okClient.call({}, 'echo', { v: 7 }), 7);
    let t0 = Date.now();
    const wrong = new RPCClient(await transport(ctx, `amqp://alice:nope@127.0.0.1:${ctx.port}/`), new Target({ topic: 'auth' }), {
      timeout: 30000,
    });
    await rejects(() => wrong.call({}, 'echo', { v: 1 }), 'HERMOD_ERR_ACCESS_REFUSED', /wrong username or password/);
    assert.ok(Date.now() - t0 < 3000, `failed after ${Date.now() - t0} ms`);
    // Against an anonymous-only router, credentials cannot be used: said at once too.
    const anon = new Router({ port: 0 });
    const port = await anon.start();
    try {
      t0 = Date.now();
      const c = new RPCClient(await transport(ctx, `amqp://alice:wonderland@127.0.0.1:${port}/`), new Target({ topic: 'auth' }), {
        timeout: 30000,
      });
      await rejects(
        () => c.call({}, 'echo', { v: 1 }),
        'HERMOD_ERR_ACCESS_REFUSED',
        /offers ANONYMOUS, and this client logs in with PLAIN .*leave them out of the URL/,
      );
      assert.ok(Date.now() - t0 < 3000, `failed after ${Date.now() - t0} ms`);
    } finally {
      await anon.stop();
    }
  },
);

t('an RPC server whose links the router refuses fails to start with AccessRefused (it said serving and received nothing)', async (ctx) => {
  await startRouter(ctx);
  const server = new RPCServer(
    await transport(ctx, `amqp://bob:builder@127.0.0.1:${ctx.port}/`),
    new Target({ topic: 'auth', server: 's1' }),
    [{ echo: async (_c: unknown, a: { v: number }) => a.v }],
  );
  await rejects(
    server.start(),
    'HERMOD_ERR_ACCESS_REFUSED',
    /refused to let this listener receive from openstack\.org\/om\/rpc\/.*not allowed to receive/,
  );
  // Nothing of it stays attached at the router.
  await until(() => ctx.log.filter((l) => l.includes('may not receive')).length >= 1, 'the router to log the refusal');
});

t(
  'a server whose links a restarted router refuses after a reconnect reports it: a failed state naming the address (it went deaf silently)',
  async (ctx) => {
    await startRouter(ctx);
    const port = ctx.port;
    const config = defaultConfig();
    config.amqp1.retryInterval = 100;
    const tr = await getTransport(`amqp://alice:wonderland@127.0.0.1:${port}/`, { config });
    ctx.transports.push(tr);
    const states: Array<{ state: string; error?: Error }> = [];
    tr.on('state', (s: { state: string; error?: Error }) => states.push(s));
    const server = new RPCServer(tr, new Target({ topic: 'auth', server: 's1' }), [{ echo: async (_c: unknown, a: { v: number }) => a.v }]);
    ctx.servers.push(server);
    await server.start();
    // The same router comes back with a policy that no longer lets alice receive from RPC topics.
    const strict = path.join(ctx.dir, 'strict.json');
    const file = JSON.parse(readFileSync(ctx.users, 'utf8'));
    file.users.alice.receive = ['work/'];
    writeFileSync(strict, JSON.stringify(file));
    await ctx.router!.stop();
    await startRouter(ctx, { port, users: strict });
    await until(() => states.some((s) => s.state === 'failed'), 'the failed state', 15_000);
    const failed = states.find((s) => s.state === 'failed')!;
    assert.is((failed.error as { code?: string }).code, 'HERMOD_ERR_ACCESS_REFUSED');
    assert.match(
      failed.error!.message,
      /refused to let this listener receive from openstack\.org\/om\/rpc\/.*auth.*not allowed to receive/,
    );
    assert.ok(
      states.some((s) => s.state === 'connected'),
      'the connection itself came back',
    );
  },
);

t('TLS listener: PLAIN over TLS, and a client certificate logs in with SASL EXTERNAL as its CN', async (ctx) => {
  const p = makePki(ctx.dir);
  await startRouter(ctx, { tls: { cert: p.cert, key: p.key, ca: p.ca } });
  assert.match(ctx.router!.url, /^amqps:/);
  const tlsOpts = { transport: 'tls', ca: [readFileSync(p.ca)], servername: 'localhost' };
  const plain = await attempt(ctx, { ...tlsOpts, username: 'alice', password: 'wonderland' });
  assert.ok(plain.conn?.is_open());
  const ext = await attempt(ctx, {
    ...tlsOpts,
    cert: readFileSync(p.clientCert),
    key: readFileSync(p.clientKey),
    enable_sasl_external: true,
  });
  assert.ok(ext.conn?.is_open(), JSON.stringify(ext.error));
  await until(() => ctx.log.some((l) => /user=svc-1/.test(l)), 'the certificate CN as the user');
  // Without TLS the listener does not talk at all.
  const cleartext = await attempt(ctx, { username: 'alice', password: 'wonderland' });
  assert.ok(cleartext.error);
  // hermod's own driver logs in with its certificate too: amqps:// without a username, tls.cert/key.
  const certified = await getTransport(`amqps://localhost:${ctx.port}/`, {
    config: defaultConfig(),
    overrides: { 'tls.ca': p.ca, 'tls.cert': p.clientCert, 'tls.key': p.clientKey },
  });
  ctx.transports.push(certified);
  const server = new RPCServer(certified, new Target({ topic: 'ext', server: 's1' }), [
    { echo: async (_c: unknown, a: { v: number }) => a.v },
  ]);
  await server.start();
  ctx.servers.push(server);
  assert.is(await new RPCClient(certified, new Target({ topic: 'ext' }), { timeout: 5000 }).call({}, 'echo', { v: 3 }), 3);
  assert.ok(ctx.log.filter((l) => /user=svc-1/.test(l)).length >= 2, ctx.log.join('\n'));
  // A router that also offers ANONYMOUS (listed first): the certificate is still the login.
  const log: string[] = [];
  const open = new Router({
    port: 0,
    users: ctx.users,
    allowAnonymous: true,
    tls: { cert: p.cert, key: p.key, ca: p.ca },
    log: (l) => log.push(l),
  });
  const openPort = await open.start();
  try {
    const tr = await getTransport(`amqps://localhost:${openPort}/`, {
      config: defaultConfig(),
      overrides: { 'tls.ca': p.ca, 'tls.cert': p.clientCert, 'tls.key': p.clientKey },
    });
    ctx.transports.push(tr);
    await rejects(new RPCClient(tr, new Target({ topic: 'nobody' }), { timeout: 300 }).call({}, 'x'), 'HERMOD_ERR_TIMEOUT');
    assert.ok(
      log.some((l) => /user=svc-1/.test(l)),
      log.join('\n'),
    );
    assert.not.ok(
      log.some((l) => /user=anonymous/.test(l)),
      log.join('\n'),
    );
    await tr.close();
  } finally {
    await open.stop();
  }
});

t('amqp1.saslAnonymous=false: no SASL layer, for a peer that has SASL disabled (ANONYMOUS, the default, fails there)', async (ctx) => {
  const c = rhea.create_container();
  c.on('error', () => {});
  c.on('disconnected', () => {});
  // Headers it cannot take (hermod's SASL one, the driver's TLS probe): rhea prints each with its
  // bytes on stderr unless someone listens.
  c.on('protocol_error', () => {});
  const server = c.listen({ port: 0, host: '127.0.0.1', disable_sasl: true } as never) as unknown as import('node:net').Server;
  await new Promise((r) => server.once('listening', r));
  try {
    const url = `amqp://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}/`;
    const bare = await getTransport(url, { config: defaultConfig(), overrides: { 'amqp1.saslAnonymous': false, 'rpc.retry': 0 } });
    ctx.transports.push(bare);
    // Connected: the call waits for a reply nobody sends, instead of failing to connect.
    await rejects(new RPCClient(bare, new Target({ topic: 't' }), { timeout: 500 }).call({}, 'x'), 'HERMOD_ERR_TIMEOUT');
    assert.is(bare.state.state, 'connected');
    const anon = await getTransport(url, { config: defaultConfig(), overrides: { 'rpc.retry': 0 } });
    ctx.transports.push(anon);
    await rejects(new RPCClient(anon, new Target({ topic: 't' }), { timeout: 2000 }).call({}, 'x'), 'HERMOD_ERR_TRANSPORT');
  } finally {
    // The transports first: the listening socket's close waits for its connections.
    for (const tr of ctx.transports.splice(0)) await tr.close();
    await new Promise((r) => server.close(r));
  }
});

t('amqp1.saslAnonymous=false against a router that requires a login: the error says the router wants a SASL login', async (ctx) => {
  await startRouter(ctx);
  const tr = await getTransport(`amqp://127.0.0.1:${ctx.port}/`, {
    config: defaultConfig(),
    overrides: { 'amqp1.saslAnonymous': false, 'amqp1.retryInterval': 4000 },
  });
  ctx.transports.push(tr);
  // Not retried (rpc.retry 2 took three attempts, 3-5 s apart here): the same settings meet the same answer.
  const t0 = Date.now();
  await rejects(
    new RPCClient(tr, new Target({ topic: 't' }), { timeout: 20_000 }).call({}, 'x'),
    'HERMOD_ERR_ACCESS_REFUSED',
    /the peer requires a SASL login \(it answered with the SASL protocol header\) and amqp1\.saslAnonymous=false sends none.*\(not retrying for x\)/,
  );
  assert.ok(Date.now() - t0 < 3000, `refused after ${Date.now() - t0} ms`);
  await until(() => ctx.log.some((l) => /closing 127\.0\.0\.1:\d+: Expecting SASL layer/.test(l)), 'the router log');
  // Nor does the transport go on trying in the background, unseen: rhea reconnected 3-5 s later.
  await sleep(5500);
  assert.is(ctx.log.filter((l) => /Expecting SASL layer/.test(l)).length, 1, ctx.log.join('\n'));
});

t('no login in the URL against a router that requires one: AccessRefused at once, saying why (it retried with no reason)', async (ctx) => {
  await startRouter(ctx);
  const t0 = Date.now();
  const c = new RPCClient(await transport(ctx, `amqp://127.0.0.1:${ctx.port}/`), new Target({ topic: 'auth' }), { timeout: 30000 });
  await rejects(
    () => c.call({}, 'echo', { v: 1 }),
    'HERMOD_ERR_ACCESS_REFUSED',
    /offers PLAIN, none of which this client can use without a login \(PLAIN needs a username and password in the URL\)/,
  );
  assert.ok(Date.now() - t0 < 3000, `failed after ${Date.now() - t0} ms`);
});

t.run();
