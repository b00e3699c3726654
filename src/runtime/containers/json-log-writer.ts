/**
 * The json-file driver's writer: native/cove-logger.c, one small C process
 * per running container, between conmon and Docker's on-disk format.
 *
 * conmon holds the container's stdio and outlives the daemon, but writes only
 * k8s-file lines. So conmon writes them into a FIFO in the bundle dir and
 * cove-logger turns them into Docker's `<id>-json.log` lines
 * (`{"log":"…\n","stream":"stdout","time":"…Z"}`) and rotates the file by
 * max-size/max-file itself, as dockerd does. Started detached beside conmon
 * (the daemon makes the FIFO first; neither waits for the other), it outlives
 * the daemon too and ends when conmon closes the FIFO. A writer
 * found dead at restore is started again on the same FIFO: the pipe lives as
 * long as conmon holds its end, so only what conmon wrote meanwhile is lost.
 */
import { constants as fsConstants, existsSync } from 'node:fs';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { repoRoot } from '../../common/repo-root.js';
import type { Rotation } from './log-config.js';
import { makeFifo, spawnDetached, type DetachedChild } from '../../kernel/spawn.js';

let root: string | undefined;

/** The compiled writer (`npm run build` builds it with node-gyp next to the addon). */
export function logWriterBinary(): string {
  // Found by walking up from this module: it is in dist/src/runtime/containers or in the bundle dist/coved/.
  const file = join((root ??= repoRoot(import.meta.url)), 'native/build/Release/cove-logger');
  if (!existsSync(file)) throw new Error(`log writer missing: ${file} (run \`npm run build:native\`)`);
  return file;
}

export function logFifoPath(bundleDir: string): string {
  return join(bundleDir, 'log.fifo');
}

/** A writer being started: its pid at once, and whether it got going (its log file open) later. */
export interface LogWriterStart {
  pid: number;
  /** Resolves once the writer has its log file open; rejects with its words when it exited first. */
  ready: Promise<void>;
}

/**
 * Starts the writer for one container without waiting for it. The FIFO is
 * made here first, so conmon opens a FIFO (never a new regular file) whenever
 * it comes; conmon's open for writing then waits until the writer opens it for
 * reading. If the writer exits before that, `ready` rejects and the caller
 * must not leave conmon waiting (`unblockFifo`).
 */
export function spawnLogWriter(fifo: string, logPath: string, rotation: Rotation): LogWriterStart {
  let child: DetachedChild;
  try {
    makeFifo(fifo);
    // posix_spawn (src/kernel/spawn.ts): no fork of the daemon on a container's start.
    child = spawnDetached(logWriterBinary(), [fifo, logPath, String(rotation.maxSize), String(rotation.maxFile)], {
      env: process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    throw new Error(`starting the json-file log writer: ${(e as Error).message}`);
  }
  const stdout = child.stdio[1]!;
  const stderr = child.stdio[2]!;
  const ready = new Promise<void>((res, rej) => {
    let out = '';
    let err = '';
    stdout.setEncoding('utf8');
    stderr.setEncoding('utf8');
    stderr.on('data', (c: string) => {
      if (err.length < 4096) err += c;
    });
    stderr.on('error', () => undefined);
    stdout.on('error', () => undefined);
    stdout.on('data', (c: string) => {
      out += c;
      if (out.includes('ready\n')) res();
    });
    void child.exited.then(({ code }) =>
      rej(new Error(`the json-file log writer exited (${code}): ${err.trim() || 'no message'}`)),
    );
  }).finally(() => {
    stdout.destroy();
    stderr.destroy();
  });
  // Whoever starts a writer decides when to look at `ready`; an unlooked-at failure is no crash.
  ready.catch(() => undefined);
  return { pid: child.pid, ready };
}

/** Starts the writer for one container and waits until it has its log file open. Resolves with its pid. */
export async function startLogWriter(fifo: string, logPath: string, rotation: Rotation): Promise<number> {
  const w = spawnLogWriter(fifo, logPath, rotation);
  await w.ready;
  return w.pid;
}

/**
 * A writer that died before opening the FIFO leaves conmon blocked in its
 * open for writing: opening the read side here (non-blocking) lets conmon
 * through, so the failed start can be undone. Close the handle afterwards.
 */
export async function unblockFifo(fifo: string): Promise<FileHandle | undefined> {
  return open(fifo, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK).catch(() => undefined);
}

/** Is `pid` a live writer of this log (not a zombie, not a recycled pid)? */
export async function isLogWriterAlive(pid: number | undefined, logPath: string): Promise<boolean> {
  if (!pid || pid <= 0) return false;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    if (/\) Z /.test(stat)) return false;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('cove-logger') && cmdline.includes(logPath);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return !(code === 'ENOENT' || code === 'ESRCH');
  }
}

/**
 * After conmon exited, the writer still drains what is left in the FIFO
 * (up to a pipe's 64 KiB); `logs` right after `wait` must see it, so the
 * exit waits for the writer as dockerd waits for its log copier (bounded).
 */
export async function waitLogWriter(pid: number | undefined, logPath: string, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (await isLogWriterAlive(pid, logPath)) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** Ends a writer whose conmon never came (a failed start). */
export async function stopLogWriter(pid: number | undefined, logPath: string): Promise<void> {
  if (!(await isLogWriterAlive(pid, logPath))) return;
  try {
    process.kill(pid!, 'SIGKILL');
  } catch {
    // gone
  }
}
