import { gatewayContractSuite } from '../support/gateway-contract-cases.js';
import { sharedVhost } from '../support/rabbit-vhost.js';

// The gateway validating requests by a method's contract and documenting it in OpenAPI, with the
// rpc server and the contract's describe call over RabbitMQ, in a vhost of their own.
gatewayContractSuite('gateway contracts over RabbitMQ', sharedVhost('gateway-contracts')).run();
