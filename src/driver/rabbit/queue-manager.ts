import { existsSync, mkdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { hostname as osHostname, tmpdir } from 'node:os';
import path from 'node:path';

/**
 * Stable queue names, as oslo.messaging's `QManager` (use_queue_manager) makes them:
 * `<hostname>:<processname>:<n>`, where `n` counts the names taken by every process of one
 * process group (a service and the workers it forked) and starts again at 1 when the service
 * restarts, so a restarted service finds its reply and fanout queues again.
 *
 * oslo keeps the counter in `/dev/shm/<host>_<process>_qmanager` as `<pgrp>:<n>:<start time of
 * the group leader>` under an external lock. hermod does the same in a file of its own
 * (`hermod_<host>_<process>_qmanager`: Python services on the host lock theirs with
 * oslo.concurrency, which Node cannot share). The lock is a directory made with mkdir, which is
 * atomic; the critical section is a few microseconds, so a small spin is enough and no
 * dependency is worth it.
 */
export class QueueManager {
  private readonly file: string;
  private readonly lock: string;
  /** Undefined where /proc cannot tell (not Linux): see {@link processGroup}. */
  private readonly group: { pg: number; start: number } | undefined;

  constructor(
    readonly hostname: string,
    readonly processName: string,
  ) {
    const dir = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
    const safe = `${hostname}_${processName}`.replace(/[/\\]/g, '_');
    this.file = path.join(dir, `hermod_${safe}_qmanager`);
    this.lock = `${this.file}.lock`;
    this.group = processGroup();
  }

  /** The next name: `<hostname>:<processName>:<n>`. */
  get(): string {
    return `${this.hostname}:${this.processName}:${this.withLock(() => this.next())}`;
  }

  private next(): number {
    let counter = 0;
    try {
      const [pg, n, start] = readFileSync(this.file, 'utf8').trim().split(':').map(Number);
      // Another group (or the same pgrp number after a reboot or restart): a new service run.
      // With no group to tell runs apart the count goes on: a name is never given twice, and a
      // restart merely does not find its old queues.
      // A start of 0 (the leader had exited when that process looked) matches on the group
      // alone: members that looked while it lived wrote its start time, and the two must agree.
      const sameRun = !this.group || (pg === this.group.pg && (start === this.group.start || start === 0 || this.group.start === 0));
      if (sameRun && Number.isInteger(n) && n! >= 0) counter = n!;
    } catch {
      /* no counter yet */
    }
    counter += 1;
    writeFileSync(this.file, `${this.group?.pg ?? 0}:${counter}:${this.group?.start ?? 0}`);
    return counter;
  }

  private withLock<T>(fn: () => T): T {
    const deadline = Date.now() + 2_000;
    for (;;) {
      try {
        mkdirSync(this.lock);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        // A lock left by a process that died inside the section: older than a second is stale.
        try {
          if (Date.now() - statSync(this.lock).mtimeMs > 1_000) rmdirSync(this.lock);
        } catch {
          /* released meanwhile */
        }
        if (Date.now() > deadline) throw new Error(`queue manager: could not lock ${this.lock}`);
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
      }
    }
    try {
      return fn();
    } finally {
      rmdirSync(this.lock);
    }
  }
}

/**
 * This process's group and its leader's start time (jiffies since boot), from /proc. A group
 * whose leader has exited (a service started in the background by a shell that then ended, as
 * init scripts and `sh -c '… &'` do) is still one group: its members agree on start 0. Before,
 * each member fell back to its own pid, so every one of them restarted the count at 1 and the
 * workers of one service shared one reply and one fanout queue (each fanout reached one worker;
 * oslo refuses to start there). Undefined without /proc.
 */
function processGroup(): { pg: number; start: number } | undefined {
  let pg: number;
  try {
    pg = Number(statFields('self')[4]) || process.pid;
  } catch {
    return undefined;
  }
  try {
    return { pg, start: Number(statFields(String(pg))[21]) };
  } catch {
    return { pg, start: 0 };
  }
}

/** The fields of /proc/<pid>/stat, the command name (which may hold spaces) kept as one. */
function statFields(pid: string): string[] {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const end = text.lastIndexOf(')');
  return [text.slice(0, text.indexOf(' ')), text.slice(text.indexOf('(') + 1, end), ...text.slice(end + 2).split(' ')];
}

/** oslo's defaults: the host's name, and the file name of the program that runs. */
export function queueManagerFor(hostname: string, processName: string): QueueManager {
  const script = process.argv[1] ?? process.argv[0] ?? 'node';
  return new QueueManager(hostname || osHostname(), processName || path.basename(script));
}
