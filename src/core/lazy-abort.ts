/** Anything with an abort signal: an AbortController, or a {@link LazyAbort}. */
export interface SignalSource {
  readonly signal: AbortSignal;
}

/**
 * An abort controller whose AbortController is made only when its signal is first read. A
 * server gives every request one, and few methods ever read `ctx.signal`: making the signal
 * (an EventTarget) was ~3 % of an `rpc-server`'s busy time per request. A signal first read
 * after {@link abort} is already aborted, with the same reason.
 */
export class LazyAbort implements SignalSource {
  private controller: AbortController | undefined;
  private aborted = false;
  private reason: unknown;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}
