import { createRequire } from 'node:module';
import net from 'node:net';

/**
 * A hand-driven AMQP 1.0 peer for hostile-frame tests: frames built with rhea's frame
 * constructors (any field value, in or out of what a well-behaved peer sends), written on a raw
 * socket, and every frame the other side writes decoded and kept.
 */

const require = createRequire(import.meta.url);
type Fields = Record<string, unknown>;
interface FramesModule {
  amqp_frame(channel: number, performative: unknown, payload?: Buffer): unknown;
  write_frame(frame: unknown): Buffer;
  open(f: Fields): unknown;
  begin(f: Fields): unknown;
  attach(f: Fields): unknown;
  flow(f: Fields): unknown;
  transfer(f: Fields): unknown;
  disposition(f: Fields): unknown;
}
interface TypesModule {
  described(d: unknown, v: unknown): unknown;
  wrap_ulong(n: number): unknown;
  wrap_list(l: unknown[]): unknown;
  wrap_string(s: string): unknown;
}
const frames = require('rhea/lib/frames.js') as FramesModule;
const types = require('rhea/lib/types.js') as TypesModule;
const messages = require('rhea/lib/message.js') as { encode(m: Fields): Buffer };

const AMQP_HEADER = Buffer.from('AMQP\x00\x01\x00\x00', 'latin1');
const frame = (channel: number, performative: unknown, payload?: Buffer) =>
  frames.write_frame(frames.amqp_frame(channel, performative, payload));
const terminus = (code: number, address: string | undefined) =>
  types.described(types.wrap_ulong(code), types.wrap_list([address === undefined ? null : types.wrap_string(address)]));

/** Frames to write; values go as given. */
export const raw = {
  attach: (handle: number, role: 'sender' | 'receiver', address: string) =>
    frame(
      0,
      frames.attach({
        name: `${role}-${handle}`,
        handle,
        role: role === 'receiver',
        snd_settle_mode: 0,
        rcv_settle_mode: 0,
        source: terminus(0x28, role === 'receiver' ? address : undefined),
        target: terminus(0x29, role === 'sender' ? address : undefined),
        initial_delivery_count: 0,
      }),
    ),
  flow: (f: Fields) =>
    frame(0, frames.flow({ next_incoming_id: 0, incoming_window: 2048, next_outgoing_id: 0, outgoing_window: 2048, ...f })),
  transfer: (f: Fields, payload?: Buffer) => frame(0, frames.transfer({ message_format: 0, ...f }), payload),
  disposition: (f: Fields) => frame(0, frames.disposition(f)),
  /** An encoded message with `to` and a string body. */
  message: (to: string, body: string) => messages.encode({ to, body }),
};

const PERFORMATIVES: Record<number, string> = {
  16: 'open',
  17: 'begin',
  18: 'attach',
  19: 'flow',
  20: 'transfer',
  21: 'disposition',
  22: 'detach',
  23: 'end',
  24: 'close',
};

/**
 * `flow#13`, `transfer#14`, … read from the frame's descriptor alone: the process's rhea codec
 * may be hermod's patched one, whose performatives name themselves otherwise.
 */
function performativeName(f: Buffer): string {
  const doff = f[4]! * 4;
  if (f.length <= doff) return 'empty';
  if (f[doff] !== 0x00) return 'bad';
  const code = f[doff + 1] === 0x53 ? f[doff + 2]! : f[doff + 1] === 0x80 ? Number(f.readBigUInt64BE(doff + 2)) : -1;
  const name = PERFORMATIVES[code];
  return name ? `${name}#${code.toString(16)}` : `unknown#${code}`;
}

/** A raw client after open and begin on channel 0. */
export class RawPeer {
  readonly socket: net.Socket;
  /** Frame names read (`transfer#14`, `close#18`, …). */
  readonly names: string[] = [];
  readonly closed: Promise<void>;
  private buf = Buffer.alloc(0);
  private headers = 0;

  private constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('error', () => {});
    this.closed = new Promise((r) => this.socket.once('close', () => r()));
    this.socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      for (;;) {
        if (this.headers < 1 && this.buf.length >= 8 && this.buf.toString('latin1', 0, 4) === 'AMQP') {
          this.headers++;
          this.buf = this.buf.subarray(8);
          continue;
        }
        if (this.buf.length < 8) break;
        const size = this.buf.readUInt32BE(0);
        if (size < 8 || this.buf.length < size) break;
        const f = this.buf.subarray(0, size);
        this.buf = this.buf.subarray(size);
        this.names.push(performativeName(f));
      }
    });
  }

  /** Connects without SASL, opens and begins; resolves once the other side began too. */
  static async open(port: number, openFields: Fields = {}, beginFields: Fields = {}): Promise<RawPeer> {
    const p = new RawPeer(port);
    await new Promise((r) => p.socket.once('connect', r));
    p.write(AMQP_HEADER);
    p.write(frame(0, frames.open({ container_id: 'raw-peer', max_frame_size: 65536, channel_max: 100, ...openFields })));
    p.write(frame(0, frames.begin({ next_outgoing_id: 0, incoming_window: 2048, outgoing_window: 2048, ...beginFields })));
    for (let i = 0; i < 200 && !p.names.includes('begin#11'); i++) await new Promise((r) => setTimeout(r, 10));
    if (!p.names.includes('begin#11')) throw new Error(`no begin from the peer: ${p.names.join(',')}`);
    return p;
  }

  write(b: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(b);
  }

  count(name: string): number {
    return this.names.filter((n) => n === name).length;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
