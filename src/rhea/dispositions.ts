import { createRequire } from 'node:module';
import rhea from 'rhea';

const require = createRequire(import.meta.url);
const FIXED = Symbol.for('hermod.rhea.dispositions');

/** An incoming delivery as rhea's session keeps it. */
interface Settling {
  id: number;
  settled: boolean;
  state: unknown;
  link: { is_receiver(): boolean; session: { output(frame: unknown): void } };
}
interface IncomingProto {
  process(this: { updated: Settling[] }, session: unknown): void;
  [FIXED]?: boolean;
}

/**
 * Works around a rhea 3.0.5 bug that changes outcomes. rhea writes the dispositions a session
 * collected in one processing pass (`write_dispositions` in lib/session.js) as ranges of
 * consecutive delivery ids, but it compares outcomes only once a range holds two deliveries: a
 * lone delivery followed by the next id with another outcome are merged into one range with the
 * first one's outcome. A router that accepts delivery n and releases n+1 in the same pass thus
 * tells the sender both were accepted, and a call is lost. This replaces the incoming side's
 * disposition writing (`Incoming.prototype.process`, reached through a throwaway Session since
 * rhea does not export the class) with one that starts a new range whenever the outcome or the
 * settled flag changes. Installed once per process; later calls do nothing.
 */
export function installDispositionFix(): void {
  const Session = require('rhea/lib/session.js') as new (connection: object, channel: number) => { incoming: object };
  const frames = require('rhea/lib/frames.js') as { disposition(fields: Record<string, unknown>): unknown };
  const equivalent = (rhea as unknown as { message: { are_outcomes_equivalent(a: unknown, b: unknown): boolean } }).message
    .are_outcomes_equivalent;
  const proto = Object.getPrototypeOf(new Session({}, 0).incoming) as IncomingProto;
  if (proto[FIXED]) return;
  const original = proto.process;
  const write = (first: Settling, last: Settling) =>
    first.link.session.output(
      frames.disposition({ role: first.link.is_receiver(), first: first.id, last: last.id, state: first.state, settled: first.settled }),
    );
  proto.process = function (this: { updated: Settling[] }, session: unknown) {
    let first: Settling | undefined;
    let last: Settling | undefined;
    for (const d of this.updated) {
      if (d === last) continue;
      if (first && last && d.id === last.id + 1 && d.settled === last.settled && equivalent(last.state, d.state)) {
        last = d;
        continue;
      }
      if (first && last) write(first, last);
      first = last = d;
    }
    if (first && last) write(first, last);
    this.updated = [];
    original.call(this, session);
  };
  proto[FIXED] = true;
}
