// Compile-time checks of RPCClient.multicall<T>(): `npm test` builds this file with tsc, and every
// expect-error directive below fails the build if the type system stops rejecting that misuse.
// The runtime behaviour is tested on every driver in test/support/rpc-cases.ts.
import type { Context, MultiCall, MultiCallResults, RPCClient } from '../../src/index.js';

class Calc {
  async add(_ctx: Context, args: { a: number; b: number }): Promise<number> {
    return args.a + args.b;
  }
  async whoami(_ctx: Context): Promise<{ user: string }> {
    return { user: 'u' };
  }
  async maybe(_ctx: Context, args?: { verbose: boolean }): Promise<string> {
    return args?.verbose ? 'long' : 'short';
  }
  limit = 3;
  async _hidden(_ctx: Context): Promise<void> {}
}

export async function typeChecks(client: RPCClient): Promise<void> {
  const results = await client
    .multicall<Calc>({ request_id: 'r' })
    .call('add', { a: 1, b: 2 })
    .call('whoami')
    .call('maybe')
    .call('maybe', { verbose: true }, { timeout: 1000 })
    .run();
  const sum: number = results.get(0);
  const who: { user: string } = results.get(1);
  const [s, w, m1, m2] = results.all();
  const n: number = s;
  const u: string = w.user;
  const t1: string = m1;
  const t2: string = m2;
  const settled = results.settled();
  if (settled[0].ok) {
    const v: number = settled[0].value;
    void v;
  }
  for (const r of results) {
    // Iteration gives the union of the results' types.
    const any: number | { user: string } | string = r;
    void any;
  }
  void [sum, who, n, u, t1, t2];

  // @ts-expect-error no such method on Calc
  client.multicall<Calc>().call('mul', { a: 1, b: 2 });
  // @ts-expect-error missing required argument field
  client.multicall<Calc>().call('add', { a: 1 });
  // @ts-expect-error arguments are required where the method requires them
  client.multicall<Calc>().call('add');
  // @ts-expect-error a method that takes no arguments takes none here either
  client.multicall<Calc>().call('whoami', { user: 'x' });
  // @ts-expect-error non-method members are not callable remotely
  client.multicall<Calc>().call('limit');
  // @ts-expect-error private names are not exposed
  client.multicall<Calc>().call('_hidden');
  // @ts-expect-error unknown entry option
  client.multicall<Calc>().call('whoami', undefined, { retries: 2 });
  // @ts-expect-error a result's type is checked
  const wrong: string = results.get(0);
  void wrong;

  // Untyped: any method, named arguments, results unknown unless stated.
  const loose = await client.multicall().call('anything', { x: 1 }).call('other').run();
  const first: unknown = loose.get(0);
  const stated: number = loose.get<number>(1);
  // @ts-expect-error an untyped result is unknown, not any
  const notNumber: number = loose.get(0);
  void [first, stated, notNumber];
  // @ts-expect-error arguments are named arguments: an object
  client.multicall().call('anything', 42);
  // Untyped, a chained MultiCall is still a MultiCall: reassigned in a loop as before.
  let batch: MultiCall = client.multicall();
  for (let i = 0; i < 3; i++) batch = batch.call('add', { a: i, b: i });
  const plain: MultiCallResults = await batch.run();
  void plain;

  // Queued in a loop, the tuple is not kept: results read as unknown (not never).
  const mc = client.multicall<Calc>();
  for (let i = 0; i < 3; i++) mc.call('add', { a: i, b: i });
  const looped = await mc.run();
  const l: unknown = looped.get(2);
  const all: unknown[] = looped.all();
  // @ts-expect-error unknown without the tuple
  const notTyped: number = looped.get(2);
  void [l, all, notTyped];
}
