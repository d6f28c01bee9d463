// Which export of an endpoints module is served, and which endpoint serves nothing: the rules
// rpc-server --endpoints, hermod run and hot reload share (src/rpc/endpoint-module.ts).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadEndpoints } from '../../src/cli/endpoints.js';
import { UsageError } from '../../src/cli/exit-codes.js';
import { commonJsSyntaxHint, sourceFile, transformErrorWhere } from '../../src/core/syntax-check.js';
import { emptyEndpoint, endpointsExport, endpointsOfModule } from '../../src/rpc/endpoint-module.js';

test('a CommonJS exports.endpoints is served; an object with state named endpoints is the endpoint itself', () => {
  const list = [{ async a() {} }, { async b() {} }];
  // `exports.endpoints = [...]` as Node hands it over: module.exports as default, plus the name.
  assert.is(endpointsExport({ default: { endpoints: list }, endpoints: list }), list);
  assert.is(endpointsExport({ default: { endpoints: list } }), list, 'module.exports = { endpoints: [...] }');
  // A class instance whose `endpoints` is its own state: served as it is, its Map never exposed
  // (served, the Map's clear/set/delete were callable by any client).
  class Registry {
    endpoints = new Map([['db', 'tcp://10.0.0.1:5432']]);
    async lookup() {
      return 1;
    }
  }
  const registry = new Registry();
  assert.is(endpointsExport({ default: registry }), registry);
  // A plain endpoint with a data field named endpoints and methods of its own: the endpoint.
  const urls = { endpoints: ['http://a:1'], async list() {} };
  assert.is(endpointsExport({ default: urls }), urls);
  const plain = { async a() {} };
  assert.is(endpointsExport({ default: plain }), plain);
  assert.is(endpointsExport({ endpoints: list }), list);
  // A getter named endpoints is not run.
  const getter = {
    get endpoints(): never {
      throw new Error('ran');
    },
    async a() {},
  };
  assert.is(endpointsExport({ default: getter }), getter);
});

test('an endpoint that serves nothing is told; getters are never run; a Proxy is left to the dispatcher', () => {
  assert.match(emptyEndpoint({}) ?? '', /has no methods to serve/);
  assert.match(emptyEndpoint({ _hidden() {} }) ?? '', /has no methods to serve/);
  class Calc {
    async add() {}
  }
  assert.match(emptyEndpoint({ Calc }) ?? '', /serves only classes as methods \(Calc\): export the class itself/);
  assert.is(emptyEndpoint(new Calc()), undefined, 'methods on the prototype');
  assert.is(emptyEndpoint({ Calc, async ping() {} }), undefined, 'a class beside a method');
  const withGetter = {
    get pool(): never {
      throw new Error('pool not initialised: call init() first');
    },
    async ping() {},
  };
  assert.is(emptyEndpoint(withGetter), undefined);
  const proxy = new Proxy(
    {},
    { getOwnPropertyDescriptor: (_t, k) => (String(k).startsWith('op') ? { value: async () => 1, configurable: true } : undefined) },
  );
  assert.is(emptyEndpoint(proxy), undefined);
});

test('classes are constructed and factories called with the context, whatever their source looks like', async () => {
  const ctx = { server: 's1', topic: 't' };
  const problem = (reason: string) => new Error(reason);
  // A bundler's output has no space after `class` (class{…}): it was taken for a factory and
  // called without new (TypeError: Class constructor cannot be invoked without 'new').
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  const Minified = new Function('return class{constructor(c){this.c=c}async who(){return this.c.server}}')() as new (c: unknown) => object;
  const [made] = await endpointsOfModule({ default: Minified }, ctx, problem);
  assert.instance(made, Minified);
  assert.is(await (made as { who(): Promise<string> }).who(), 's1');
  const [fromFactory] = await endpointsOfModule(
    {
      endpoints: async (c: typeof ctx) => ({
        async t() {
          return c.topic;
        },
      }),
    },
    ctx,
    problem,
  );
  assert.is(await (fromFactory as { t(): Promise<string> }).t(), 't');
  const reason = (mod: Record<string, unknown>) =>
    endpointsOfModule(mod, ctx, problem).then(
      () => 'served',
      (err: Error) => err.message,
    );
  assert.match(await reason({ default: [{ async a() {} }, null] }), /^endpoints must be objects, got null$/);
  assert.match(await reason({ default: [{ async a() {} }, {}] }), /^its endpoint #2 has no methods/);
  assert.match(await reason({}), /^exports neither a default nor 'endpoints'$/);
});

test('a .mts or .cts file is named as it is on disk (tsx gives esbuild its name as .ts)', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hermod-hint-'));
  try {
    const err = (file: string) => new Error(`Transform failed with 1 error:\n${file}:1:18: ERROR: Unexpected ";"`);
    writeFileSync(path.join(dir, 'a.mts'), '');
    assert.is(transformErrorWhere(err(path.join(dir, 'a.ts'))), `${path.join(dir, 'a.mts')}:1:18`);
    // Both a.mts and a.cts there: the one being loaded says which.
    writeFileSync(path.join(dir, 'a.cts'), '');
    assert.is(transformErrorWhere(err(path.join(dir, 'a.ts'))), `${path.join(dir, 'a.ts')}:1:18`);
    assert.is(transformErrorWhere(err(path.join(dir, 'a.ts')), [path.join(dir, 'a.cts')]), `${path.join(dir, 'a.cts')}:1:18`);
    // A .ts that exists is itself.
    writeFileSync(path.join(dir, 'b.ts'), '');
    writeFileSync(path.join(dir, 'b.mts'), '');
    assert.is(sourceFile(path.join(dir, 'b.ts')), path.join(dir, 'b.ts'));
    assert.is(sourceFile(path.join(dir, 'c.js')), path.join(dir, 'c.js'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the CommonJS hint is given only where Node reads the file as CommonJS', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hermod-hint-'));
  try {
    const message = "Unexpected token 'export'";
    writeFileSync(path.join(dir, 'package.json'), '{ "type": "commonjs" }\n');
    assert.match(commonJsSyntaxHint(message, path.join(dir, 'ep.js:1')), /Node reads ep\.js as CommonJS/);
    assert.match(commonJsSyntaxHint(message, path.join(dir, 'ep.cjs')), /a \.cjs file is CommonJS/);
    assert.is(commonJsSyntaxHint('Unexpected token ;', path.join(dir, 'ep.js')), '');
    assert.is(commonJsSyntaxHint(message, path.join(dir, 'ep.ts')), '');
    // In an ES module the same words are a plain syntax error (an export inside a block).
    // A top-level await in TypeScript that Node reads as CommonJS (tsx compiles it to CommonJS).
    const tla = 'Top-level await is currently not supported with the "cjs" output format';
    assert.match(
      commonJsSyntaxHint(tla, path.join(dir, 'ep.ts:1:18')),
      /Node reads ep\.ts as CommonJS.*rename it ep\.mts, or set "type": "module"\)$/,
    );
    assert.match(
      commonJsSyntaxHint(tla, path.join(dir, 'ep.cts:1:18')),
      /a \.cts file is CommonJS, which has no top-level await: rename it \.mts/,
    );
    assert.match(commonJsSyntaxHint(tla, path.join(dir, 'ep.tsx:1:18')), /Node reads ep\.tsx as CommonJS.*: set "type": "module"\)$/);
    // V8 says this of an await in any function that is not async too: no hint a rename would not mend.
    assert.is(
      commonJsSyntaxHint('await is only valid in async functions and the top level bodies of modules', path.join(dir, 'ep.js')),
      '',
    );
    writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
    assert.is(commonJsSyntaxHint(message, path.join(dir, 'ep.js:3')), '');
    assert.is(commonJsSyntaxHint(tla, path.join(dir, 'ep.ts:1:18')), '');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('rpc-server --endpoints: a factory whose promise never settles is a usage error at its bound, naming the module', async () => {
  // Only the import was bounded: rpc-server stayed silent, serving nothing, until a signal.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hermod-factory-'));
  try {
    const stuck = path.join(dir, 'stuck.mjs');
    writeFileSync(stuck, 'export default async () => { await new Promise(() => {}); return { async x() { return 1; } }; };\n');
    const fine = path.join(dir, 'fine.mjs');
    writeFileSync(fine, 'export default async () => ({ async x() { return 1; } });\n');
    const ctx = { server: 's', topic: 't', transport: undefined as never };
    assert.is((await loadEndpoints([fine], ctx, undefined, 300)).length, 1);
    const t0 = Date.now();
    const err = await loadEndpoints([fine, stuck], ctx, undefined, 300).then(
      () => undefined,
      (e: Error) => e,
    );
    assert.instance(err, UsageError);
    assert.match(err!.message, /--endpoints \S*stuck\.mjs: its endpoints factory did not finish within 300 ms/);
    assert.ok(Date.now() - t0 < 3000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
