import { execFile } from 'node:child_process';
import path from 'node:path';
import type { Connection, EventContext } from 'rhea';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Router } from '../../src/router/router.js';
import { rheaClose, rheaConnect } from '../support/rhea-peer.js';

// hermod's router with python3-qpid-proton as the client: a peer we did not write, whose
// BlockingConnection checks what rhea-based clients take on trust (the attach reply's source and
// target, one link name used for both directions).

const script = path.resolve('test/support/proton_peer.py');

function proton(port: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    execFile('/usr/bin/python3', [script, String(port)], { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`proton peer failed: ${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout) as Record<string, unknown>);
    });
  });
}

const t = suite('router with a python3-qpid-proton client');

t(
  'anycast with properties, no credit without a receiver, outcomes back to the sender, presettled multicast, dynamic reply addresses',
  async () => {
    const log: string[] = [];
    const router = new Router({ port: 0, log: (l) => log.push(l) });
    const port = await router.start();
    let rc: Connection | undefined;
    try {
      rc = await rheaConnect(port);
      for (const name of ['accepting', 'rejecting']) {
        const r = rc.open_receiver({ source: { address: `openstack.org/om/rpc/anycast/openstack/${name}` }, autoaccept: false } as never);
        r.on('message', (e: EventContext) =>
          name === 'accepting' ? e.delivery!.accept() : e.delivery!.reject({ condition: 'amqp:not-allowed' } as never),
        );
      }
      const out = await proton(port);
      assert.equal(
        out.anycast,
        [0, 1, 2, 3, 4].map((i) => ({ body: { seq: i }, subject: 's', cid: `c${i}`, props: { n: i, f: 1.5, b: true } })),
      );
      assert.is(out.no_receiver, 'no credit');
      assert.equal(out.outcomes, { accepting: 'ACCEPTED', rejecting: 'REJECTED' });
      assert.equal(out.multicast, [
        { body: 'fan', presettled: true },
        { body: 'fan', presettled: true },
      ]);
      const dyn = out.dynamic as { address: string; body: string };
      assert.match(dyn.address, /^_dynamic\//);
      assert.is(dyn.body, 'reply');
      assert.not.ok(
        log.some((l) => /closing/.test(l)),
        log.join('\n'),
      );
    } finally {
      if (rc) await rheaClose(rc);
      await router.stop();
    }
  },
);

t.run();
