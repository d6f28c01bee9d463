/** Frame size bounds a {@link FrameScanner} enforces, in bytes. */
export interface FrameBounds {
  /** SASL frames and the AMQP `open` frame (nothing is negotiated yet). */
  handshake: number;
  /** Every AMQP frame after `open`: the max-frame-size this side advertises. */
  maxFrame: number;
  /**
   * What a protocol header that is not AMQP 1.0's does: `refuse` (a violation, the router's
   * answer to a client) or `pass` (stop scanning and leave the stream to rhea and the driver's
   * protocol probe, which say which protocol the server speaks). @default 'refuse'
   */
  otherHeader?: 'refuse' | 'pass';
  /**
   * Who sends the scanned stream: a `client` moves from SASL to AMQP after its sasl-init or
   * sasl-response, a `server` after its sasl-outcome. A protocol header anywhere else would make
   * rhea, still reading SASL, take "AMQP" as a frame of 1 GB and buffer it. @default 'client'
   */
  peer?: 'client' | 'server';
}

/** The SASL frames (descriptor codes) after which each side sends its AMQP header. */
const SWITCH_AFTER = { client: [0x41, 0x43], server: [0x44] } as const;
/** Bytes of a SASL frame kept past its size to read its descriptor (doff up to 4 words, then `00 80` and a ulong). */
const SASL_PEEK = 28;

const MAGIC = 0x414d5150; // "AMQP"

/** How {@link FrameScanner.scan}'s answer begins for a protocol header that is not AMQP 1.0's. */
export const NOT_A_HEADER = 'not an AMQP 1.0 protocol header';

/**
 * Follows the AMQP 1.0 byte stream a peer sends (protocol headers, frame headers and the
 * descriptor of each SASL frame, never AMQP frame bodies) and says when it breaks the frame size
 * bounds or switches from SASL to AMQP out of turn, before rhea sees the bytes. rhea
 * buffers whatever size a frame header declares, so without this a peer that declares 2^31 bytes
 * and keeps sending makes the router hold it all. Frames of SASL (protocol 3) and the first AMQP
 * frame (the `open`) are held to the small handshake bound; later frames to the advertised
 * max-frame-size. A header at a frame boundary is how a peer moves from SASL to AMQP. The router
 * scans what its clients send, and the AMQP 1.0 driver what its server sends.
 */
export class FrameScanner {
  private readonly head = Buffer.alloc(8);
  /** Bytes of `head` filled: a protocol header (8) or a frame size (4) being read. */
  private have = 0;
  private inHeader = true;
  private protocol = -1;
  /** Body bytes of the current frame still to pass. */
  private skip = 0;
  private amqpFrames = 0;
  /** Not AMQP 1.0 (with `otherHeader: 'pass'`): nothing more is checked. */
  private off = false;
  /** The start of the current SASL frame past its size (doff, type, channel, body), being read. */
  private readonly peek = Buffer.alloc(SASL_PEEK);
  private peekWant = 0;
  private peekHave = 0;
  /** Descriptor code of the last SASL frame (-1: none, or not read). */
  private lastSasl = -1;

  constructor(private readonly bounds: FrameBounds) {}

  /** Whether a first AMQP frame (the peer's `open`) has passed. */
  get openSeen(): boolean {
    return this.amqpFrames > 0;
  }

  /** Checks the next chunk of the stream; returns why it breaks the bounds, or undefined. */
  scan(chunk: Buffer): string | undefined {
    if (this.off) return undefined;
    let i = 0;
    while (i < chunk.length && !this.off) {
      if (this.peekWant > 0) {
        const n = Math.min(this.peekWant - this.peekHave, chunk.length - i);
        chunk.copy(this.peek, this.peekHave, i, i + n);
        this.peekHave += n;
        i += n;
        if (this.peekHave === this.peekWant) {
          this.lastSasl = saslDescriptor(this.peek.subarray(0, this.peekWant));
          this.peekWant = 0;
        }
        continue;
      }
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - i);
        this.skip -= n;
        i += n;
        continue;
      }
      const want = this.inHeader ? 8 : 4;
      const n = Math.min(want - this.have, chunk.length - i);
      chunk.copy(this.head, this.have, i, i + n);
      this.have += n;
      i += n;
      if (this.have < want) continue;
      this.have = 0;
      const problem = this.inHeader ? this.header() : this.frame();
      if (problem) return problem;
    }
    return undefined;
  }

  private header(): string | undefined {
    const id = this.head[4]!;
    if (this.head.readUInt32BE(0) !== MAGIC || (id !== 0 && id !== 3) || this.head[5] !== 1) {
      if (this.bounds.otherHeader === 'pass') {
        this.off = true;
        return undefined;
      }
      return `${NOT_A_HEADER} (${this.head.toString('hex')})`;
    }
    this.protocol = id;
    this.inHeader = false;
    return undefined;
  }

  private frame(): string | undefined {
    const size = this.head.readUInt32BE(0);
    // A peer ending SASL sends the AMQP header where the next frame would start.
    if (this.protocol === 3 && size === MAGIC) {
      if (!(SWITCH_AFTER[this.bounds.peer ?? 'client'] as readonly number[]).includes(this.lastSasl)) {
        return 'AMQP protocol header before the SASL exchange ended';
      }
      this.inHeader = true;
      this.have = 4;
      return undefined;
    }
    const bound = this.protocol === 3 || this.amqpFrames === 0 ? this.bounds.handshake : this.bounds.maxFrame;
    const what = this.protocol === 3 ? 'SASL frame' : this.amqpFrames === 0 ? 'frame before open' : 'frame';
    if (size < 8) return `${what} of ${size} bytes is shorter than a frame header`;
    if (size > bound) return `${what} of ${size} bytes exceeds the limit of ${bound}`;
    if (this.protocol === 0) this.amqpFrames++;
    if (this.protocol === 3) {
      this.peekWant = Math.min(size - 4, SASL_PEEK);
      this.peekHave = 0;
      this.skip = size - 4 - this.peekWant;
      return undefined;
    }
    this.skip = size - 4;
    return undefined;
  }
}

/**
 * The descriptor code of a SASL frame from its bytes past the size (doff, type, channel, then
 * the body at doff words from the frame's start): `00 53 code` or `00 80` and a ulong; -1 else.
 */
function saslDescriptor(b: Buffer): number {
  const at = b[0]! * 4 - 4;
  if (at < 4 || b.length < at + 3 || b[at] !== 0) return -1;
  if (b[at + 1] === 0x53) return b[at + 2]!;
  if (b[at + 1] === 0x80 && b.length >= at + 10 && b.readUInt32BE(at + 2) === 0) return b.readUInt32BE(at + 6);
  return -1;
}
