import { randomUUID } from 'node:crypto';

/** A uuid4 as 32 hex digits, the form oslo uses for `_msg_id`, `_unique_id` and queue names. */
export function uuidHex(): string {
  return randomUUID().replace(/-/g, '');
}

/** A uuid4 with dashes (oslo's notification `message_id`). */
export function uuid(): string {
  return randomUUID();
}
