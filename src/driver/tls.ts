import { readFileSync } from 'node:fs';
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
