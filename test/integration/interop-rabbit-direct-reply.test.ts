import { interopSuite } from '../support/interop.js';
import { rabbitBroker } from '../support/oslo-rabbit.js';

// hermod clients in rabbit.directReplyTo mode against Debian's python3-oslo.messaging 14.0.3
// servers (and the other way round) on one RabbitMQ node. oslo servers must run with
// `direct_mandatory_flag = false`: RabbitMQ 3.10 returns a mandatory reply sent to a direct
// reply-to address as unroutable even though it delivered it, and an oslo server with the
// default (true) then retries that reply for up to 60 s, holding one of its executor threads
// (README "Performance", direct reply-to).
interopSuite(
  'interop rabbit: rabbit.directReplyTo against oslo.messaging 14.0.3 (direct_mandatory_flag = false)',
  () => rabbitBroker('o14drt'),
  {
    oslo: { version: '14', rabbit: { direct_mandatory_flag: false } },
    hermod: { 'rabbit.directReplyTo': true },
  },
).run();
