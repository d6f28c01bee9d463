// Moleculer 0.15 over RabbitMQ: the AMQP transporter with a noDelay socket and prefetch 64,
// Moleculer's defaults for everything else (JSON serializer, no request timeout, its own
// per-node queues), logging at error so that the console is not part of the measurement.
//   responder: node bench/peers/moleculer.cjs responder <amqp-url>   (prints "ready")
//   caller:    require('./moleculer.cjs').connect(url) -> { call(payload), close() }
const { ServiceBroker } = require('moleculer');

const broker = (url, nodeID) =>
  new ServiceBroker({
    nodeID,
    namespace: 'bench',
    logLevel: 'error',
    transporter: { type: 'AMQP', options: { url, prefetch: 64, socketOptions: { noDelay: true } } },
  });

async function responder(url) {
  const b = broker(url, `responder-${process.pid}`);
  b.createService({
    name: 'bench',
    actions: {
      echo(ctx) {
        return ctx.params.v;
      },
    },
  });
  await b.start();
  process.stdout.write('ready\n');
  const stop = () => b.stop().finally(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function connect(url) {
  const b = broker(url, `caller-${process.pid}`);
  await b.start();
  await b.waitForServices('bench', 30_000);
  return {
    call: (v) => b.call('bench.echo', { v }),
    close: () => b.stop(),
  };
}

module.exports = { connect };
if (require.main === module && process.argv[2] === 'responder') {
  responder(process.argv[3]).catch((err) => {
    process.stderr.write(`moleculer responder: ${err.stack}\n`);
    process.exit(1);
  });
}
