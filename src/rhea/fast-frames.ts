import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const FIXED = Symbol.for('hermod.rhea.fast-frames');

interface Typed {
  descriptor?: { value: unknown };
  value: unknown;
}
interface Reader {
  position: number;
  read(): Typed;
}
interface TypesModule {
  Reader: new (buffer: Buffer) => Reader;
  Writer: new () => { write(o: unknown): void; toBuffer(): Buffer };
}
interface Frame {
  size?: number;
  type: number;
  channel: number;
  performative?: { described?(): unknown };
  payload?: Buffer;
}
interface FramesModule {
  [FIXED]?: boolean;
  transfer(fields: Record<string, unknown>): { described(): unknown };
  disposition(fields: Record<string, unknown>): { described(): unknown };
  read_frame(buffer: Buffer): Frame | null;
  write_frame(frame: Frame): Buffer;
}

/** The decoder gave up: the frame goes to rhea's generic codec. */
const FALLBACK = Symbol('fallback');

const TRANSFER = 0x14;
const DISPOSITION = 0x15;
const TRANSFER_FIELDS = [
  'handle',
  'delivery_id',
  'delivery_tag',
  'message_format',
  'settled',
  'more',
  'rcv_settle_mode',
  'state',
  'resume',
  'aborted',
  'batchable',
] as const;
const DISPOSITION_FIELDS = ['role', 'first', 'last', 'settled', 'state', 'batchable'] as const;

/**
 * A transfer or disposition performative as rhea's handlers read it: the same field names and
 * values (`undefined` for a field left out, `null` for one sent as null), `dispatch` to the
 * connection's `on_<name>`, and `described()` for rhea's generic writer (which
 * {@link installFastFrames}'s writer uses whenever a field is one it does not encode itself).
 * Every field is set in the constructor, in one order, so rhea's hot reads of them see one
 * object shape per kind.
 */
abstract class Performative {
  [field: string]: unknown;
  abstract readonly name: 'transfer' | 'disposition';
  protected abstract fields(): readonly string[];
  protected abstract generic(): (fields: Record<string, unknown>) => { described(): unknown };
  dispatch(target: Record<string, (frame: Frame) => void>, frame: Frame): void {
    target[`on_${this.name}`]!(frame);
  }
  fieldValues(): Record<string, unknown> {
    const o: Record<string, unknown> = {};
    for (const f of this.fields()) if (this[f] !== undefined) o[f] = this[f];
    return o;
  }
  described(): unknown {
    return this.generic()(this.fieldValues()).described();
  }
  toJSON(): Record<string, unknown> {
    return this.fieldValues();
  }
}

/** rhea's own codec functions, kept by {@link installFastFrames} (for `described()`, fallbacks and tests). */
export const rheaCodec: Pick<FramesModule, 'transfer' | 'disposition' | 'read_frame' | 'write_frame'> = {
  transfer: () => {
    throw new Error('installFastFrames() not run');
  },
  disposition: () => {
    throw new Error('installFastFrames() not run');
  },
  read_frame: () => null,
  write_frame: () => Buffer.alloc(0),
};
const generics = rheaCodec;

class Transfer extends Performative {
  readonly name = 'transfer' as const;
  handle: unknown = undefined;
  delivery_id: unknown = undefined;
  delivery_tag: unknown = undefined;
  message_format: unknown = undefined;
  settled: unknown = undefined;
  more: unknown = undefined;
  rcv_settle_mode: unknown = undefined;
  state: unknown = undefined;
  resume: unknown = undefined;
  aborted: unknown = undefined;
  batchable: unknown = undefined;
  protected fields() {
    return TRANSFER_FIELDS;
  }
  protected generic() {
    return generics.transfer;
  }
}

class Disposition extends Performative {
  readonly name = 'disposition' as const;
  role: unknown = undefined;
  first: unknown = undefined;
  last: unknown = undefined;
  settled: unknown = undefined;
  state: unknown = undefined;
  batchable: unknown = undefined;
  protected fields() {
    return DISPOSITION_FIELDS;
  }
  protected generic() {
    return generics.disposition;
  }
}

/**
 * Reads the fields of a transfer or disposition list with the encodings peers use for them
 * (uint, boolean, ubyte, binary, null; a disposition's delivery state through rhea's reader), or
 * says FALLBACK for anything else.
 */
function readFields(
  b: Buffer,
  at: number,
  end: number,
  count: number,
  target: Performative,
  names: readonly string[],
  types: TypesModule,
): number | typeof FALLBACK {
  let p = at;
  for (let i = 0; i < count; i++) {
    if (p >= end || i >= names.length) return FALLBACK;
    const code = b[p++]!;
    let v: unknown;
    if (names[i] === 'state') {
      // A delivery state, null included, exactly as rhea's reader gives it (a disposition's
      // `state` is read raw, a described outcome or a null wrapper); a transfer carrying one
      // is rare and left to rhea.
      if (target.name !== 'disposition') return FALLBACK;
      const r = new types.Reader(b.subarray(p - 1, end));
      target.state = r.read();
      p += r.position - 1;
      continue;
    }
    switch (code) {
      case 0x40:
        v = null;
        break;
      case 0x41:
        v = true;
        break;
      case 0x42:
        v = false;
        break;
      case 0x56:
        v = b[p++] !== 0;
        break;
      case 0x43:
        v = 0;
        break;
      case 0x52:
      case 0x50:
        v = b[p++];
        break;
      case 0x70:
        if (p + 4 > end) return FALLBACK;
        v = b.readUInt32BE(p);
        p += 4;
        break;
      case 0xa0: {
        const n = b[p++]!;
        if (p + n > end) return FALLBACK;
        v = b.subarray(p, p + n);
        p += n;
        break;
      }
      default:
        return FALLBACK;
    }
    target[names[i]!] = v;
  }
  return p;
}

function decode(b: Buffer, types: TypesModule, original: FramesModule['read_frame']): Frame | null {
  if (b.length < 8) return original(b);
  const size = b.readUInt32BE(0);
  const doff = b[4]! * 4;
  // An AMQP frame whose body starts with a described transfer or disposition list.
  if (b[5] !== 0 || size !== b.length || doff < 8 || doff + 6 > size) return original(b);
  if (b[doff] !== 0x00 || b[doff + 1] !== 0x53) return original(b);
  const code = b[doff + 2];
  if (code !== TRANSFER && code !== DISPOSITION) return original(b);
  let p = doff + 3;
  let count: number;
  let end: number;
  const list = b[p++];
  if (list === 0x45) {
    count = 0;
    end = p;
  } else if (list === 0xc0) {
    end = p + 1 + b[p]!;
    count = b[p + 1]!;
    p += 2;
  } else if (list === 0xd0) {
    if (p + 8 > size) return original(b);
    end = p + 4 + b.readUInt32BE(p);
    count = b.readUInt32BE(p + 4);
    p += 8;
  } else {
    return original(b);
  }
  if (end > size) return original(b);
  const perf = code === TRANSFER ? new Transfer() : new Disposition();
  const read = readFields(b, p, end, count, perf, code === TRANSFER ? TRANSFER_FIELDS : DISPOSITION_FIELDS, types);
  if (read !== end) return original(b);
  const frame: Frame = { size, type: 0, channel: b.readUInt16BE(6), performative: perf as Frame['performative'] };
  if (end < size) frame.payload = b.subarray(end);
  return frame;
}

/** Bytes of one field, or FALLBACK for a value this writer leaves to rhea's. */
function fieldBytes(kind: 'uint' | 'bool' | 'ubyte' | 'binary' | 'state', v: unknown, out: number[]): boolean {
  if (v === undefined || v === null) {
    out.push(0x40);
    return true;
  }
  switch (kind) {
    case 'uint':
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) return false;
      if (v === 0) out.push(0x43);
      else if (v < 256) out.push(0x52, v);
      else out.push(0x70, v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
      return true;
    case 'bool':
      if (typeof v !== 'boolean') return false;
      out.push(v ? 0x41 : 0x42);
      return true;
    case 'ubyte':
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 255) return false;
      out.push(0x50, v);
      return true;
    case 'binary':
      if (!Buffer.isBuffer(v) || v.length > 255) return false;
      out.push(0xa0, v.length);
      for (const x of v) out.push(x);
      return true;
    case 'state': {
      // The outcomes a router and its clients send all the time: accepted and released, bare.
      const s = v as Typed;
      const code = s.descriptor?.value;
      if ((code !== 0x24 && code !== 0x26) || !Array.isArray(s.value) || s.value.length !== 0) return false;
      out.push(0x00, 0x53, code, 0x45);
      return true;
    }
  }
}

const TRANSFER_KINDS = ['uint', 'uint', 'binary', 'uint', 'bool', 'bool', 'ubyte', 'state', 'bool', 'bool', 'bool'] as const;
const DISPOSITION_KINDS = ['bool', 'uint', 'uint', 'bool', 'state', 'bool'] as const;

function encode(frame: Frame): Buffer | undefined {
  const perf = frame.performative;
  if (frame.type !== 0 || !(perf instanceof Performative)) return undefined;
  const names = perf.name === 'transfer' ? TRANSFER_FIELDS : DISPOSITION_FIELDS;
  const kinds = perf.name === 'transfer' ? TRANSFER_KINDS : DISPOSITION_KINDS;
  let count = names.length;
  while (count > 0 && (perf[names[count - 1]!] === undefined || perf[names[count - 1]!] === null)) count--;
  const body: number[] = [];
  for (let i = 0; i < count; i++) if (!fieldBytes(kinds[i]!, perf[names[i]!], body)) return undefined;
  if (body.length > 254) return undefined;
  const payload = frame.payload;
  const size = 8 + 3 + 3 + body.length + (payload?.length ?? 0);
  const out = Buffer.allocUnsafe(size);
  out.writeUInt32BE(size, 0);
  out[4] = 2;
  out[5] = 0;
  out.writeUInt16BE(frame.channel, 6);
  out[8] = 0x00;
  out[9] = 0x53;
  out[10] = perf.name === 'transfer' ? TRANSFER : DISPOSITION;
  out[11] = 0xc0;
  out[12] = body.length + 1;
  out[13] = count;
  for (let i = 0; i < body.length; i++) out[14 + i] = body[i]!;
  payload?.copy(out, 14 + body.length);
  return out;
}

/**
 * Reads and writes the two frames of every message, transfer and disposition, without rhea's
 * generic codec. rhea 3.0.5 decodes every performative into a list of typed wrappers read back
 * through getters, and builds every outgoing one by wrapping each field
 * (`frames.transfer({...})` → a setter per field), then walks the wrappers to write them: in a
 * profile of the router under load, that codec and the garbage it leaves were the largest part
 * of the time spent per message. Here `frames.transfer`/`frames.disposition` make plain
 * performatives, `frames.write_frame` writes those directly, and `frames.read_frame` reads a
 * transfer or disposition directly into one, with the same field values rhea's decoder gives.
 * Anything else (other frames, a transfer carrying a delivery state, an encoding this reader
 * does not expect, an outcome other than a bare accepted/released) goes through rhea's codec as
 * before, so what reaches rhea is unchanged. Installed once per process.
 */
export function installFastFrames(): void {
  const frames = require('rhea/lib/frames.js') as FramesModule;
  const types = require('rhea/lib/types.js') as TypesModule;
  if (frames[FIXED]) return;
  generics.transfer = frames.transfer;
  generics.disposition = frames.disposition;
  const read = frames.read_frame;
  const write = frames.write_frame;
  rheaCodec.read_frame = read;
  rheaCodec.write_frame = write;
  frames.transfer = (fields) => {
    const p = new Transfer();
    for (const f of TRANSFER_FIELDS) if (fields[f] !== undefined) p[f] = fields[f];
    return p;
  };
  frames.disposition = (fields) => {
    const p = new Disposition();
    for (const f of DISPOSITION_FIELDS) if (fields[f] !== undefined) p[f] = fields[f];
    return p;
  };
  frames.read_frame = (buffer: Buffer) => decode(buffer, types, read);
  frames.write_frame = (frame: Frame) => encode(frame) ?? write(frame);
  frames[FIXED] = true;
}
