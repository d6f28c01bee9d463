#!/usr/bin/env node
// The entry of `hermod`: it holds SIGHUP, SIGINT and SIGTERM and sizes V8's young generation before
// the command's modules load (src/cli/early-signals.ts, src/cli/young-gen.ts), then runs it.
import { holdStartupSignals } from '../src/cli/early-signals.js';
import '../src/cli/young-gen.js';

holdStartupSignals();
await import('./main/hermod.js');
