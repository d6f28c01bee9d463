import type { Context } from '../core/serializer.js';

// The parts of oslo's notification format that sender, filter and listener share.

/** `message_id` and `timestamp` of a notification, as oslo passes them. */
export interface NotificationMetadata {
  /** The sender's uuid of the notification. */
  message_id?: string;
  /** When it was sent: oslo's `YYYY-MM-DD HH:MM:SS.ffffff`, UTC. */
  timestamp?: string;
}

/** The context keys oslo lets into notifications (the rest may hold secrets). */
const SAFE_CONTEXT_KEYS = new Set([
  'user_id',
  'project_id',
  'domain_id',
  'user_domain_id',
  'project_domain_id',
  'is_admin',
  'request_id',
  'roles',
  'user_name',
  'project_name',
  'domain_name',
  'user_domain_name',
  'project_domain_name',
  'service_user_id',
  'service_user_domain_id',
  'service_user_domain_name',
  'service_project_id',
  'service_project_name',
  'service_project_domain_id',
  'service_project_domain_name',
  'service_roles',
  'global_request_id',
  'system_scope',
  'user',
  'domain',
  'user_domain',
  'project_domain',
]);

/** Keeps only oslo's safe context keys: tokens and credentials never reach the notification bus. */
export function sanitizeContext(ctx: Context): Context {
  const out: Context = {};
  for (const [k, v] of Object.entries(ctx ?? {})) if (SAFE_CONTEXT_KEYS.has(k)) out[k] = v;
  return out;
}

/** oslo's `str(timeutils.utcnow())`: naive UTC, space separator, microseconds. */
export function osloTimestamp(d = new Date()): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}000`;
}
