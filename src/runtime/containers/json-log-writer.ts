/**
 * The json-file driver's writer: native/cove-logger.c, one small C process
 * per running container, between conmon and Docker's on-disk format.
 *
 * conmon holds the container's stdio and outlives the daemon, but writes only
 * k8s-file lines. So conmon writes them into a FIFO in the bundle dir and
 * cove-logger turns them into Docker's `<id>-json.log` lines
 * (`{"log":"…\n","stream":"stdout","time":"…Z"}`) and rotates the file by
 * max-size/max-file itself, as dockerd does. Started detached before conmon,
 * it outlives the daemon too and ends when conmon closes the FIFO. A writer
 * found dead at restore is started again on the same FIFO: the pipe lives as
 * long as conmon holds its end, so only what conmon wrote meanwhile is lost.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Rotation } from './log-config.js';

function repoRoot(): string {
  // src/runtime/containers or dist/src/runtime/containers
  const here = dirname(fileURLToPath(import.meta.url));
  return here.includes('/dist/') ? resolve(here, '../../../..') : resolve(here, '../../..');
}

/** The compiled writer (`npm run build` builds it with node-gyp next to the addon). */
export function logWriterBinary(): string {
  const file = join(repoRoot(), 'native/build/Release/cove-logger');
  if (!existsSync(file)) throw new Error(`log writer missing: ${file} (run \`npm run build:native\`)`);
  return file;
}

export function logFifoPath(bundleDir: string): string {
  return join(bundleDir, 'log.fifo');
}

/**
 * Starts the writer for one container and waits until its FIFO exists (so
 * conmon opens the FIFO, not a new regular file). Resolves with its pid.
 */
export async function startLogWriter(fifo: string, logPath: string, rotation: Rotation): Promise<number> {
  const child = spawn(logWriterBinary(), [fifo, logPath, String(rotation.maxSize), String(rotation.maxFile)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  try {
    return await new Promise<number>((res, rej) => {
      let out = '';
      let err = '';
      child.stdout!.setEncoding('utf8');
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (c: string) => {
        if (err.length < 4096) err += c;
      });
      child.stdout!.on('data', (c: string) => {
        out += c;
        if (out.includes('ready\n')) res(child.pid!);
      });
      child.on('error', (e) => rej(new Error(`starting the json-file log writer: ${e.message}`)));
      child.on('exit', (code) =>
        rej(new Error(`the json-file log writer exited (${code}): ${err.trim() || 'no message'}`)),
      );
    });
  } finally {
    child.stdout?.destroy();
    child.stderr?.destroy();
    child.unref();
  }
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
