// Compile-time checks of RPCClient.proxy<T>(): `npm test` builds this file with tsc, and every
// expect-error directive below fails the build if the type system stops rejecting that misuse.
import type { Context, RPCClient } from '../../src/index.js';

class Compute {
  async resize(_ctx: Context, args: { instance: string; flavor: string }): Promise<{ ok: boolean }> {
    return { ok: args.instance.length > 0 };
  }
  async status(_ctx: Context): Promise<string> {
    return 'up';
  }
  async maybe(_ctx: Context, args?: { verbose: boolean }): Promise<number> {
    return args?.verbose ? 1 : 0;
  }
  count = 3;
  async _internal(_ctx: Context): Promise<void> {}
}

export async function typeChecks(client: RPCClient): Promise<void> {
  const compute = client.proxy<Compute>();
  const r: { ok: boolean } = await compute.resize({ instance: 'i-1', flavor: 'm1' });
  const s: string = await compute.status();
  const m1: number = await compute.maybe();
  const m2: number = await compute.maybe({ verbose: true });
  void r;
  void s;
  void m1;
  void m2;
  // @ts-expect-error missing required argument field
  await compute.resize({ instance: 'i-1' });
  // @ts-expect-error wrong argument type
  await compute.resize({ instance: 1, flavor: 'm1' });
  // @ts-expect-error no such method
  await compute.reboot({});
  // @ts-expect-error non-method members are not callable remotely
  await compute.count();
  // @ts-expect-error private names are not exposed
  await compute._internal();
  // @ts-expect-error result type is checked
  const wrong: number = await compute.status();
  void wrong;
}
