#!/usr/bin/env node
// `hermod status` as a bin of its own until the `hermod` command takes it as a subcommand.
import { cliConfig } from '../src/cli/config-args.js';
import { CLI_DEFAULTS } from '../src/cli/defaults.js';
import { fatal } from '../src/cli/exit-codes.js';
import { runStatus } from '../src/ops/status/index.js';

const { config, rest } = cliConfig(process.argv.slice(2), CLI_DEFAULTS);
runStatus(rest, config).then((code) => {
  process.exitCode = code;
}, fatal);
