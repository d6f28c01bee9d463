import { IN_PROCESS } from './gateway-cases.js';
import { gatewayJobSuite } from './gateway-jobs-cases.js';

// Jobs over HTTP on the memory driver and through the embedded router (real AMQP 1.0 sockets).
for (const [name, broker] of IN_PROCESS) gatewayJobSuite(`gateway jobs over ${name}`, broker).run();
