import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const noop = () => {};

/**
 * rhea calls its `debug` loggers (rhea:frames, rhea:raw, rhea:events…) several times per frame,
 * and a disabled `debug` logger still runs its `enabled` getter on every call: about 2 % of the
 * router's busy time under load. The loggers that are off when this runs become no-ops; rhea's
 * modules look them up on the shared log object at each call, so this reaches all of them. So
 * `DEBUG=rhea:*` must be set when the process starts (as `debug` reads it then anyway);
 * `debug.enable()` later in a running process no longer turns rhea's logging on.
 */
export function installQuietLogs(): void {
  let log: Record<string, unknown>;
  try {
    log = require('rhea/lib/log.js') as Record<string, unknown>;
  } catch {
    return;
  }
  for (const [name, fn] of Object.entries(log)) {
    if (typeof fn === 'function' && !(fn as { enabled?: boolean }).enabled) log[name] = noop;
  }
}
