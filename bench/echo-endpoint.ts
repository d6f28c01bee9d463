// An `rpc-server --endpoints` module with the built-in `echo` alone and no contracts: bench/split.ts's
// `lane:plain` measures what the built-in endpoints' argument checks cost a call.
import type { Context } from '../src/core/serializer.js';

/** `echo` as the built-in endpoints answer it, without a contract. */
export default class Echo {
  async echo(_ctx: Context, args: Record<string, unknown>) {
    return 'value' in args ? args.value : args;
  }
}
