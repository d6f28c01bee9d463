/**
 * Which AMQP version a host speaks, asked the way the specifications allow: a client sends a
 * protocol header and the server answers with its own, the one it speaks (AMQP 0-9-1 §4.2.2,
 * AMQP 1.0 §2.2: a server refusing the version answers with its header and closes). The drivers ask only after a
 * handshake failed on a socket that did connect, so that a client pointed at the wrong port says
 * so instead of "Socket closed abruptly" or retrying forever.
 */
import net from 'node:net';
import * as tls from 'node:tls';
import type { TransportHost } from '../config/transport-url.js';
import { WrongProtocol } from '../core/errors.js';

/** An AMQP version, as {@link probeProtocol} reports it. */
export type AmqpVersion = 'AMQP 1.0' | 'AMQP 0-9-1';

/**
 * AMQP 1.0 with SASL (protocol id 3), what rhea and Qpid clients send first. Both kinds of peer
 * answer it at once: an AMQP 1.0 one with its header (then it waits for SASL), a 0-9-1 one
 * (RabbitMQ without its AMQP 1.0 plugin) with its own header as a refusal. A 0-9-1 header would
 * not do: RabbitMQ answers it with a frame.
 */
const AMQP1_SASL_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 3, 1, 0, 0]);

/**
 * The version a server's first 8 bytes announce: an AMQP 1.0 header (`AMQP` 0|2|3 1 0 0), or a
 * 0-9-1 / 0-9 / 0-8 one (`AMQP` 0 0 9 1, `AMQP` 1 1 0 9, `AMQP` 1 1 8 0: RabbitMQ's answer to a
 * header it does not take); undefined for anything else.
 */
export function versionOfHeader(bytes: Uint8Array): AmqpVersion | undefined {
  if (bytes.length < 8 || Buffer.from(bytes.subarray(0, 4)).toString('latin1') !== 'AMQP') return undefined;
  const [id, major, minor, revision] = bytes.subarray(4, 8);
  if ((id === 0 || id === 2 || id === 3) && major === 1 && minor === 0 && revision === 0) return 'AMQP 1.0';
  const v091 = id === 0 && major === 0 && minor === 9 && revision === 1;
  // 0-9 and 0-8 headers: class 1, instance 1, then the version (0 9, 8 0).
  const older = id === 1 && major === 1 && ((minor === 0 && revision === 9) || (minor === 8 && revision === 0));
  if (v091 || older) return 'AMQP 0-9-1';
  return undefined;
}

/**
 * Connects to `host`, sends an AMQP 1.0 SASL header and reads the header that comes back within
 * `timeoutMs`. With `secure` (the client's TLS options) the exchange runs inside TLS, as the
 * client's own does on an `amqps://` or `rabbits://` port; a TLS handshake that fails answers
 * nothing. Returns the version the peer announced, or undefined (no answer, no AMQP peer, cannot
 * connect, or `signal` aborted). Never throws; the socket is always destroyed.
 */
export function probeProtocol(
  host: TransportHost,
  timeoutMs: number,
  signal?: AbortSignal,
  secure?: tls.ConnectionOptions,
): Promise<AmqpVersion | undefined> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    // SNI takes host names only (RFC 6066); Node warns when given an address.
    const sni = net.isIP(host.hostname) === 0 ? { servername: host.hostname } : {};
    const socket = secure
      ? tls.connect({ ...secure, ...sni, host: host.hostname, port: host.port })
      : net.connect({ host: host.hostname, port: host.port });
    const abort = () => done(undefined);
    const done = (v: AmqpVersion | undefined) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', abort);
      socket.destroy();
      resolve(v);
    };
    const timer = setTimeout(abort, timeoutMs);
    if (signal?.aborted) return done(undefined);
    signal?.addEventListener('abort', abort, { once: true });
    socket.once(secure ? 'secureConnect' : 'connect', () => socket.write(AMQP1_SASL_HEADER));
    socket.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 8) done(versionOfHeader(got));
    });
    socket.once('error', () => done(undefined));
    socket.once('close', () => done(got.length >= 8 ? versionOfHeader(got) : undefined));
  });
}

/** A TLS handshake that met a peer answering in plain text (OpenSSL 1.1 and 3 say it these ways). */
export function isPlainTextPeer(message: string): boolean {
  return /wrong version number|packet length too long|unknown protocol|record layer failure|http request/i.test(message);
}

/**
 * Whether `host` takes a TLS handshake: connects with TLS (any certificate: this only asks
 * whether TLS is spoken there, nothing is sent over it) and answers true once the handshake
 * completes, false on anything else within `timeoutMs`. For a plain client whose header the
 * peer answered by closing, as a TLS-only port does. Never throws.
 */
export function speaksTls(host: TransportHost, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const sni = net.isIP(host.hostname) === 0 ? { servername: host.hostname } : {};
    const socket = tls.connect({ host: host.hostname, port: host.port, rejectUnauthorized: false, ...sni });
    const abort = () => done(false);
    const done = (v: boolean) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', abort);
      socket.destroy();
      resolve(v);
    };
    const timer = setTimeout(abort, timeoutMs);
    if (signal?.aborted) return done(false);
    signal?.addEventListener('abort', abort, { once: true });
    socket.once('secureConnect', () => done(true));
    socket.once('error', () => done(false));
    socket.once('close', () => done(false));
  });
}

/**
 * The error for a client whose URL and port disagree on TLS: `tls` true when the client used TLS
 * on a plain port (`speaks` what the port answered in plain text), false for a plain client on
 * a TLS port. A configuration mistake (WrongProtocol, not retried).
 */
export function tlsMismatch(host: TransportHost, scheme: string, tls: boolean, what: string, speaks?: AmqpVersion): WrongProtocol {
  const where = label(host);
  const version = speaks ?? (scheme.startsWith('rabbit') ? 'AMQP 0-9-1' : 'AMQP 1.0');
  // The scheme that would work there: the peer's protocol, with or without TLS.
  const base = version === 'AMQP 1.0' ? 'amqp' : 'rabbit';
  if (tls) {
    // TLS asked by `?ssl=1` on a plain scheme: "point amqp:// at the TLS port" read as dropping it.
    const asked = scheme.endsWith('s') ? `${scheme}://` : `${scheme}://…?ssl=1`;
    return new WrongProtocol(
      `${where} does not speak TLS${speaks ? ` (it answered in plain ${speaks})` : ''}: use ${base}://${where}/, or point ${asked} at the TLS port (${what} not retried)`,
      where,
      version,
    );
  }
  return new WrongProtocol(
    `${where} expects TLS (it closed on a plain AMQP header and completed a TLS handshake${speaks ? `, then spoke ${speaks}` : ''}): use ${base}s://${where}/ (${what} not retried)`,
    where,
    version,
  );
}

/**
 * After a plain connect got no header: whether `host` is a TLS port, and which AMQP it speaks
 * inside TLS (any certificate accepted: only the answer is read). `false` when it is no TLS port.
 */
export async function tlsPortSpeaks(
  host: TransportHost,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<AmqpVersion | 'unknown' | false> {
  if (!(await speaksTls(host, timeoutMs, signal))) return false;
  return (await probeProtocol(host, timeoutMs, signal, { rejectUnauthorized: false })) ?? 'unknown';
}

/** The host label of a URL host, `[::1]:5672` or `h:5672`. */
function label(host: TransportHost): string {
  return `${host.hostname.includes(':') ? `[${host.hostname}]` : host.hostname}:${host.port}`;
}

/**
 * The error for a client of `clientSpeaks` that reached a peer of the other version, naming the
 * URL scheme that would work there (the TLS one when `secure`).
 */
export function wrongProtocol(host: TransportHost, clientSpeaks: AmqpVersion, what: string, secure = false): WrongProtocol {
  const where = label(host);
  const s = secure ? 's' : '';
  if (clientSpeaks === 'AMQP 0-9-1') {
    return new WrongProtocol(
      `${where} speaks AMQP 1.0, not RabbitMQ's AMQP 0-9-1: use amqp${s}://${where}/ for an AMQP 1.0 router such as hermod-router, or point rabbit${s}:// at RabbitMQ's ${secure ? 'TLS ' : ''}port (${what} not retried)`,
      where,
      'AMQP 1.0',
    );
  }
  return new WrongProtocol(
    `${where} speaks AMQP 0-9-1 (RabbitMQ without its AMQP 1.0 plugin): use rabbit${s}://${where}/ for it, or point amqp${s}:// at an AMQP 1.0 router (${what} not retried)`,
    where,
    'AMQP 0-9-1',
  );
}
