import { randomFillSync, randomUUID } from 'node:crypto';

/** Random bytes for 256 ids, refilled when used up: one system call per 256 ids. */
const pool = Buffer.allocUnsafe(16 * 256);
let offset = pool.length;

/** A uuid4 as 32 hex digits, the form oslo uses for `_msg_id`, `_unique_id` and queue names. */
export function uuidHex(): string {
  // Hex of pooled random bytes with the version and variant bits set: a third of the CPU of
  // slicing the dashes out of randomUUID(), and a call makes three ids (request, message, reply).
  if (offset === pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  pool[offset + 6] = (pool[offset + 6]! & 0x0f) | 0x40;
  pool[offset + 8] = (pool[offset + 8]! & 0x3f) | 0x80;
  const id = pool.toString('hex', offset, offset + 16);
  offset += 16;
  return id;
}

/** A uuid4 with dashes (oslo's notification `message_id`). */
export function uuid(): string {
  return randomUUID();
}
