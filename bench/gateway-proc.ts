// The gateway under benchmark, in a process of its own (so that its CPU and RSS are its own):
// driven over IPC by bench/gateway.ts.
import { createGateway, type Gateway } from '../src/gateway/index.js';
import { defaultConfig, getTransport, type Transport } from '../src/index.js';

let transport: Transport | undefined;
let gateway: Gateway | undefined;

process.on('message', async (m: { op: 'start'; url: string; topic: string; server: string } | { op: 'rss' } | { op: 'stop' }) => {
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
      const { port } = await gateway.start();
      process.send!({ port });
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
});
