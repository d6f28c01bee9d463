import { Router } from '../../src/router/router.js';
import { osloContractSuite } from '../support/contract-cases.js';

// python3-oslo.messaging's amqp1 driver (pyngus + python3-qpid-proton) through hermod's router:
// a Python caller receives the typed violation and reads hermod.describe over AMQP 1.0.
osloContractSuite('contracts: an oslo.messaging caller over AMQP 1.0 (embedded router)', async () => {
  const router = new Router({ port: 0 });
  const port = await router.start();
  return { url: `amqp://127.0.0.1:${port}/`, stop: () => router.stop() };
}).run();
