/**
 * Rotation of a running container's log, as json-file's max-size/max-file.
 *
 * conmon writes `ctr.log`; the daemon checks its size a few times a second
 * and, past max-size, shifts `ctr.log.N-1` → `ctr.log.N` … `ctr.log` →
 * `ctr.log.1` (dropping what is beyond max-file) and asks conmon through its
 * ctl FIFO to reopen the log (message type 2), so conmon starts a new
 * `ctr.log`; what it wrote between the rename and the reopen lands in
 * `ctr.log.1`, nothing is lost. Readers (logs.ts) read the rotated files
 * oldest first and follow a rotation by the file's inode.
 */
import { constants as fsConstants } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../common/log.js';
import type { Rotation } from './log-config.js';

const CHECK_MS = 250;

interface Watched {
  logPath: string;
  bundleDir: string;
  rotation: Rotation;
  busy: boolean;
}

export class LogRotator {
  private readonly watched = new Map<string, Watched>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly log: Logger) {}

  watch(id: string, logPath: string, bundleDir: string, rotation: Rotation | undefined): void {
    if (!rotation) return;
    this.watched.set(id, { logPath, bundleDir, rotation, busy: false });
    if (!this.timer) {
      this.timer = setInterval(() => this.check(), CHECK_MS);
      this.timer.unref();
    }
  }

  unwatch(id: string): void {
    this.watched.delete(id);
    if (!this.watched.size && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  close(): void {
    this.watched.clear();
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private check(): void {
    for (const [id, w] of this.watched) {
      if (w.busy) continue;
      w.busy = true;
      void this.maybeRotate(w)
        .catch((e) => this.log.warn({ id, err: (e as Error).message }, 'log rotation failed'))
        .finally(() => {
          w.busy = false;
        });
    }
  }

  private async maybeRotate(w: Watched): Promise<void> {
    const size = await stat(w.logPath).then(
      (s) => s.size,
      () => 0,
    );
    if (size < w.rotation.maxSize) return;
    await rotateFiles(w.logPath, w.rotation.maxFile);
    await reopenLog(w.bundleDir);
    // max-file 1: only the new file is kept (json-file truncates).
    if (w.rotation.maxFile <= 1) await rm(`${w.logPath}.1`, { force: true });
  }
}

/** Shifts the rotated files up by one; with max-file 1 the current file is dropped (after conmon reopened, see below). */
export async function rotateFiles(logPath: string, maxFile: number): Promise<void> {
  if (maxFile <= 1) {
    // Keep one file: rename aside so conmon's writes until the reopen are not
    // torn, and remove it right after the reopen (maybeRotate).
    await rename(logPath, `${logPath}.1`).catch(() => undefined);
    return;
  }
  await rm(`${logPath}.${maxFile - 1}`, { force: true });
  for (let n = maxFile - 2; n >= 1; n--) await rename(`${logPath}.${n}`, `${logPath}.${n + 1}`).catch(() => undefined);
  await rename(logPath, `${logPath}.1`).catch(() => undefined);
}

/** conmon's ctl FIFO: "2" reopens the log file. */
async function reopenLog(bundleDir: string): Promise<void> {
  const fh = await open(join(bundleDir, 'ctl'), fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
  try {
    await fh.write('2 0 0\n');
  } finally {
    await fh.close();
  }
}

/** The rotated files of a log, oldest first, then the current one. */
export async function logFiles(logPath: string): Promise<string[]> {
  const out: string[] = [];
  for (let n = 1; ; n++) {
    const p = `${logPath}.${n}`;
    if (
      !(await stat(p).then(
        () => true,
        () => false,
      ))
    )
      break;
    out.unshift(p);
  }
  out.push(logPath);
  return out;
}
