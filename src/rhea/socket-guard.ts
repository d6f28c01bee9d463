import type { Socket } from 'node:net';
import { type FrameBounds, FrameScanner } from './frame-scanner.js';

/** `address:port` of a socket's peer, for log lines. */
export function peerLabel(socket: Socket): string {
  const a = socket.remoteAddress ?? '?';
  return `${a.includes(':') ? `[${a}]` : a}:${socket.remotePort ?? '?'}`;
}

/**
 * Sits between an accepted socket and rhea: every chunk is checked by a {@link FrameScanner}
 * before rhea's `data` listener sees it. The check wraps the socket's own `emit`, so it runs
 * first whatever order the listeners were added in, costs nothing per byte (only frame headers
 * are read) and, once tripped, keeps every later chunk from rhea, so nothing more is buffered.
 * A stream (a Transform between socket and rhea) would do the same with a copy of each chunk
 * and a second socket-like object for rhea to drive.
 */
export class SocketGuard {
  private tripped_ = false;
  private readonly scanner: FrameScanner;

  constructor(socket: Socket, bounds: FrameBounds, onViolation: (reason: string) => void) {
    this.scanner = new FrameScanner(bounds);
    const emit = socket.emit;
    socket.emit = ((event: string | symbol, ...args: unknown[]) => {
      if (event === 'data') {
        if (this.tripped_) return false;
        const problem = this.scanner.scan(args[0] as Buffer);
        if (problem) {
          this.tripped_ = true;
          onViolation(problem);
          return false;
        }
      }
      return (emit as (e: string | symbol, ...a: unknown[]) => boolean).call(socket, event, ...args);
    }) as Socket['emit'];
  }

  /** Whether the connection broke a bound (or was closed by the router) and input is ignored. */
  get tripped(): boolean {
    return this.tripped_;
  }

  /** Ignores all further input (the router is closing this connection). */
  trip(): void {
    this.tripped_ = true;
  }
}
