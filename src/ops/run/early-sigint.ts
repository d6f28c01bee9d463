/**
 * Imported first by the bins that fork workers: in a worker, SIGINT is ignored from the start.
 * A terminal's Ctrl-C reaches the whole process group, and the primary passes it on as its stop
 * request; before the worker's own handlers are installed (its modules, run file and config are
 * still loading), Node's default action killed it, and a run stopped by one Ctrl-C then ended
 * with a worker "killed by a signal" (exit 7) although nothing was cut. Later handlers decide
 * what a SIGINT means (see the bins' handleShutdown): this listener only keeps the default away.
 */
import cluster from 'node:cluster';
import { WORKER_ENV } from './worker-env.js';

if (cluster.isWorker && process.env[WORKER_ENV]) process.on('SIGINT', () => {});
