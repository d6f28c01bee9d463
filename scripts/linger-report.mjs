// Preloaded (`--import`) into every test process by scripts/test.mjs. A test process that stays
// alive after its last suite is held by a leaked handle, and such leaks are rare and racy (one in
// dozens of CI runs): the runner sends SIGUSR2 before it kills the process, and this prints what
// is still alive, so that the one failing run says where to look instead of only that it failed.
// Timers are the usual culprit and Node cannot list them, so setTimeout/setInterval remember where
// each live, ref'd timer was created (a stack captured lazily by V8: an Error object per timer).
import net from 'node:net';
import { promisify } from 'node:util';

const live = new Set();
let sinceSweep = 0;
const sweep = () => {
  for (const t of live) if (t._destroyed) live.delete(t);
};

for (const name of ['setTimeout', 'setInterval']) {
  const original = globalThis[name];
  const wrapped = function (...args) {
    const t = original.apply(this, args);
    // Timeout objects only (not the numbers of other environments); the Error holds the stack.
    if (t && typeof t === 'object') {
      t.__created = new Error('created here');
      live.add(t);
      // Fired and cleared timers are marked _destroyed; drop them now and then so that a suite
      // setting millions of timers does not grow this set.
      if (++sinceSweep >= 1000) {
        sinceSweep = 0;
        sweep();
      }
    }
    return t;
  };
  if (original[promisify.custom]) wrapped[promisify.custom] = original[promisify.custom];
  globalThis[name] = wrapped;
}

const where = (stack) =>
  (stack ?? '')
    .split('\n')
    .slice(2)
    .filter((l) => !l.includes('linger-report'))
    .slice(0, 6)
    .join('\n');

process.on('SIGUSR2', () => {
  sweep();
  const out = [`linger report: active resources: ${process.getActiveResourcesInfo().join(', ') || 'none'}`];
  for (const h of process._getActiveHandles()) {
    if (h === process.stdout || h === process.stderr || h === process.stdin) continue;
    if (h instanceof net.Socket) {
      const state = h.connecting ? 'connecting' : h.destroyed ? 'destroyed' : h.readyState;
      out.push(`  socket ${h.localAddress}:${h.localPort} -> ${h.remoteAddress}:${h.remotePort} (${state})`);
    } else if (h instanceof net.Server) out.push(`  server listening on ${JSON.stringify(h.address())}`);
    else out.push(`  handle ${h?.constructor?.name ?? typeof h}${h?.pid ? ` pid ${h.pid}` : ''}`);
  }
  for (const t of live) {
    if (t._destroyed || !t.hasRef()) continue;
    out.push(`  timer of ${t._idleTimeout} ms${t._repeat ? ' (interval)' : ''}, created at\n${where(t.__created.stack)}`);
  }
  process.stderr.write(`${out.join('\n')}\n`);
});
