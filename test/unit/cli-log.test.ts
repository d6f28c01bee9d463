import diagnostics_channel from 'node:diagnostics_channel';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { EXIT, printFailure } from '../../src/cli/exit-codes.js';
import { captureConsole, type Logger, lineBudget, logConnectionState, nextTryText } from '../../src/cli/log.js';

// The reconnect line's delay: a 30 ms delay printed "next try in 0.0 s" (one decimal of a second).

const t = suite('cli log: when the next connection attempt comes');

t('lineBudget: lines up to the budget, the rest counted and said once when the window ends', async () => {
  const said: number[] = [];
  const allow = lineBudget(3, 150, (n) => said.push(n));
  const first = Array.from({ length: 10 }, () => allow());
  assert.equal(first, [true, true, true, false, false, false, false, false, false, false]);
  assert.equal(said, [], 'nothing said before the window ends');
  await new Promise((r) => setTimeout(r, 250));
  assert.equal(said, [7], 'one summary for the seven skipped, with no further event needed');
  assert.ok(allow(), 'a new window, a new budget');
});

t(
  'captureConsole: console.error and console.warn become warn lines of the log, 20 a second, then one line saying how many were not',
  async () => {
    const lines: string[] = [];
    const log = { warn: (m: string) => lines.push(m) } as unknown as Logger;
    const restore = captureConsole(log);
    try {
      for (let i = 0; i < 100; i++) console.error('Received transfer when credit was %d', i);
      console.warn('one more');
      assert.is(lines.length, 20);
      assert.is(lines[0], 'console: Received transfer when credit was 0');
      await new Promise((r) => setTimeout(r, 1100));
      assert.is(lines[20], '81 more console lines not logged in the last second');
    } finally {
      restore();
    }
    assert.is(lines.length, 21);
  },
);

t('0 is at once, under 100 ms in ms, from 100 ms on in seconds, no delay says trying again', () => {
  const cases: Array<[number | undefined, string]> = [
    [0, 'next try at once'],
    [0.4, 'next try in 1 ms'],
    [1, 'next try in 1 ms'],
    [30, 'next try in 30 ms'],
    [49.6, 'next try in 50 ms'],
    [99, 'next try in 99 ms'],
    [100, 'next try in 0.1 s'],
    [250, 'next try in 0.3 s'],
    [4000, 'next try in 4.0 s'],
    [61_234, 'next try in 61.2 s'],
    [undefined, 'trying again'],
    [-5, 'trying again'],
    [Number.NaN, 'trying again'],
  ];
  assert.equal(
    cases.map(([ms]) => [ms, nextTryText(ms)]),
    cases,
  );
});

t('the reconnect line of a driver event with a 30 ms delay says "next try in 30 ms"', () => {
  const lines: string[] = [];
  let listening = true;
  // The subscription cannot be undone; the recorder goes quiet after this test.
  const record = (m: string) => {
    if (listening) lines.push(m);
  };
  const log: Logger = { debug: record, info: record, warn: record, error: record, announce: record, fatal: record };
  logConnectionState(log);
  const channel = diagnostics_channel.channel('hermod:connection:state');
  channel.publish({ state: 'disconnected', host: 'h:1', reason: 'the peer closed the connection' });
  channel.publish({ state: 'reconnecting', host: 'h:1', attempt: 1, delayMs: 0 });
  channel.publish({ state: 'reconnecting', host: 'h:1', attempt: 2, delayMs: 30, reason: 'connect ECONNREFUSED h:1' });
  channel.publish({ state: 'reconnecting', host: 'h:1', attempt: 3, delayMs: 1200 });
  // RabbitMQ: a connection per role, each with its own reason and backoff.
  channel.publish({ state: 'disconnected', host: 'h:1', role: 'publisher', reason: 'CONNECTION_FORCED' });
  channel.publish({ state: 'reconnecting', host: 'h:1', role: 'server t.s1', attempt: 1, delayMs: 300 });
  channel.publish({ state: 'reconnecting', host: 'h:1', role: 'publisher', attempt: 1, delayMs: 0 });
  channel.publish({ state: 'connected', host: 'h:1', role: 'publisher' });
  // A wrong protocol or a refused login is not retried: no "next try" (it said "next try in 30.0 s").
  channel.publish({
    state: 'reconnecting',
    host: 'h:2',
    attempt: 1,
    delayMs: 30_000,
    reason: 'h:2 speaks AMQP 1.0 (connecting not retried)',
    refused: true,
  });
  channel.publish({
    state: 'reconnecting',
    host: 'h:3',
    role: 'publisher',
    attempt: 1,
    delayMs: 30_000,
    reason: 'Handshake terminated by server: 403 (ACCESS-REFUSED)',
    refused: true,
  });
  listening = false;
  assert.equal(lines, [
    'disconnected from h:1: the peer closed the connection',
    'reconnecting to h:1 (the peer closed the connection): attempt 1 failed, next try at once',
    'reconnecting to h:1 (connect ECONNREFUSED h:1): attempt 2 failed, next try in 30 ms',
    'reconnecting to h:1 (the peer closed the connection): attempt 3 failed, next try in 1.2 s',
    'disconnected from h:1 [publisher]: CONNECTION_FORCED',
    'reconnecting to h:1 [server t.s1]: attempt 1 failed, next try in 0.3 s',
    'reconnecting to h:1 [publisher] (CONNECTION_FORCED): attempt 1 failed, next try at once',
    'connected to h:1 [publisher]',
    'connecting to h:2 (h:2 speaks AMQP 1.0 (connecting not retried)): attempt 1 failed, not retrying',
    // Without a one-shot budget (a server): its connection does try again.
    'reconnecting to h:3 [publisher] (Handshake terminated by server: 403 (ACCESS-REFUSED)): attempt 1 failed, what waits for it fails at once, next try in 30.0 s',
  ]);
});

t.run();

const p = suite('cli errors: what a peer or the command line sent reaches the terminal escaped and bounded');
p('printFailure escapes newlines and terminal escapes and cuts a long text; JSON too', () => {
  const lines: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string) => {
    lines.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    const evil = `no such method: evil\nFAKE\u001b[31m${'x'.repeat(5000)}`;
    printFailure({ status: EXIT.noSuchMethod, text: evil }, new Error('x'), false);
    printFailure({ status: EXIT.noSuchMethod, text: evil }, new Error('x'), true);
  } finally {
    process.stderr.write = write;
  }
  const [plain, json] = lines;
  assert.is(plain!.split('\n').length, 2, 'one line');
  assert.not.ok(plain!.includes('\u001b'), 'no ESC');
  assert.match(plain!, /evil\\nFAKE\\u001b\[31m/);
  assert.ok(plain!.length < 2200, `${plain!.length} characters`);
  assert.match(JSON.parse(json!).error.message, /evil\\nFAKE/);
});
p.run();
