// NestJS 12 microservices over RabbitMQ, set up as the NestJS docs show (Transport.RMQ, one
// queue, queueOptions durable: false, the defaults for everything else: prefetchCount 0, noAck
// true on the server, direct reply-to on the client). Plain CommonJS with the decorators applied
// by hand, so that the bench needs no TypeScript build for its peers.
//   responder: node bench/peers/nest.cjs responder <amqp-url>   (prints "ready")
//   caller:    require('./nest.cjs').connect(url) -> { call(payload), close() }
require('reflect-metadata');
const { Controller, Module } = require('@nestjs/common');
const { NestFactory } = require('@nestjs/core');
const { ClientProxyFactory, MessagePattern, Transport } = require('@nestjs/microservices');
const { firstValueFrom } = require('rxjs');

const QUEUE = 'nest_bench';
const rmq = (url) => ({ transport: Transport.RMQ, options: { urls: [url], queue: QUEUE, queueOptions: { durable: false } } });

class BenchController {
  echo(data) {
    return data.v;
  }
}
MessagePattern('echo')(BenchController.prototype, 'echo', Object.getOwnPropertyDescriptor(BenchController.prototype, 'echo'));
Controller()(BenchController);
class AppModule {}
Module({ controllers: [BenchController] })(AppModule);

async function responder(url) {
  const app = await NestFactory.createMicroservice(AppModule, { ...rmq(url), logger: ['error', 'warn'] });
  await app.listen();
  process.stdout.write('ready\n');
  const stop = () => app.close().finally(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function connect(url) {
  const client = ClientProxyFactory.create(rmq(url));
  await client.connect();
  return {
    call: (v) => firstValueFrom(client.send('echo', { v })),
    close: () => client.close(),
  };
}

module.exports = { connect };
if (require.main === module && process.argv[2] === 'responder') {
  responder(process.argv[3]).catch((err) => {
    process.stderr.write(`nest responder: ${err.stack}\n`);
    process.exit(1);
  });
}
