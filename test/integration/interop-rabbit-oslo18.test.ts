import { interopSuite } from '../support/interop.js';
import { rabbitBroker } from '../support/oslo-rabbit.js';

// oslo.messaging 18.1.0 (on Debian's kombu) and hermod on one real RabbitMQ node, default
// options on both sides (the RabbitMQ 4-era options: interop-rabbit-modern).
interopSuite('interop rabbit: oslo.messaging 18.1.0, default options', () => rabbitBroker('o18'), {
  oslo: { version: '18' },
  rabbit: true,
}).run();
