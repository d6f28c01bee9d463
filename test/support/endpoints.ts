import { type Context, Target } from '../../src/index.js';

/** A test endpoint that records what it ran. */
export class Recorder {
  calls: Array<{ method: string; ctx: Context; args: Record<string, unknown> }> = [];
  active = 0;
  maxActive = 0;
  constructor(readonly name: string) {}

  async whoami(ctx: Context) {
    this.calls.push({ method: 'whoami', ctx, args: {} });
    return this.name;
  }
  async echo(ctx: Context, args: { value: unknown }) {
    this.calls.push({ method: 'echo', ctx, args });
    return args.value;
  }
  async add(_ctx: Context, args: { a: number; b: number }) {
    return args.a + args.b;
  }
  async ctx(ctx: Context) {
    return ctx;
  }
  async bump(ctx: Context, args: { seq: number }) {
    this.calls.push({ method: 'bump', ctx, args });
  }
  async sleep(_ctx: Context, args: { ms: number }) {
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      // Unref'd: a call a test leaves sleeping on purpose (its server stopped under it) must not
      // hold the test process open for the rest of the sleep after its last test.
      await new Promise((r) => setTimeout(r, args.ms).unref());
      return args.ms;
    } finally {
      this.active--;
    }
  }
  async fail(_ctx: Context, args: { message: string }) {
    throw new TypeError(args.message);
  }
  async throwString() {
    throw 'just a string';
  }
  async bigint() {
    return { n: 10n };
  }
  async cycle() {
    const o: Record<string, unknown> = {};
    o.self = o;
    return o;
  }
  async huge(_ctx: Context, args: { bytes: number }) {
    return 'x'.repeat(args.bytes);
  }
  /** A result nested `levels` arrays deep. */
  async deep(_ctx: Context, args: { levels: number }) {
    let v: unknown = 1;
    for (let i = 0; i < args.levels; i++) v = [v];
    return v;
  }
  /** Fails with kwargs nested `levels` arrays deep: the failure's own JSON (a string inside the reply on the wire) nests that deep. */
  async deepFailure(_ctx: Context, args: { levels: number }) {
    let v: unknown = 1;
    for (let i = 0; i < args.levels; i++) v = [v];
    throw Object.assign(new Error('deep'), { kwargs: { v } });
  }
}

/** Versioned endpoint in a namespace. */
export class Versioned {
  target = new Target({ namespace: 'math', version: '1.3' });
  async mul(_ctx: Context, args: { a: number; b: number }) {
    return args.a * args.b;
  }
}
