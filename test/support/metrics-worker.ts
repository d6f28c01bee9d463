// A node:cluster worker for the metrics aggregation test: serves and calls over its own memory
// broker with Metrics started, then tells the primary how many calls it made. With
// METRICS_WORKER_IDLE it starts no Metrics (a worker still loading its modules); a `{ block: ms }`
// message from the primary blocks its event loop that long (a worker too busy to answer).
import { defaultConfig, getTransport, RPCClient, RPCServer, Target } from '../../src/index.js';
import { Metrics } from '../../src/ops/metrics.js';
import { Recorder } from './endpoints.js';

process.on('message', (m: { block?: number }) => {
  if (typeof m?.block !== 'number') return;
  const end = Date.now() + m.block;
  while (Date.now() < end);
});
if (process.env.METRICS_WORKER_IDLE) {
  const keep = setInterval(() => {}, 1000);
  process.send?.({ ready: 0 });
  process.on('SIGTERM', () => {
    clearInterval(keep);
    process.exit(0);
  });
} else {
  const metrics = new Metrics();
  metrics.start();
  const transport = await getTransport('memory://metrics-worker', { config: defaultConfig() });
  const server = new RPCServer(transport, new Target({ topic: 'cluster-metrics', server: 'w' }), [new Recorder('w')]);
  await server.start();
  const client = new RPCClient(transport, new Target({ topic: 'cluster-metrics' }), { timeout: 3000 });
  const calls = Number(process.env.METRICS_WORKER_CALLS);
  for (let i = 0; i < calls; i++) await client.call({}, 'add', { a: i, b: i });
  process.send?.({ ready: calls });
  process.on('SIGTERM', () => {
    void server
      .stop()
      .then(() => server.wait(1000))
      .then(() => transport.close())
      .finally(() => process.exit(0));
  });
}
