/**
 * The bins' own defaults. They are the lowest configuration source (above the schema defaults,
 * below config files, `HERMOD_*` and `--config`), so `HERMOD_RPC_RETRY=0`, `--config
 * rpc.retry=0` or a config file override them like any schema default.
 */
import type { ConfigValues } from '../config/index.js';

/** Where a CLI connects when neither a flag, the environment nor a config file names a URL: the embedded router. */
export const CLI_DEFAULT_URL = 'amqp://127.0.0.1:5672/';

/** Defaults of every bin. */
export const CLI_DEFAULTS: ConfigValues = { transportUrl: CLI_DEFAULT_URL };

/** rpc-client: a shell user wants to hear "cannot connect" promptly, not after the whole call timeout. */
export const RPC_CLIENT_DEFAULTS: ConfigValues = { ...CLI_DEFAULTS, 'rpc.retry': 2 };

/** notify-send: as rpc-client, give up on an unreachable broker after a few attempts. */
export const NOTIFY_SEND_DEFAULTS: ConfigValues = { ...CLI_DEFAULTS, 'notifications.retry': 2 };
