import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import puppeteer, { type Browser } from 'puppeteer-core';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { scratchDir } from '../support/scratch.js';
import { type GatewayBroker, type Harness, harness, harnessSuite, http, IN_PROCESS, type Json, mountedHarness } from './gateway-cases.js';

// The OpenAPI 3.1 document (checked against the OpenAPI 3.1 schema) and the /docs page, driven
// in headless Chromium: a person's "try it out" call from the page, answered by a real server.

const CHROMIUM = '/usr/bin/chromium';
const WAIT = 45_000;

for (const [name, broker] of IN_PROCESS) {
  const t = harnessSuite(`gateway OpenAPI over ${name}`, broker);

  t("a route schema's $defs move to components.schemas, its references with them", async (ctx) => {
    ctx.h = await harness(ctx.broker.url, (topic) => ({
      routes: [
        {
          topic,
          method: 'get',
          alias: 'GET /people/:id',
          args: {
            type: 'object',
            $defs: { id: { type: 'integer', minimum: 1 }, flag: { $ref: '#/$defs/bool' }, bool: { type: 'boolean' } },
            properties: { id: { $ref: '#/$defs/id' }, verbose: { $ref: '#/$defs/flag' } },
            required: ['id'],
          },
        },
        {
          // A recursive schema, and a reference to another of its own places.
          topic,
          method: 'touch',
          args: {
            type: 'object',
            properties: {
              name: { type: 'string' },
              children: { type: 'array', items: { $ref: '#' } },
              alias: { $ref: '#/properties/name' },
            },
          },
        },
      ],
    }));
    const doc = (await http(ctx.h.base, 'GET', '/openapi.json')).json;
    const tree = `${ctx.h.topic}.touch.args`;
    const touch = doc.paths[`/v1/${ctx.h.topic}/touch`].post.requestBody.content['application/json'].schema;
    assert.equal(touch.properties.children.items, { $ref: `#/components/schemas/${tree}` });
    assert.equal(touch.properties.alias, { $ref: `#/components/schemas/${tree}/properties/name` });
    assert.ok(doc.components.schemas[tree], 'the recursive schema is a component');
    // Before: "#/$defs/id" pasted as is, resolved against the document's root: "Can't resolve".
    assert.equal(await new Validator().validate(doc), { valid: true });
    assert.not.match(JSON.stringify(doc), /#\/\$defs\//);
    const name = `${ctx.h.topic}.get.args`;
    const body = doc.paths[`/v1/${ctx.h.topic}/get`].post.requestBody.content['application/json'].schema;
    assert.equal(body.properties.id, { $ref: `#/components/schemas/${name}.id` });
    assert.equal(doc.components.schemas[`${name}.id`], { type: 'integer', minimum: 1 });
    assert.equal(doc.components.schemas[`${name}.flag`], { $ref: `#/components/schemas/${name}.bool` });
    const alias = doc.paths['/people/{id}'].get.parameters.find((p: Json) => p.name === 'id');
    assert.equal(alias.schema, { $ref: `#/components/schemas/${name}.id` });
    // The gateway still checks calls against the schema as written.
    assert.is((await http(ctx.h.base, 'GET', '/people/0')).status, 400);
    assert.is((await http(ctx.h.base, 'GET', '/people/3')).status, 200);
  });

  t(
    'the document says what the routes accept: X.Y.Z versions, regular expressions of path parameters, topics alike once sanitised',
    async (ctx) => {
      const args = (type: string) => ({ type: 'object', $defs: { x: { type } }, properties: { v: { $ref: '#/$defs/x' } } });
      ctx.h = await harness(ctx.broker.url, (topic) => ({
        routes: [
          { topic: `${topic}:v`, method: 'get', args: args('string') },
          { topic: `${topic}_v`, method: 'get', args: args('integer') },
          { topic, method: 'get', alias: 'GET /e/:id(^\\d+$)' },
        ],
      }));
      const { topic, base } = ctx.h;
      const doc = (await http(base, 'GET', '/openapi.json')).json;
      assert.equal(await new Validator().validate(doc), { valid: true });
      // Before: both topics' $defs were the one component `<topic>_v.get.args.x`, the second replacing the first.
      const component = (t: string) => {
        const ref = doc.paths[`/v1/${t}/get`].post.requestBody.content['application/json'].schema.properties.v.$ref as string;
        return doc.components.schemas[ref.replace('#/components/schemas/', '')];
      };
      assert.equal(component(`${topic}:v`), { type: 'string' });
      assert.equal(component(`${topic}_v`), { type: 'integer' });
      // Before: the path `/e/{id}(^\d+$)`, which no client can fill in.
      const e = doc.paths['/e/{id}']?.get;
      assert.ok(e, Object.keys(doc.paths).join(' '));
      assert.equal(e.parameters[0], { name: 'id', in: 'path', required: true, schema: { type: 'string', pattern: '^(?:\\d+)$' } });
      assert.is((await http(base, 'GET', '/e/12')).status, 200);
      assert.is((await http(base, 'GET', '/e/ab')).status, 404);
      // Before: the pattern ^\d+\.\d+$, though X.Y.Z versions are accepted.
      const version = doc.paths[`/v1/${topic}/get`].post.parameters.find((p: Json) => p.name === 'version');
      const documented = new Ajv2020().compile(version.schema);
      for (const v of ['1.0', '1.0.3', '1', '1.0.3.4']) {
        const r = await http(base, 'POST', `/v1/${topic}/get?version=${v}`, { id: 1 });
        assert.is(documented(v), r.status !== 400, `version ${v}: documented ${documented(v)}, answered ${r.status}`);
      }
    },
  );
  t(
    "an alias's parameters are taken as the document lists them: array query parameters, path parameters with a regular expression and a schema",
    async (ctx) => {
      ctx.h = await harness(ctx.broker.url, (topic) => ({
        routes: [
          {
            topic,
            method: 'echo',
            alias: 'GET /list',
            args: {
              type: 'object',
              additionalProperties: false,
              $defs: { n: { type: 'integer' } },
              properties: { value: { type: 'array', items: { $ref: '#/$defs/n' } } },
            },
          },
          {
            topic,
            method: 'get',
            alias: 'GET /p/:id(^\\d+$)',
            args: { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } },
          },
          {
            topic,
            method: 'text',
            alias: 'GET /t/:code([a-z]+)',
            args: { type: 'object', properties: { code: { type: 'string', pattern: '^a' } } },
          },
        ],
      }));
      const { base, topic } = ctx.h;
      const doc = (await http(base, 'GET', '/openapi.json')).json;
      assert.equal(await new Validator().validate(doc), { valid: true });
      const list = doc.paths['/list'].get.parameters.find((p: Json) => p.name === 'value');
      assert.equal([list.in, list.schema.type], ['query', 'array']);
      // Before: 400 "args/value must be array", and "args/value/0 must be integer" for the repeated key.
      for (const [query, value] of [
        ['?value=1&value=2', [1, 2]],
        ['?value=3', [3]],
        ['?value=-4&value=5&value=6', [-4, 5, 6]],
      ] as const) {
        const r = await http(base, 'GET', `/list${query}`);
        assert.equal([r.status, r.json], [200, { result: value }], query);
      }
      const bad = await http(base, 'GET', '/list?value=1&value=x');
      assert.equal([bad.status, bad.json.error?.code], [400, 'HERMOD_ERR_INVALID_ARGUMENT']);
      assert.match(bad.json.error.message, 'args/value/1 must be integer');
      // Before: the schema of args alone, without the pattern the router holds the value to.
      const id = doc.paths['/p/{id}'].get.parameters.find((p: Json) => p.name === 'id');
      assert.equal(id.schema, { type: 'integer', minimum: 1, pattern: '^(?:\\d+)$' });
      assert.is((await http(base, 'GET', '/p/12')).json.result?.id, 12);
      assert.is((await http(base, 'GET', '/p/1x')).status, 404);
      const code = doc.paths['/t/{code}'].get.parameters.find((p: Json) => p.name === 'code');
      assert.equal(code.schema, { allOf: [{ type: 'string', pattern: '^a' }, { pattern: '^(?:[a-z]+)$' }] });
      assert.equal((await http(base, 'GET', '/t/abc')).json, { result: 'plain' });
      assert.is((await http(base, 'GET', '/t/bcd')).status, 400);
      assert.is((await http(base, 'GET', '/t/a1')).status, 404);
      assert.ok(topic);
    },
  );
  t('a wildcard alias is the path parameter * in /openapi.json, not a literal * and a query parameter', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, (topic) => ({ routes: [{ topic, method: 'text', alias: 'GET /files/*' }] }));
    const doc = (await http(ctx.h.base, 'GET', '/openapi.json')).json;
    assert.equal(await new Validator().validate(doc), { valid: true });
    assert.is(doc.paths['/files/*'], undefined);
    assert.equal(
      doc.paths['/files/{*}'].get.parameters.map((p: Json) => [p.name, p.in]),
      [
        ['*', 'path'],
        ['Prefer', 'header'],
      ],
    );
    assert.equal((await http(ctx.h.base, 'GET', '/files/a/b.txt')).json, { result: 'plain' });
  });
  t('JSON-RPC names: a route on topic rpc is listed by its rpcName, not by the reserved rpc.* one', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, { routes: [{ topic: 'rpc', method: 'add', rpcName: 'add' }] });
    const doc = (await http(ctx.h.base, 'GET', '/openapi.json')).json;
    const method = doc.paths['/jsonrpc'].post.requestBody.content['application/json'].schema.oneOf[0].properties.method;
    assert.equal(method, { enum: ['add', 'rpc.job', 'rpc.cancel_job'] });
  });
  t('/openapi.json is a valid OpenAPI 3.1 document built from the routes and their schemas', async (ctx) => {
    ctx.h = await harness(ctx.broker.url, { authenticate: () => ({ roles: [] }) });
    const r = await http(ctx.h.base, 'GET', '/openapi.json');
    assert.is(r.status, 200);
    const doc = r.json;
    assert.equal(await new Validator().validate(doc), { valid: true });
    assert.is(doc.openapi, '3.1.0');
    const get = doc.paths[`/v1/${ctx.h.topic}/get`].post;
    assert.is(get.operationId, `${ctx.h.topic}.get`);
    assert.equal(get.requestBody.content['application/json'].schema.required, ['id']);
    assert.equal(get.responses['200'].content['application/json'].schema.properties.result.required, ['id', 'name']);
    const alias = doc.paths['/users/{id}'].get;
    assert.equal(
      alias.parameters.map((p: Json) => [p.name, p.in]),
      [
        ['id', 'path'],
        ['verbose', 'query'],
        ['Prefer', 'header'],
      ],
    );
    // Jobs over HTTP: a call's 202 may be a job, polled and cancelled at /v1/jobs/{ref}.
    assert.equal(
      get.responses['202'].content['application/json'].schema.oneOf.map((s: Json) => Object.keys(s.properties)),
      [
        ['accepted', 'requestId'],
        ['job', 'href', 'method', 'requestId'],
      ],
    );
    // Each 202 body matches exactly one branch (a strict response validator checks oneOf).
    const ajv = new Ajv2020({ strict: false });
    const accepted = ajv.compile(get.responses['202'].content['application/json'].schema);
    assert.ok(accepted({ accepted: true, requestId: 'r' }), JSON.stringify(accepted.errors));
    assert.ok(accepted({ job: 'ref', href: '/v1/jobs/ref', method: 'm', requestId: 'r' }), JSON.stringify(accepted.errors));
    const jobs = doc.paths['/v1/jobs/{ref}'];
    assert.equal(
      jobs.get.parameters.map((p: Json) => [p.name, p.in]),
      [
        ['ref', 'path'],
        ['wait', 'query'],
        ['Prefer', 'header'],
      ],
    );
    assert.ok(['400', '401', '403', '404', '429', '503'].every((c) => jobs.get.responses[c]));
    assert.equal(Object.keys(jobs), ['get', 'delete']);
    assert.is(jobs.get.responses['200'].content['application/json'].schema.$ref, '#/components/schemas/Job');
    assert.ok(doc.components.schemas.Job.properties.state.enum.includes('cancelled'));
    // A cast route offers no job.
    assert.equal(Object.keys(doc.paths[`/v1/${ctx.h.topic}/touch`].post.responses['202'].content['application/json'].schema.properties), [
      'accepted',
      'requestId',
    ]);
    assert.is(doc.paths[`/v1/${ctx.h.topic}/secret`], undefined, 'only declared routes');
    assert.ok(doc.paths['/jsonrpc'].post.requestBody.content['application/json'].schema.oneOf);
    assert.equal(doc.security, [{ bearer: [] }, { apiKey: [] }]);
    // /jsonrpc as it answers: the refusals of a whole request, its three media types, its query
    // controls, and an example its route's schema takes (getUser needs an id: not that one).
    const rpc = doc.paths['/jsonrpc'].post;
    assert.equal(Object.keys(rpc.responses), ['200', '204', '400', '401', '413', '415', '429']);
    assert.equal(Object.keys(rpc.requestBody.content), ['application/json', 'application/json-rpc', 'application/jsonrequest']);
    assert.equal(
      rpc.parameters.filter((p: Json) => p.in === 'query').map((p: Json) => p.name),
      ['server', 'namespace', 'version', 'timeout', 'cast'],
    );
    assert.not.equal(rpc.requestBody.content['application/json'].example?.method, 'getUser');
    assert.ok(get.responses['415'], 'REST: a body that is not JSON');
    // docs: false serves neither.
    const off = await harness(ctx.broker.url, { docs: false });
    try {
      assert.is((await http(off.base, 'GET', '/openapi.json')).status, 404);
      assert.is((await http(off.base, 'GET', '/docs')).status, 404);
    } finally {
      await off.close();
    }
  });
  t.run();
}

const d = suite<{ broker: GatewayBroker; h: Pick<Harness, 'base' | 'users' | 'close'>; browser: Browser; dir: string }>(
  'gateway /docs in headless Chromium',
  {} as never,
);
d.before(async (ctx) => {
  ctx.broker = await IN_PROCESS[1]![1]();
  ctx.dir = scratchDir('hermod-gw-docs-');
});
d.after(async (ctx) => {
  await ctx.browser?.close();
  await ctx.broker.stop();
});
d.after.each(async (ctx) => {
  await ctx.h?.close();
});

/** Opens the docs page at `base`, makes a call from it and checks what the page shows; `shotName` is the screenshot's file. */
async function callFromDocs(ctx: { h: Pick<Harness, 'base' | 'users'>; browser: Browser; dir: string }, shotName: string) {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is needed (apt-get install -y chromium; .ci/run installs it)`);
  ctx.browser ??= await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: path.join(ctx.dir, 'profile'),
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // A name that is not loopback, as a gateway reached over a network is: the browser treats
      // loopback as secure and so skipped the CSP's upgrade-insecure-requests, which made the
      // page blank everywhere else (its scripts fetched over https from a plain HTTP gateway).
      '--host-resolver-rules=MAP gw.test 127.0.0.1',
    ],
  });
  const base = ctx.h.base.replace('//127.0.0.1:', '//gw.test:');
  const origin = new URL(base).origin;
  const page = await ctx.browser.newPage();
  await page.setViewport({ width: 1280, height: 1000 });
  // Every request the page makes stays on the gateway (no CDN, no network).
  const foreign: string[] = [];
  page.on('request', (req) => {
    if (!req.url().startsWith(base) && !req.url().startsWith('data:')) foreign.push(req.url());
    // Mounted under a prefix, the page's calls go to the prefix (the document's server URL).
    if (req.url().startsWith(origin) && req.method() !== 'GET' && !req.url().startsWith(base))
      foreign.push(`outside the prefix: ${req.url()}`);
  });
  // Before: the logo's inline style refused by the CSP, and every failed https fetch.
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('requestfailed', (req) => {
    errors.push(`${req.url()}: ${req.failure()?.errorText}`);
  });
  // Generous waits: a cold Chromium parsing the Swagger UI bundle beside three other test files on
  // a 2-vCPU CI machine once took over 10 s to reach network idle. The waits bound a hang; the
  // assertions below are what the test checks.
  await page.goto(`${base}/docs`, { waitUntil: 'load', timeout: WAIT });
  const block = await page.waitForSelector(
    'xpath///div[contains(@class,"opblock-get")][.//*[contains(@class,"opblock-summary-path")][normalize-space(.)="/users/{id}"]]',
    {
      timeout: WAIT,
    },
  );
  assert.ok(block);
  await (await block.$('.opblock-summary-control, .opblock-summary'))!.click();
  const id = await block.waitForSelector('input[placeholder="id"]', { timeout: WAIT });
  await id!.type('42');
  await (await block.waitForSelector('button.execute', { timeout: WAIT }))!.click();
  const shown = await block.waitForSelector('.live-responses-table .response-col_description pre', { timeout: WAIT });
  const text = await shown!.evaluate((el) => el.textContent ?? '');
  const status = await block.$eval('.live-responses-table tbody .response-col_status', (el) => el.textContent?.trim());
  await (await block.$('.live-responses-table'))!.scrollIntoView();
  const shot = path.join(ctx.dir, shotName);
  await page.screenshot({ path: shot });
  console.log(`screenshot: ${shot}`);
  assert.is(status, '200');
  assert.equal(JSON.parse(text), { result: { id: 42, name: 'user-42', verbose: false, by: 'u1' } });
  assert.is(ctx.h.users.seen.length, 1, 'the server ran the call');
  assert.equal(foreign, []);
  assert.equal(errors, []);
  assert.ok(statSync(shot).size > 10_000);
  await page.close();
}

d('a call made from the docs page reaches the server and its result is shown', async (ctx) => {
  ctx.h = await harness(ctx.broker.url);
  await callFromDocs(ctx, 'docs.png');
});

d("the same from the docs page of the gateway mounted under /rpc in an application's own server", async (ctx) => {
  ctx.h = await mountedHarness(ctx.broker.url, '/rpc');
  await callFromDocs(ctx, 'docs-mounted.png');
});
d.run();
