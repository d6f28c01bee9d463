/**
 * oslo.messaging's AMQP 1.0 address formats (amqp1_driver/addressing.py).
 * Routable: `openstack.org/om/rpc/{anycast,unicast,multicast}[/<vhost>]/<exchange>/<topic>[/<server>]`.
 * Legacy: `exclusive|unicast|broadcast[.<vhost>].<exchange>.<topic>[.<server>|.all]`.
 */
export type AddressingMode = 'routable' | 'legacy';

export interface AddressTarget {
  exchange: string;
  topic: string;
  server?: string;
  fanout?: boolean;
}

const RPC_PREFIX = 'openstack.org/om/rpc';
const NOTIFY_PREFIX = 'openstack.org/om/notify';

/** Where a request for `t` goes. */
export function rpcAddress(mode: AddressingMode, t: AddressTarget, vhost?: string): string {
  if (mode === 'legacy') {
    const v = vhost ? `.${vhost}` : '';
    if (t.fanout) return `broadcast${v}.${t.exchange}.${t.topic}.all`;
    if (t.server) return `exclusive${v}.${t.exchange}.${t.topic}.${t.server}`;
    return `unicast${v}.${t.exchange}.${t.topic}`;
  }
  const v = vhost ? `/${vhost}` : '';
  if (t.fanout) return `${RPC_PREFIX}/multicast${v}/${t.exchange}/${t.topic}`;
  if (t.server) return `${RPC_PREFIX}/unicast${v}/${t.exchange}/${t.topic}/${t.server}`;
  return `${RPC_PREFIX}/anycast${v}/${t.exchange}/${t.topic}`;
}

/** The three addresses an RPC server on `t` (topic + server) listens on. */
export function serverAddresses(mode: AddressingMode, t: AddressTarget, vhost?: string): string[] {
  return [
    rpcAddress(mode, { ...t, fanout: false }, vhost),
    rpcAddress(mode, { exchange: t.exchange, topic: t.topic, fanout: true }, vhost),
    rpcAddress(mode, { exchange: t.exchange, topic: t.topic }, vhost),
  ];
}

/** Where notifications of `<topic>.<priority>` go. */
export function notifyAddress(mode: AddressingMode, exchange: string, topic: string, vhost?: string): string {
  if (mode === 'legacy') return `unicast${vhost ? `.${vhost}` : ''}.${exchange}.${topic}`;
  return `${NOTIFY_PREFIX}/anycast${vhost ? `/${vhost}` : ''}/${exchange}/${topic}`;
}

/** oslo's `dynamic` mode: routable unless the peer is qpid-cpp or announces no product. */
export function pickMode(configured: 'dynamic' | AddressingMode, product: unknown): AddressingMode {
  if (configured !== 'dynamic') return configured;
  return typeof product === 'string' && product !== 'qpid-cpp' ? 'routable' : 'legacy';
}
