import { RabbitNode } from '../../scripts/rabbit-node.js';
import { gatewayContractSuite } from '../support/gateway-contract-cases.js';

// The gateway validating requests by a method's contract and documenting it in OpenAPI, with the
// rpc server and the contract's describe call over RabbitMQ, in a vhost of their own.
gatewayContractSuite('gateway contracts over RabbitMQ', async () => {
  const node = await RabbitNode.shared();
  const vhost = await node.addVhost(`gateway-contracts-${process.pid}`);
  return {
    url: node.url(vhost),
    stop: async () => {
      await node.deleteVhost(vhost);
      await node.release();
    },
  };
}).run();
