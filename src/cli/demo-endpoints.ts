import type { Contracts } from '../contracts/contract.js';
import type { Context } from '../core/serializer.js';
import { Target } from '../core/target.js';

/** The error the demo `fail` method raises: a typed error that crosses the wire with its class. */
export class DemoError extends Error {
  static remoteModule = 'hermod.demo';
  override name = 'DemoError';
}

/** Built-in endpoints of `rpc-server` when no `--endpoints` module is given. */
export class DemoEndpoints {
  /** What `rpc-client demo add --describe` prints and what the server checks before a method runs. */
  static readonly contracts: Contracts = {
    echo: {
      args: { type: 'object', additionalProperties: true },
      description: 'Returns `value`, or all its arguments when there is no `value`.',
    },
    add: {
      args: { type: 'object', required: ['a', 'b'], properties: { a: { type: 'number' }, b: { type: 'number' } } },
      result: { type: 'number' },
      description: 'Adds two numbers.',
    },
    sleep: {
      args: { type: 'object', properties: { seconds: { type: 'number', minimum: 0, maximum: 3600, description: 'default 1' } } },
      description: 'Sleeps, then answers which server slept.',
    },
    fail: {
      args: { type: 'object', properties: { message: { type: 'string', maxLength: 1000 } } },
      description: 'Raises DemoError (module hermod.demo).',
    },
    info: { args: { type: 'object', properties: {} }, description: 'The server, its pid, uptime, calls and the context it got.' },
  };
  readonly target: Target;
  private readonly started = Date.now();
  calls = 0;

  constructor(
    private readonly server: string,
    namespace?: string,
    version?: string,
  ) {
    this.target = new Target({ ...(namespace ? { namespace } : {}), version: version ?? '1.0' });
  }

  async echo(_ctx: Context, args: Record<string, unknown>) {
    this.calls++;
    return 'value' in args ? args.value : args;
  }

  async add(_ctx: Context, args: { a: number; b: number }) {
    this.calls++;
    if (typeof args.a !== 'number' || typeof args.b !== 'number') throw new TypeError('add needs numbers a and b');
    return args.a + args.b;
  }

  async sleep(_ctx: Context, args: { seconds: number }) {
    this.calls++;
    const s = Number(args.seconds ?? 1);
    if (!Number.isFinite(s) || s < 0 || s > 3600) throw new RangeError('seconds must be between 0 and 3600');
    await new Promise((r) => setTimeout(r, s * 1000));
    return { slept: s, server: this.server };
  }

  async fail(_ctx: Context, args: { message?: string }) {
    this.calls++;
    throw new DemoError(args.message ?? 'failed on purpose');
  }

  async info(ctx: Context) {
    this.calls++;
    return { server: this.server, pid: process.pid, uptime: (Date.now() - this.started) / 1000, calls: this.calls, context: ctx };
  }
}
