// Which methods are long: a class's `static long`, an object endpoint's own `long` list, the
// server's `long` option. A name that is no method is refused when the server is built, as a
// contract naming no method is: a typo used to leave the method a plain call, its callers timing
// out; an object endpoint's list was not read at all.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Context, defaultConfig, getTransport, RPCClient, RPCServer, Target, type Transport } from '../../src/index.js';
import { rejects, sleep } from '../support/assert.js';

const transports: Transport[] = [];
async function transport(): Promise<Transport> {
  const t = await getTransport('memory://jobs-long-marks', { config: defaultConfig(), overrides: { 'jobs.deferAfter': 50 } });
  transports.push(t);
  return t;
}

class Typo {
  static long = ['slowRepot'];
  async slowReport() {
    return 1;
  }
}

test('a long list naming no method is refused when the server is built: static, own, option, not a list', async () => {
  const t = await transport();
  const target = new Target({ topic: 'marks', server: 's' });
  await rejects(
    () => new RPCServer(t, target, [new Typo()]),
    'HERMOD_ERR_INVALID_ARGUMENT',
    /lists slowRepot as long but has no callable method/,
  );
  await rejects(
    () => new RPCServer(t, target, [{ long: ['_hidden'], _hidden: async () => 1 }]),
    'HERMOD_ERR_INVALID_ARGUMENT',
    /lists _hidden as long/,
  );
  await rejects(
    () => new RPCServer(t, target, [{ long: 'work', work: async () => 1 }]),
    'HERMOD_ERR_INVALID_ARGUMENT',
    /long must be a list/,
  );
  await rejects(
    () => new RPCServer(t, target, [{ work: async () => 1 }], { long: ['wrok'] }),
    'HERMOD_ERR_INVALID_ARGUMENT',
    /option long names wrok, which no endpoint serves/,
  );
  // A class instance's own `long` is its data (a longitude), not a list, and hides nothing.
  class Place {
    static long = ['where'];
    lat = 59.9;
    long = 10.7;
    async where() {
      return [this.lat, this.long];
    }
  }
  new RPCServer(t, target, [new Place()]);
  // A getter called `long` on an object endpoint is not run to look for a list.
  let ran = 0;
  new RPCServer(t, target, [
    {
      get long() {
        ran++;
        return ['work'];
      },
      work: async () => 1,
    },
  ]);
  assert.is(ran, 0, 'the getter did not run');
  // A method that is called `long` is a method, not a list.
  const s = new RPCServer(t, target, [{ long: async () => 'a method' }]);
  await s.start();
  try {
    assert.is(await new RPCClient(t, new Target({ topic: 'marks' }), { timeout: 3000 }).call({}, 'long'), 'a method');
  } finally {
    await s.stop();
    await s.wait(1000);
  }
});

test("an object endpoint's own long list makes its methods jobs, as a class's static long does", async () => {
  const t = await transport();
  const ran: string[] = [];
  const endpoint = {
    long: ['work'],
    async work(_ctx: Context, args: { ms: number }) {
      await sleep(args.ms);
      ran.push('work');
      return 'done';
    },
  };
  const s = new RPCServer(t, new Target({ topic: 'own-long', server: 's' }), [endpoint]);
  await s.start();
  try {
    const c = new RPCClient(t, new Target({ topic: 'own-long' }), { timeout: 3000 });
    // Past deferAfter (50 ms): answered with a token, followed by call() to the result.
    assert.is(await c.call({}, 'work', { ms: 400 }), 'done');
    assert.is(s.stats().jobs.held, 1, 'it ran as a job');
    const job = await c.start<string>({}, 'work', { ms: 10 });
    assert.is(await job.result(), 'done');
    assert.equal(ran, ['work', 'work']);
  } finally {
    await s.stop();
    await s.wait(1000);
  }
});

test.after(async () => {
  for (const t of transports) await t.close();
});

test.run();
