import { interopSuite } from '../support/interop.js';
import { rabbitBroker } from '../support/oslo-rabbit.js';

// Debian 12's python3-oslo.messaging 14.0.3 (kombu) and hermod's RabbitMQ driver on one real
// RabbitMQ node, in a vhost of their own, default options on both sides.
interopSuite('interop rabbit: oslo.messaging 14.0.3 on RabbitMQ', () => rabbitBroker('o14'), { rabbit: true }).run();
