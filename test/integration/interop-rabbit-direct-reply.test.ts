import { interopSuite } from '../support/interop.js';
import { rabbitBroker } from '../support/oslo-rabbit.js';

// hermod in the README's fast lane (rabbit.directReplyTo, rabbit.requestRouting = queue,
// rabbit.requestExpiration = false) against Debian's python3-oslo.messaging 14.0.3 servers (and
// the other way round) on one RabbitMQ node: requests reach oslo's <topic> and <topic>.<server>
// queues through the default exchange, replies come back by direct reply-to. oslo servers must
// run with `direct_mandatory_flag = false`: RabbitMQ 3.10 returns a mandatory reply sent to a
// direct reply-to address as unroutable even though it delivered it, and an oslo server with the
// default (true) then retries that reply for up to 60 s, holding one of its executor threads
// (README "Performance", direct reply-to).
interopSuite(
  'interop rabbit: the fast lane (directReplyTo, requestRouting=queue, requestExpiration=false) against oslo.messaging 14.0.3 (direct_mandatory_flag = false)',
  () => rabbitBroker('o14drt'),
  {
    oslo: { version: '14', rabbit: { direct_mandatory_flag: false } },
    hermod: { 'rabbit.directReplyTo': true, 'rabbit.requestRouting': 'queue', 'rabbit.requestExpiration': false },
  },
).run();
