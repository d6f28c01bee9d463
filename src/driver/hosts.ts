import type { TransportHost, TransportUrl } from '../config/transport-url.js';

/** `host:port` for logs and errors; IPv6 addresses in brackets. */
export function hostLabel(h: TransportHost): string {
  return `${h.hostname.includes(':') ? `[${h.hostname}]` : h.hostname}:${h.port}`;
}

/**
 * The hosts of a transport URL in failover order: each connect attempt takes the next one,
 * round-robin, so a dead host costs one attempt and never blocks the others.
 */
export class HostRotation {
  private index = -1;
  private last: TransportHost | undefined;

  constructor(private readonly url: TransportUrl) {}

  /** The host to try next (and now the current one). */
  next(): TransportHost {
    this.index = (this.index + 1) % this.url.hosts.length;
    this.last = this.url.hosts[this.index]!;
    return this.last;
  }

  /** The host of the latest attempt, if any. */
  get current(): TransportHost | undefined {
    return this.last;
  }

  /** The current host's label, `?` before the first attempt. */
  get currentLabel(): string {
    return this.last ? hostLabel(this.last) : '?';
  }

  /** What to name in "cannot connect" errors: scheme, every host, and the vhost if any. */
  describe(): string {
    const vhost = this.url.virtualHost ? ` vhost '${this.url.virtualHost}'` : '';
    return `${this.url.scheme}://${this.url.hosts.map(hostLabel).join(', ')}${vhost}`;
  }
}
