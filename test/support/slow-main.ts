/**
 * Preloaded with `--import` (through NODE_OPTIONS) into a CLI under test: its module hooks hold
 * the load of the command's main module (`bin/main/<name>.js`) for `SLOW_MAIN_MS`, after writing
 * the file `SLOW_MAIN_MARKER`. A test that sees the file knows the entry runs and its command
 * is still loading, and can send a signal into that window, which is otherwise ~100 ms long.
 */
import { register } from 'node:module';

register(new URL('./slow-main-hooks.js', import.meta.url));
