import type { AmqpError, Delivery } from 'rhea';

/** The four AMQP 1.0 delivery outcomes. */
export type OutcomeKind = 'accepted' | 'released' | 'rejected' | 'modified';

/** An outcome the peer sent for one of our deliveries. */
export interface RemoteOutcome {
  kind: OutcomeKind;
  /** `rejected`: the peer's error, as it sent it (passed on unchanged). */
  error?: AmqpError;
  /** `modified`: the peer's flags, undefined when it left them out. */
  deliveryFailed?: boolean;
  undeliverableHere?: boolean;
}

/**
 * The outcome the peer recorded for a delivery we sent, or undefined while it sent none.
 * rhea stores a received disposition's state at once in `delivery.remote_state`, unwrapped into
 * an instance of its outcome class whose `constructor.composite_type` names the outcome (the
 * same name it dispatches as an event, but only on its next processing pass).
 */
export function remoteOutcome(delivery: Delivery): RemoteOutcome | undefined {
  const state = delivery.remote_state as ({ constructor?: { composite_type?: string } } & Record<string, unknown>) | undefined;
  const kind = state?.constructor?.composite_type;
  if (kind !== 'accepted' && kind !== 'released' && kind !== 'rejected' && kind !== 'modified') return undefined;
  const out: RemoteOutcome = { kind };
  if (state!.error) out.error = state!.error as AmqpError;
  if (state!.delivery_failed != null) out.deliveryFailed = state!.delivery_failed as boolean;
  if (state!.undeliverable_here != null) out.undeliverableHere = state!.undeliverable_here as boolean;
  return out;
}

/**
 * What a link's session receives on now: rhea makes its sessions' delivery state anew at each
 * reconnect (`Session._reconnect`), and a delivery of the connection before settles into the
 * old one, which nothing writes any more. An opaque token to compare, taken on receipt.
 */
export function receivingEpoch(link: unknown): object | undefined {
  return (link as { session?: { incoming?: object } } | undefined)?.session?.incoming;
}

/**
 * Whether the sender settled this incoming delivery before sending it (presettled). rhea copies
 * the transfer's `settled` flag into `delivery.remote_settled`.
 */
export function remoteSettled(delivery: Delivery): boolean {
  return delivery.remote_settled === true;
}

/**
 * Marks an incoming delivery settled on our side without an outcome. rhea frees a session's
 * incoming buffer slot (2048 per session) only for deliveries settled locally
 * (`Incoming.process` pops `d.settled` from the head), even presettled ones; `update(true)`
 * sets that flag and sends no disposition for a remotely settled delivery.
 */
export function settleLocally(delivery: Delivery): void {
  delivery.update(true);
}

/**
 * Gives up on a delivery we sent that the peer has not settled: settles it on our side (rhea
 * queues the disposition that tells the peer) and lets rhea free its session-buffer slot, which
 * `Outgoing.process` frees only once the peer has settled too (`settled && remote_settled`).
 * Left there, every send whose deadline passed unsettled kept its slot: 2048 of them (casts
 * behind a server that never settles) stopped every later send on the connection, any topic.
 * The peer may still deliver it; a disposition of its own for it later finds no delivery.
 */
export function forgetSent(delivery: Delivery): void {
  if (delivery.remote_settled || !written(delivery)) return;
  delivery.update(true);
  (delivery as { remote_settled: boolean }).remote_settled = true;
}

/**
 * Whether rhea has written all of a delivery's transfers: `Outgoing.process` sends deliveries in
 * id order and moves `next_pending_delivery` past each one once its last frame is out. One still
 * waiting there (for credit, or the peer's session window) must stay: freed, rhea's next pass
 * looked for it ("Next pending delivery not found") and sent nothing more on the session.
 */
function written(delivery: Delivery): boolean {
  const d = delivery as unknown as { id: number; link?: { session?: { outgoing?: { next_pending_delivery: number } } } };
  const next = d.link?.session?.outgoing?.next_pending_delivery;
  if (next === undefined) return false;
  const ahead = (next - d.id + 2 ** 32) % 2 ** 32;
  return ahead > 0 && ahead < 2 ** 31;
}

/**
 * Makes a delivery we just sent presettled. rhea writes a transfer on its next processing pass
 * with `settled` taken from `delivery.settled` (`Outgoing.process`), and drops a presettled
 * delivery from the session buffer once written; `Sender.send` sets the same flag itself only
 * on links attached with snd-settle-mode `settled`. Call it right after `send()`.
 */
export function markPresettled(delivery: Delivery): void {
  (delivery as { settled: boolean }).settled = true;
}

/**
 * Whether a presettled delivery we sent has been written to the socket: rhea sets
 * `remote_settled` on it when it writes its last transfer frame (`Outgoing.process`).
 */
export function presettledWritten(delivery: Delivery): boolean {
  return delivery.remote_settled === true;
}
