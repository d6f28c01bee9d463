/**
 * hermod's configuration: the schema (`schema.ts`, the single source of every option and of
 * {@link HermodConfig}), value formats (`formats.ts`), loading from defaults, files, environment
 * and overrides (`load.ts`) and "did you mean" for unknown keys (`suggest.ts`).
 */
export { SCHEMA, OPTIONS, CONFIG_KEYS, envName, opt } from './schema.js';
export type { HermodConfig, ConfigOf, ConfigKey, ConfigValues, Option } from './schema.js';
export { parseDuration } from './formats.js';
export type { Format, FormatTypes, ValueOf } from './formats.js';
export { nearestKey, assertKnownKey } from './suggest.js';
export { loadConfig, defaultConfig, applyOverrides } from './load.js';
export type { ConfigSources } from './load.js';
