import { jobsSuite } from '../support/jobs-cases.js';

// The long-operation cases every driver passes, on an in-process broker.
jobsSuite('jobs over memory', async () => ({ url: 'memory://jobs-cases', stop: async () => {} })).run();
