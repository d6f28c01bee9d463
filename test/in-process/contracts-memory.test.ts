import { contractSuite } from '../support/contract-cases.js';

// The contract cases every driver passes, on an in-process broker of its own.
contractSuite('contracts over memory', async () => ({
  url: 'memory://contract-cases',
  unservedTimeout: (ms) => new RegExp(`after ${ms} ms`),
  stop: async () => {},
})).run();
