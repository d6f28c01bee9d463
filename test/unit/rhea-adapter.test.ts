import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Connection, Delivery, Sender } from 'rhea';
import rhea from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  clearRheaTimers,
  connectionError,
  deliveryCount,
  linkCredit,
  remoteOutcome,
  remoteSettled,
  sessionRoom,
  setSaslCredentials,
  settleLocally,
  socketOf,
  stopReconnect,
} from '../../src/rhea/index.js';

const t = suite('rhea adapter');

const delivery = (fields: Record<string, unknown>) => fields as unknown as Delivery;
const outcomes = (rhea as unknown as { message: Record<string, (fields?: object) => object> }).message;
const unconnected = (): Connection => rhea.create_container().create_connection({ reconnect: true } as never);

t('remoteOutcome reads the outcome rhea recorded, with a rejection error and modified flags', () => {
  assert.is(remoteOutcome(delivery({})), undefined, 'no disposition yet');
  assert.equal(remoteOutcome(delivery({ remote_state: outcomes.accepted!() })), { kind: 'accepted' });
  assert.equal(remoteOutcome(delivery({ remote_state: outcomes.released!() })), { kind: 'released' });
  const rejected = remoteOutcome(delivery({ remote_state: outcomes.rejected!({ error: { condition: 'amqp:x', description: 'why' } }) }))!;
  assert.is(rejected.kind, 'rejected');
  assert.equal([rejected.error?.condition, rejected.error?.description], ['amqp:x', 'why']);
  assert.equal(remoteOutcome(delivery({ remote_state: outcomes.modified!({ delivery_failed: true }) })), {
    kind: 'modified',
    deliveryFailed: true,
  });
});

t('remoteSettled and settleLocally', () => {
  const calls: unknown[] = [];
  const d = delivery({ remote_settled: true, update: (settled: boolean) => calls.push(settled) });
  assert.ok(remoteSettled(d));
  assert.not.ok(remoteSettled(delivery({ remote_settled: false })));
  settleLocally(d);
  assert.equal(calls, [true]);
});

t('link flow state: session room, credit, delivery count', () => {
  assert.is(sessionRoom(undefined), 0);
  const link = { credit: 7, delivery_count: 3, session: { outgoing: { deliveries: { available: () => 42 } } } } as unknown as Sender;
  assert.is(sessionRoom(link), 42);
  assert.is(linkCredit(link), 7);
  assert.is(deliveryCount(link), 3);
});

t('connection: SASL credentials per attempt, no socket before connect, no error before a close', () => {
  const conn = unconnected();
  const options = conn.options as unknown as Record<string, unknown>;
  setSaslCredentials(conn, 'u', undefined);
  assert.equal([options.username, options.password], ['u', '']);
  setSaslCredentials(conn, undefined, undefined);
  assert.ok(!('username' in options) && !('password' in options));
  assert.is(socketOf(conn), undefined);
  assert.is(connectionError(conn), undefined);
});

t('stopReconnect cancels a scheduled reconnect; clearRheaTimers clears the rest', async () => {
  const conn = unconnected();
  const fields = conn as unknown as Record<string, unknown>;
  let fired = 0;
  fields.scheduled_reconnect = setTimeout(() => fired++, 10);
  stopReconnect(conn);
  assert.is(fields.options && (fields.options as { reconnect: unknown }).reconnect, false);
  fields.heartbeat_in = setTimeout(() => fired++, 10);
  clearRheaTimers(conn);
  assert.is(fields.heartbeat_in, undefined);
  await new Promise((r) => setTimeout(r, 30));
  assert.is(fired, 0);
});

t('importing the router does not patch rhea; a Router installs the raw-bytes decode once', async () => {
  const router = fileURLToPath(new URL('../../src/router/router.js', import.meta.url));
  const adapter = fileURLToPath(new URL('../../src/rhea/index.js', import.meta.url));
  const script = `const rhea = (await import('rhea')).default;
    const before = rhea.message.decode;
    const { Router } = await import(${JSON.stringify(router)});
    const { installRawDecode, rawBytes } = await import(${JSON.stringify(adapter)});
    const out = [rhea.message.decode === before];
    new Router({ port: 0 });
    const patched = rhea.message.decode;
    installRawDecode();
    new Router({ port: 0 });
    out.push(patched !== before, rhea.message.decode === patched);
    const bytes = rhea.message.encode({ body: 'x', application_properties: { n: 1 } });
    const m = rhea.message.decode(bytes);
    out.push(m.body === 'x', rawBytes(m) === bytes, Object.getOwnPropertySymbols(m).length === 1 && !m.propertyIsEnumerable(Object.getOwnPropertySymbols(m)[0]));
    process.stdout.write(JSON.stringify(out));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  const code = await new Promise((r) => child.once('exit', r));
  assert.is(code, 0);
  assert.equal(JSON.parse(out), [true, true, true, true, true, true]);
});

t("rhea's disabled debug loggers become no-ops; one enabled by DEBUG at start stays", async () => {
  const adapter = fileURLToPath(new URL('../../src/rhea/index.js', import.meta.url));
  const script = `const { createRequire } = await import('node:module');
    const { installRheaFixes } = await import(${JSON.stringify(adapter)});
    installRheaFixes();
    const log = createRequire(${JSON.stringify(adapter)})('rhea/lib/log.js');
    process.stdout.write(JSON.stringify(Object.fromEntries(Object.entries(log).map(([k, f]) => [k, f.name]))));`;
  const run = async (env: NodeJS.ProcessEnv) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'], env });
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
    });
    assert.is(await new Promise((r) => child.once('exit', r)), 0);
    return JSON.parse(out) as Record<string, string>;
  };
  const { DEBUG: _, ...env } = process.env;
  const quiet = await run(env);
  assert.ok(Object.keys(quiet).length >= 8, JSON.stringify(quiet));
  assert.ok(
    Object.values(quiet).every((n) => n === 'noop'),
    JSON.stringify(quiet),
  );
  const frames = await run({ ...env, DEBUG: 'rhea:frames' });
  assert.is(frames.frames, 'debug');
  assert.is(frames.events, 'noop');
});

t.run();
