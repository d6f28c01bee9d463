/**
 * hermod's configuration: the schema (`schema.ts`, the single source of every option and of
 * {@link HermodConfig}), value formats (`formats.ts`), loading from defaults, files, environment
 * and overrides (`load.ts`) and "did you mean" for unknown keys (`suggest.ts`).
 */

export type { Format, FormatTypes, ValueOf } from './formats.js';
export { parseDuration } from './formats.js';
export type { ConfigSources } from './load.js';
export { applyOverrides, defaultConfig, loadConfig } from './load.js';
export type { ConfigKey, ConfigOf, ConfigValues, HermodConfig, Option } from './schema.js';
export { CONFIG_KEYS, envName, OPTIONS, opt, SCHEMA } from './schema.js';
export { assertKnownKey, closeKey } from './suggest.js';
