import { gatewaySuite, IN_PROCESS } from './gateway-cases.js';

// The gateway's shared cases on the memory driver and through the embedded router (real AMQP 1.0 sockets).
for (const [name, broker] of IN_PROCESS) gatewaySuite(`gateway over ${name}: shared cases`, broker).run();
