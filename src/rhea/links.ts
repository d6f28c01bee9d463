import type { Receiver, Sender } from 'rhea';

/** rhea's per-link flow state, which its typings leave out. */
interface LinkInternals {
  credit: number;
  delivery_count: number;
}

/**
 * Free slots in the outgoing delivery buffer of a link's session (0 without a link). rhea
 * queues every sent delivery in `session.outgoing.deliveries`, a fixed-size circular buffer
 * (2048 by default; hermod frees settled ones wherever they are, see session-buffer.ts); pushing
 * past it throws and leaves the session unusable.
 */
export function sessionRoom(link: Sender | undefined): number {
  const out = (link as unknown as { session?: { outgoing?: { deliveries?: { available(): number } } } } | undefined)?.session?.outgoing
    ?.deliveries;
  return out ? out.available() : 0;
}

/**
 * The link's current credit. On a sender rhea sets `credit` from each flow frame and lowers it
 * only when it writes a transfer (`Outgoing.process`), so it still counts deliveries queued but
 * not yet written; on a receiver it is the credit granted and not yet used.
 */
export function linkCredit(link: Sender | Receiver): number {
  return (link as unknown as LinkInternals).credit;
}

/**
 * Whether we have the link open on our side (`state.local_open`), whatever the peer: true while
 * a re-attach after a reconnect waits for the peer's answer, when `is_open()` is still false.
 */
export function locallyOpen(link: Sender | Receiver): boolean {
  return (link as unknown as { state?: { local_open?: boolean } }).state?.local_open === true;
}

/** Transfers rhea has written on the link (its `delivery_count`, raised with each write). */
export function deliveryCount(link: Sender | Receiver): number {
  return (link as unknown as LinkInternals).delivery_count;
}
