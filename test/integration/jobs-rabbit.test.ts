import { jobsSuite } from '../support/jobs-cases.js';
import { sharedVhost } from '../support/rabbit-vhost.js';

// The long-operation cases every driver passes, in a vhost of their own.
jobsSuite('jobs over RabbitMQ', sharedVhost('jobs-cases')).run();
