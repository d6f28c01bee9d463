// The gateway under benchmark, in a process of its own (so that its CPU and RSS are its own):
// driven over IPC by bench/gateway.ts. Its young generation is governed as hermod-gateway's is.
import '../src/cli/young-gen.js';
import diagnostics_channel from 'node:diagnostics_channel';
import { createGateway, type Gateway } from '../src/gateway/index.js';
import { defaultConfig, getTransport, type Transport } from '../src/index.js';

let transport: Transport | undefined;
let gateway: Gateway | undefined;

/**
 * The gateway's own time per request with one request in flight: from fastify's onRequest to the
 * hermod call's start, plus from the call's end (reply in hand) to onResponse, taken from
 * fastify's hooks and hermod's public diagnostics channels. Recorded only between 'own-start' and
 * 'own-stop' (the sequential row): subscribing makes the client build its call events.
 */
const own = { on: false, req: 0, callStart: 0, callEnd: 0, times: [] as number[] };
const onCallStart = () => {
  own.callStart = performance.now();
};
const onCallEnd = () => {
  own.callEnd = performance.now();
};

process.on(
  'message',
  async (m: { op: 'start'; url: string; topic: string; server: string } | { op: 'rss' | 'stop' | 'own-start' | 'own-stop' }) => {
    try {
      if (m.op === 'start') {
        transport = await getTransport(m.url, { config: defaultConfig(), overrides: { 'rpc.maxInFlight': 4096 } });
        gateway = createGateway(transport, {
          listen: { host: '127.0.0.1', port: 0 },
          maxInFlight: 4096,
          routes: [
            {
              topic: m.topic,
              method: 'echo',
              server: m.server,
              args: { type: 'object', properties: { v: { type: 'string' } }, required: ['v'] },
            },
          ],
        });
        // Callback hooks, not async ones: no promise per request in the rows that do not measure.
        gateway.app.addHook('onRequest', (_req, _reply, done) => {
          if (own.on) own.req = performance.now();
          done();
        });
        gateway.app.addHook('onResponse', (_req, _reply, done) => {
          if (own.on && own.callEnd > own.callStart) own.times.push(own.callStart - own.req + (performance.now() - own.callEnd));
          done();
        });
        const { port } = await gateway.start();
        process.send!({ port });
      } else if (m.op === 'own-start') {
        Object.assign(own, { on: true, times: [] });
        diagnostics_channel.subscribe('hermod:rpc:client:start', onCallStart);
        diagnostics_channel.subscribe('hermod:rpc:client:call', onCallEnd);
        process.send!({ ok: true });
      } else if (m.op === 'own-stop') {
        own.on = false;
        diagnostics_channel.unsubscribe('hermod:rpc:client:start', onCallStart);
        diagnostics_channel.unsubscribe('hermod:rpc:client:call', onCallEnd);
        const t = own.times.sort((a, b) => a - b);
        process.send!({ p50: t[Math.floor(t.length / 2)] ?? 0, n: t.length });
      } else if (m.op === 'rss') {
        process.send!({ rss: process.memoryUsage.rss() });
      } else {
        await gateway?.stop(2000);
        await transport?.close();
        process.send!({ stopped: true });
        process.exit(0);
      }
    } catch (err) {
      process.send!({ error: String(err) });
    }
  },
);
