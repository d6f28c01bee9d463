import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type { HermodConfig } from '../config/index.js';
import { ConfigError } from '../core/errors.js';

/** Node TLS options from the `tls.*` config: PEM files read once, a missing file named in the error. */
export function tlsOptions(t: HermodConfig['tls']): { ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized: boolean } {
  const read = (key: 'ca' | 'cert' | 'key') => {
    const file = t[key];
    if (!file) return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      throw new ConfigError(`tls.${key}: cannot read ${file}: ${(err as Error).message}`, { key: `tls.${key}`, cause: err });
    }
  };
  const out: { ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized: boolean } = { rejectUnauthorized: t.verify };
  for (const key of ['ca', 'cert', 'key'] as const) {
    const v = read(key);
    if (v) out[key] = v;
  }
  return out;
}

/**
 * Checks the `tls.*` files once, when a transport is made: a file that cannot be read, or holds
 * nothing Node can use as its key says, is a ConfigError naming that key. Met at each connect
 * attempt instead, it was retried as "cannot connect" for good (on `rabbits://` leaking the TCP
 * socket each attempt had opened), or came out as OpenSSL's bare "PEM routines::no start line"
 * with no key named; a CA file with no certificate in it was taken as trusting nobody.
 */
export function checkTlsFiles(t: HermodConfig['tls']): void {
  const o = tlsOptions(t);
  const usable = (key: 'ca' | 'cert' | 'key', options: SecureContextOptions, what: string) => {
    try {
      createSecureContext(options);
    } catch (err) {
      throw new ConfigError(`tls.${key}: ${t[key]} ${what}: ${(err as Error).message}`, { key: `tls.${key}`, cause: err });
    }
  };
  if (o.ca && !/-----BEGIN (?:TRUSTED |X509 )?CERTIFICATE-----/.test(o.ca.toString('latin1'))) {
    throw new ConfigError(`tls.ca: ${t.ca} holds no PEM certificate ('-----BEGIN CERTIFICATE-----')`, { key: 'tls.ca' });
  }
  if (o.ca) usable('ca', { ca: o.ca }, 'is not a usable PEM CA bundle');
  if (o.cert) usable('cert', { cert: o.cert }, 'is not a usable PEM certificate');
  if (o.key) usable('key', { key: o.key }, 'is not a usable PEM private key (an encrypted key is not supported)');
  if (o.cert && o.key) usable('key', { cert: o.cert, key: o.key }, `does not go with the certificate of tls.cert (${t.cert})`);
}
