import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

/** A throwaway PKI made with openssl for tests: PEM files (EC P-256 keys, valid 2 days). */
export interface TestPki {
  /** The test CA. */
  ca: string;
  /** A server certificate from the test CA for localhost and 127.0.0.1. */
  cert: string;
  key: string;
  /** Another CA, which the tests' servers do not trust. */
  otherCa: string;
  /** A client certificate from the test CA, CN=svc-1. */
  clientCert: string;
  clientKey: string;
  /** A client certificate from the other CA with the same CN: a server trusting the test CA refuses it. */
  rogueCert: string;
  rogueKey: string;
}

/** Makes the test PKI's files in `dir` (used by the RabbitMQ TLS listener and the router tests). */
export function makePki(dir: string): TestPki {
  const f = (n: string) => path.join(dir, n);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  // EC keys: RSA ones cost openssl a noticeable part of a second each on a loaded machine.
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  for (const [name, cn] of [
    ['ca', 'hermod test CA'],
    ['other-ca', 'some other CA'],
  ] as const) {
    ssl('req', '-x509', ...newKey, '-days', '2', '-subj', `/CN=${cn}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.pem`));
  }
  writeFileSync(f('server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  writeFileSync(f('client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const [name, cn, ca, ext] of [
    ['server', 'localhost', 'ca', 'server'],
    ['client', 'svc-1', 'ca', 'client'],
    ['rogue', 'svc-1', 'other-ca', 'client'],
  ] as const) {
    ssl('req', ...newKey, '-subj', `/CN=${cn}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`));
    ssl(
      'x509',
      '-req',
      '-in',
      f(`${name}.csr`),
      '-CA',
      f(`${ca}.pem`),
      '-CAkey',
      f(`${ca}.key`),
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      f(`${ext}.ext`),
      '-out',
      f(`${name}.pem`),
    );
  }
  return {
    ca: f('ca.pem'),
    cert: f('server.pem'),
    key: f('server.key'),
    otherCa: f('other-ca.pem'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
    rogueCert: f('rogue.pem'),
    rogueKey: f('rogue.key'),
  };
}
