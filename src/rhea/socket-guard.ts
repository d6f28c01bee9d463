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

/**
 * Stops reading `socket` while more than `bound` bytes written to it wait unsent, and reads again
 * once they went ('drain'). Every frame a peer sends may call for an answer (an attach, a detach,
 * a begin, an echoed flow), and the answers pile up in the socket of a peer that does not read:
 * one connection sending attach and detach pairs without reading took a router from 66 MB to
 * 1.2 GB. Paused, the peer's frames wait in its own TCP window, and what the router holds for it
 * is this bound and the answers to the one read that found it crossed.
 * A peer paused long enough is also silent to the idle timeout, which closes it. `mayResume`
 * says whether to read again (not when the connection is being closed).
 */
export function pauseWhileBacklogged(socket: Socket, bound: number, mayResume: () => boolean): void {
  let paused = false;
  // Checked as input arrives, ahead of rhea's own listener: what fills the backlog is answers to
  // input, so no write (the router's hot path) pays for the check.
  socket.prependListener('data', () => {
    if (!paused && socket.writableLength > bound) {
      paused = true;
      socket.pause();
    }
  });
  socket.on('drain', () => {
    if (!paused) return;
    paused = false;
    if (mayResume() && !socket.destroyed) socket.resume();
  });
}
