import type { Contracts } from '../contracts/contract.js';
import type { Context } from '../core/serializer.js';
import { Target } from '../core/target.js';
import type { JobContext } from '../jobs/context.js';

/** The error the demo `fail` method raises: a typed error that crosses the wire with its class. */
export class DemoError extends Error {
  static remoteModule = 'hermod.demo';
  override name = 'DemoError';
}

/** Built-in endpoints of `rpc-server` when no `--endpoints` module is given. */
export class DemoEndpoints {
  /** `resize` is a long operation: past `jobs.deferAfter` its caller gets a job token (README "Long operations"). */
  static readonly long = ['resize'];
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
    resize: {
      args: {
        type: 'object',
        properties: {
          image: { type: 'string', maxLength: 1000, description: "default 'cat.png'" },
          seconds: { type: 'number', minimum: 0, maximum: 3600, description: 'default 2' },
        },
      },
      description: 'A long operation (a job): reports progress in 4 steps over `seconds`, stops when cancelled.',
    },
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

  async resize(ctx: JobContext, args: { image?: string; seconds?: number }) {
    this.calls++;
    const image = args.image ?? 'cat.png';
    const s = Number(args.seconds ?? 2);
    if (!Number.isFinite(s) || s < 0 || s > 3600) throw new RangeError('seconds must be between 0 and 3600');
    // A cast has no job hooks: it runs to its end unreported.
    const signal: AbortSignal | undefined = ctx.signal;
    const steps = 4;
    for (let i = 1; i <= steps; i++) {
      await new Promise<void>((resolve, reject) => {
        if (signal?.aborted) return reject(signal.reason);
        const stop = () => {
          clearTimeout(timer);
          reject(signal!.reason);
        };
        const timer = setTimeout(
          () => {
            signal?.removeEventListener('abort', stop);
            resolve();
          },
          (s * 1000) / steps,
        );
        signal?.addEventListener('abort', stop, { once: true });
      });
      ctx.progress?.(i / steps, `step ${i} of ${steps}`);
    }
    return { image, size: '1024x768', server: this.server };
  }
}
