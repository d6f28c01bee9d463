import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { getTransport, RPCClient, RPCServer, Target } from '../../src/index.js';
import { JobStore } from '../../src/jobs/store.js';
import { rejects } from '../support/assert.js';

// Finished results are held for pollers within a byte budget as well as a count: any caller may
// start any method as a job, and uncollected results of a few MiB each took a server out of memory.

const t = suite('job store: the result byte budget');

t('past maxResultBytes the oldest finished jobs are dropped; the newest is kept whatever its size', () => {
  const store = new JobStore(100, 60_000, 1000);
  try {
    const ended = [0, 1, 2].map((i) => {
      const r = store.create('m');
      store.start(r);
      store.end(r, { state: 'succeeded', result: 'x'.repeat(398 + i) });
      return r;
    });
    // 400 + 401 bytes fit; the third (402) puts 1203 over 1000: the first goes.
    assert.is(store.get(ended[0]!.id), undefined);
    assert.ok(store.get(ended[1]!.id) && store.get(ended[2]!.id));
    assert.is(store.heldResultBytes, 401 + 402);
    const big = store.create('m');
    store.start(big);
    store.end(big, { state: 'succeeded', result: 'y'.repeat(5000) });
    assert.ok(store.get(big.id), 'kept: it is what its caller is about to collect');
    assert.is(store.get(ended[1]!.id), undefined);
    assert.is(store.get(ended[2]!.id), undefined);
    assert.is(store.heldResultBytes, 5002);
    store.remove(big);
    assert.is(store.heldResultBytes, 0);
    // Running jobs are never dropped for the budget.
    const running = store.create('m');
    store.start(running);
    const done = store.create('m');
    store.start(done);
    store.end(done, { state: 'succeeded', result: 'z'.repeat(3000) });
    assert.ok(store.get(running.id));
  } finally {
    store.clear();
  }
});

t('jobs.maxResultBytes reaches the server: uncollected results past it are dropped, their pollers get JobNotFound', async () => {
  const transport = await getTransport('memory://job-budget', { overrides: { 'jobs.maxResultBytes': 250_000 } });
  const server = new RPCServer(transport, new Target({ topic: 'budget', server: 's' }), [
    {
      async echo(_ctx: unknown, args: { value: string }) {
        return args.value;
      },
    },
  ]);
  await server.start();
  const client = new RPCClient(transport, new Target({ topic: 'budget' }), { timeout: 5000 });
  try {
    const jobs = [];
    for (let i = 0; i < 4; i++) {
      const job = await client.start({}, 'echo', { value: String(i).repeat(100_000) });
      await job.status();
      jobs.push(job);
    }
    // Every result in (the status of the last one says so), the oldest two no longer held.
    await jobs[3]!.result({ timeout: 5000 });
    await rejects(jobs[0]!.result({ timeout: 5000 }), 'HERMOD_ERR_JOB_NOT_FOUND');
    assert.is(((await jobs[2]!.result({ timeout: 5000 })) as string).length, 100_000);
  } finally {
    await server.stop();
    await server.wait(1000);
    await transport.close();
  }
});

t.run();
