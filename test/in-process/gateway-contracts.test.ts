import { gatewayContractSuite } from '../support/gateway-contract-cases.js';
import { IN_PROCESS } from './gateway-cases.js';

// The gateway's contract cases on memory and through the embedded router; RabbitMQ:
// test/integration/gateway-contracts-rabbit.
for (const [name, broker] of IN_PROCESS) gatewayContractSuite(`gateway contracts over ${name}`, broker).run();
