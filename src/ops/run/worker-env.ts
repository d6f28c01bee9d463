/**
 * The environment variable that marks a process as a worker of `hermod run` or
 * `hermod-gateway --workers` (its value: the worker's number), in a module of its own so that a
 * bin can read it before anything else loads.
 */
export const WORKER_ENV = '_HERMOD_RUN_WORKER';
