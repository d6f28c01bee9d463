/**
 * A check of an encoded AMQP 1.0 message that allocates next to nothing (the scanner, the `to`
 * it reads): every value's constructor is known and its bytes lie inside the message, compound
 * values (lists, maps, arrays, described values) nest at most `maxDepth` deep, the properties
 * section's `to` is read out, and so is the header's `ttl` (with where it lies, so that a router
 * can pass on a reduced one without encoding the message again). A router forwards the bytes it received, so this is all it needs
 * of a message; rhea's decoder builds a typed wrapper per value and a message object per
 * transfer, none of which the router needs.
 */

/** Width in bytes of the fixed-width types, by constructor (0: no data). */
const FIXED = new Int8Array(256).fill(-1);
for (const c of [0x40, 0x41, 0x42, 0x43, 0x44, 0x45]) FIXED[c] = 0;
for (const c of [0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56]) FIXED[c] = 1;
for (const c of [0x60, 0x61]) FIXED[c] = 2;
for (const c of [0x70, 0x71, 0x72, 0x73, 0x74]) FIXED[c] = 4;
for (const c of [0x80, 0x81, 0x82, 0x83, 0x84]) FIXED[c] = 8;
for (const c of [0x94, 0x98]) FIXED[c] = 16;

/** What {@link scanMessage} read of a message. */
export interface ScannedMessage {
  /** The properties section's `to`, when it is a string or symbol. */
  to?: string;
  /**
   * The properties section is in a form the scan does not read `to` from (an array, a `to` that
   * is a number or described): the message is valid, but only a full decode gives its `to`.
   */
  odd?: true;
  /**
   * The header section's `ttl` in milliseconds, when it is a uint other than 0 (proton, and so
   * oslo's driver, sends 0 for "no ttl"; rhea sends it as a uint too).
   */
  ttl?: number;
  /**
   * Where `ttl`'s value starts (its 0x70 or 0x52 constructor), for {@link withTtl}.
   */
  ttlAt?: number;
}

class Scanner {
  to: string | undefined;
  odd = false;
  ttl: number | undefined;
  ttlAt: number | undefined;
  constructor(
    private readonly buf: Buffer,
    private readonly maxDepth: number,
  ) {}

  fail(what: string, at: number): never {
    throw new RangeError(`${what} at byte ${at} of a ${this.buf.length}-byte message`);
  }

  /** The end of `n` bytes from `pos`, which must lie inside `end`. */
  span(pos: number, n: number, end: number): number {
    if (n < 0 || pos + n > end) this.fail('an AMQP value runs past its end', pos);
    return pos + n;
  }

  /**
   * Validates one value (constructor included) at `pos`, `depth` levels down (a section's value
   * is at 1); returns where the next one starts.
   */
  value(pos: number, end: number, depth: number): number {
    if (pos >= end) this.fail('an AMQP value is missing', pos);
    const code = this.buf[pos]!;
    if (code === 0x00) {
      if (depth > this.maxDepth) this.fail(`an AMQP value nested deeper than ${this.maxDepth} levels`, pos);
      // A described value: the descriptor, then the value it describes.
      return this.value(this.value(pos + 1, end, depth + 1), end, depth + 1);
    }
    return this.body(code, pos + 1, end, depth);
  }

  /** Validates the data of a value of constructor `code` at `pos` (after the constructor). */
  body(code: number, pos: number, end: number, depth: number): number {
    const fixed = FIXED[code]!;
    if (fixed >= 0) return this.span(pos, fixed, end);
    const buf = this.buf;
    switch (code) {
      case 0xa0:
      case 0xa1:
      case 0xa3:
        this.span(pos, 1, end);
        return this.span(pos + 1, buf[pos]!, end);
      case 0xb0:
      case 0xb1:
      case 0xb3:
        this.span(pos, 4, end);
        return this.span(pos + 4, buf.readUInt32BE(pos), end);
      case 0xc0:
      case 0xc1:
      case 0xd0:
      case 0xd1:
      case 0xe0:
      case 0xf0: {
        if (depth > this.maxDepth) this.fail(`an AMQP value nested deeper than ${this.maxDepth} levels`, pos - 1);
        const wide = code >= 0xd0 && code !== 0xe0;
        const w = wide ? 4 : 1;
        this.span(pos, 2 * w, end);
        const size = wide ? buf.readUInt32BE(pos) : buf[pos]!;
        const count = wide ? buf.readUInt32BE(pos + w) : buf[pos + 1]!;
        const stop = this.span(pos + w, size, end);
        if (size < w) this.fail('an AMQP compound value is shorter than its count', pos);
        let at = pos + 2 * w;
        if (code === 0xe0 || code === 0xf0) {
          if (count === 0) return stop;
          // An array: one constructor (maybe described, even more than once), then the values
          // without theirs.
          let element = at;
          while (element < stop && buf[element] === 0x00) element = this.value(element + 1, stop, depth + 1);
          if (element >= stop) this.fail('an AMQP array has no element constructor', element);
          const inner = buf[element]!;
          at = element + 1;
          // Elements of no width (null, true, uint0, list0…) take no bytes: 4 billion of them fit
          // in a 13-byte message, so they are not walked one by one.
          if (FIXED[inner] === 0) return at === stop ? stop : this.fail('an AMQP compound value does not fill its size', at);
          for (let i = 0; i < count; i++) at = this.body(inner, at, stop, depth + 1);
        } else {
          if ((code === 0xc1 || code === 0xd1) && count % 2 !== 0) this.fail('an AMQP map has an odd number of items', pos);
          for (let i = 0; i < count; i++) at = this.value(at, stop, depth + 1);
        }
        if (at !== stop) this.fail('an AMQP compound value does not fill its size', at);
        return stop;
      }
      default:
        return this.fail(`unknown AMQP type constructor 0x${code.toString(16).padStart(2, '0')}`, pos - 1);
    }
  }

  /**
   * Whether the (validated) value at `pos` is the descriptor of the properties section: 0x73 in
   * any unsigned integer form, or the symbol `amqp:properties:list` (rhea looks descriptors up
   * by value, so all of these are the properties section to it).
   */
  isProperties(pos: number): boolean {
    return this.isSection(pos, 0x73, 'amqp:properties:list');
  }

  /** Whether the (validated) value at `pos` is the descriptor of the header section (0x70, `amqp:header:list`). */
  isHeader(pos: number): boolean {
    return this.isSection(pos, 0x70, 'amqp:header:list');
  }

  /** Whether the descriptor at `pos` is `code` in any unsigned integer form, or the symbol `name`. */
  isSection(pos: number, code: number, name: string): boolean {
    const buf = this.buf;
    switch (buf[pos]) {
      case 0x52:
      case 0x53:
        return buf[pos + 1] === code;
      case 0x70:
        return buf.readUInt32BE(pos + 1) === code;
      case 0x80:
        return buf.readUInt32BE(pos + 1) === 0 && buf.readUInt32BE(pos + 5) === code;
      case 0xa3:
        return buf[pos + 1] === name.length && buf.toString('latin1', pos + 2, pos + 2 + name.length) === name;
      case 0xb3:
        return buf.readUInt32BE(pos + 1) === name.length && buf.toString('latin1', pos + 5, pos + 5 + name.length) === name;
      default:
        return false;
    }
  }

  /**
   * Where the third field of the list at `pos` (a validated list8 or list32, 0xc0 or 0xd0)
   * starts, or undefined when the list has fewer than three: `ttl` in a header, `to` in properties.
   */
  thirdField(pos: number): number | undefined {
    const buf = this.buf;
    const w = buf[pos] === 0xd0 ? 4 : 1;
    const count = w === 4 ? buf.readUInt32BE(pos + 1 + w) : buf[pos + 1 + w]!;
    if (count < 3) return undefined;
    return this.value(this.value(pos + 1 + 2 * w, buf.length, 0), buf.length, 0);
  }

  /**
   * Reads `ttl`, the third field of the header list at `pos` (already validated), when it is a
   * uint or smalluint (the forms a reduced value can be written back into in place); a later
   * header section wins, as in rhea. Any other form leaves the message without a ttl here: the
   * router then forwards it as it came, unexpired, as it did before it read ttls at all.
   */
  readTtl(pos: number): void {
    const buf = this.buf;
    this.ttl = undefined;
    this.ttlAt = undefined;
    const code = buf[pos]!;
    if (code !== 0xc0 && code !== 0xd0) return;
    const at = this.thirdField(pos);
    if (at === undefined) return;
    const ttl = buf[at] === 0x70 ? buf.readUInt32BE(at + 1) : buf[at] === 0x52 ? buf[at + 1]! : 0;
    if (ttl === 0) return;
    this.ttl = ttl;
    this.ttlAt = at;
  }

  /**
   * Reads `to`, the third field of the properties list at `pos` (already validated), as rhea
   * would: a later properties section's `to` wins, a null one changes nothing, symbols read as
   * ASCII. A form this does not read (the section as an array or a described value, a `to` that
   * is not a string or a symbol) makes the message {@link ScannedMessage.odd}.
   */
  readTo(pos: number): void {
    const buf = this.buf;
    const code = buf[pos]!;
    if (code === 0x45) return;
    if (code !== 0xc0 && code !== 0xd0) {
      this.odd = true;
      return;
    }
    const at = this.thirdField(pos);
    if (at === undefined) return;
    switch (buf[at]) {
      case 0x40:
        return;
      case 0xa1:
        this.to = buf.toString('utf8', at + 2, at + 2 + buf[at + 1]!);
        return;
      case 0xa3:
        this.to = buf.toString('ascii', at + 2, at + 2 + buf[at + 1]!);
        return;
      case 0xb1:
        this.to = buf.toString('utf8', at + 5, at + 5 + buf.readUInt32BE(at + 1));
        return;
      case 0xb3:
        this.to = buf.toString('ascii', at + 5, at + 5 + buf.readUInt32BE(at + 1));
        return;
      default:
        this.odd = true;
    }
  }

  message(): void {
    const end = this.buf.length;
    let pos = 0;
    while (pos < end) {
      if (this.buf[pos] === 0x00) {
        const descriptor = pos + 1;
        const valueAt = this.value(descriptor, end, 1);
        const next = this.value(valueAt, end, 1);
        if (this.isProperties(descriptor)) this.readTo(valueAt);
        else if (this.isHeader(descriptor)) this.readTtl(valueAt);
        pos = next;
      } else {
        // rhea only warns about a section that is not a described value; so does not this.
        pos = this.value(pos, end, 0);
      }
    }
  }
}

/**
 * Checks `buf` as an encoded AMQP message (its sections, each value's type and extent, nesting
 * up to `maxDepth`) and returns its `to`. Throws a RangeError naming the first problem.
 */
export function scanMessage(buf: Buffer, maxDepth: number): ScannedMessage {
  const s = new Scanner(buf, maxDepth);
  s.message();
  if (s.odd) return { odd: true };
  const m: ScannedMessage = s.to === undefined ? {} : { to: s.to };
  if (s.ttl !== undefined) {
    m.ttl = s.ttl;
    m.ttlAt = s.ttlAt!;
  }
  return m;
}

/**
 * A copy of the message `buf` whose header `ttl` (at `at`, as {@link scanMessage} found it) is
 * `ttl`, which must not exceed the one it has: a smaller value always fits the width the sender
 * chose, so nothing else moves.
 */
export function withTtl(buf: Buffer, at: number, ttl: number): Buffer {
  const out = Buffer.from(buf);
  if (out[at] === 0x70) out.writeUInt32BE(ttl, at + 1);
  else out[at + 1] = ttl;
  return out;
}
