import { jobsInteropSuite } from '../support/jobs-interop.js';
import { sharedVhost } from '../support/rabbit-vhost.js';

// A python3-oslo.messaging client (kombu) following hermod jobs on one real RabbitMQ node.
jobsInteropSuite('jobs interop rabbit: python3-oslo.messaging client', sharedVhost('jobs-interop')).run();
