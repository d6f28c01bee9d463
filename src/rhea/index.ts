/**
 * The one place that touches rhea internals (fields and functions its typings leave out or
 * that a future rhea may change). Each function names the rhea 3 behaviour it relies on; the
 * driver and the router use only these and rhea's typed API.
 */
export {
  clearRheaTimers,
  closedIdle,
  connectionError,
  headerMismatch,
  reconnectAfterPlainClose,
  reconnectAfterSaslFailure,
  rescheduleReconnect,
  setSaslCredentials,
  socketOf,
  stopReconnect,
} from './connection.js';
export {
  forgetSent,
  markPresettled,
  type OutcomeKind,
  presettledWritten,
  type RemoteOutcome,
  receivingEpoch,
  remoteOutcome,
  remoteSettled,
  settleLocally,
} from './delivery.js';

import { installAttachFirst } from './attach-first.js';

export { attachPending } from './attach-first.js';

import { installNoOutputAfterClose } from './closed-sockets.js';
import { installIdleNotes } from './connection.js';
import { installDispositionFix } from './dispositions.js';
import { installFastFrames } from './fast-frames.js';
import { installOpenChecks } from './heartbeats.js';
import { installIncompleteReset } from './incomplete-reset.js';
import { installLinkNameFix } from './link-names.js';
import { installQuietLogs } from './quiet-logs.js';
import { installSaslPipelining } from './sasl-pipelining.js';
import { installSequenceNumbers } from './sequence-numbers.js';

export { isDraining } from './sequence-numbers.js';

import { installSessionBuffers } from './session-buffer.js';
import { installCorkedWrites } from './writes.js';

/** Installs hermod's rhea 3.0.5 workarounds (dispositions, link names, attaches before transfers, corked writes, no writes or timers after the socket closed, the transfer/disposition codec, disabled loggers as no-ops, session buffers freed around an unsettled delivery, sequence numbers modulo 2^32 and peer flows and disposition ranges bounded, a peer's open checked (heartbeat rate within bounds, max-frame-size at least 512), AMQP input that followed a sasl-init in one chunk read once SASL succeeds); idempotent. */
export function installRheaFixes(): void {
  installDispositionFix();
  installFastFrames();
  installLinkNameFix();
  installAttachFirst();
  installCorkedWrites();
  installNoOutputAfterClose();
  installQuietLogs();
  installSessionBuffers();
  // After installFastFrames: it wraps the frame constructors that one replaces.
  installSequenceNumbers();
  installOpenChecks();
  installSaslPipelining();
  installIncompleteReset();
  installIdleNotes();
}
export { batchWrites } from './batching.js';
export { installFastFrames, rheaCodec } from './fast-frames.js';
export { type FrameBounds, FrameScanner, NOT_A_HEADER } from './frame-scanner.js';
export { deliveryCount, linkCredit, locallyOpen, sessionRoom } from './links.js';
export { type ScannedMessage, withTtl } from './message-scan.js';
export { installRawDecode, rawBytes, scanInsteadOfDecode } from './raw-decode.js';
export {
  type AssemblyHolder,
  acceptSocket,
  closeNow,
  discarded,
  discardedBytes,
  limitIncomingMessages,
  type SaslPolicy,
} from './server.js';
export { pauseWhileBacklogged, peerLabel, SocketGuard } from './socket-guard.js';
