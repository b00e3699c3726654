/**
 * `runc start` without a second runc process. After `runc create`, runc's
 * init waits inside the container, blocked writing one byte to
 * `<runc root>/<id>/exec.fifo`; `runc start` is nothing but a reader of that
 * fifo (it reads the byte, which lets init exec the container's process, and
 * removes the fifo, which is how runc tells Created from Running afterwards).
 * Reading it here saves a Go process start per container start (10-40 ms
 * on this machine), the same protocol runc's own start follows
 * (libcontainer's linuxContainer.exec: open, read one byte, remove).
 *
 * Opened non-blocking, so a dead init cannot hang the daemon: until the byte
 * comes the read says EAGAIN (writer present, nothing written yet) or EOF
 * (writer not there yet); the pid is checked between tries, as runc does.
 */
import { constants, existsSync, readFileSync } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { join } from 'node:path';

export const EXEC_FIFO = 'exec.fifo';

/** The fifo runc's init waits on, or undefined when there is none (another runtime, or not created). */
export function execFifoOf(runcRoot: string, id: string): string | undefined {
  const p = join(runcRoot, id, EXEC_FIFO);
  return existsSync(p) ? p : undefined;
}

/** Is the init still there? A zombie is not (runc's own start checks the same). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Lets the created container's process run: reads runc's exec fifo and
 * removes it. `pid` is the container's init (to notice it died instead of
 * waiting for ever). Throws like `runc start` would when the byte never comes.
 */
export async function startThroughFifo(
  fifo: string,
  pid: number,
  timeoutMs = 30_000,
  isAlive: (pid: number) => boolean = alive,
): Promise<void> {
  const fh = await open(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const buf = Buffer.alloc(1);
    const readByte = async (): Promise<boolean> => {
      try {
        return (await fh.read(buf, 0, 1, null)).bytesRead === 1;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
        return false;
      }
    };
    const deadline = Date.now() + timeoutMs;
    for (let wait = 0; ; wait = Math.min(wait + 1, 20)) {
      if (await readByte()) break;
      // Between that read and this check, init may have written its byte, exec'd, and a quick command
      // (`echo`) ended already: the byte in the fifo says it started. Only a process gone with no byte
      // left behind never started.
      if (!isAlive(pid)) {
        if (await readByte()) break;
        throw new Error('container process is already dead');
      }
      if (Date.now() > deadline) throw new Error(`container process did not start within ${timeoutMs} ms`);
      await sleep(wait);
    }
  } finally {
    await fh.close();
  }
  await unlink(fifo);
}

/** runc's init names itself `runc:[2:INIT]` until it execs the container's process. */
function stillRuncInit(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('runc:[');
  } catch {
    return false;
  }
}

/**
 * Waits (up to `timeoutMs`) until a started container's init has exec'd its
 * process. Between the fifo byte and the exec, the init is still runc's Go
 * program, and Go's default SIGTERM handling makes it exit 2 at once: a
 * `docker stop` right after `docker run -d` on a loaded machine then ended
 * the container with 2 instead of letting its own process decide (137 for a
 * process that ignores SIGTERM). Signals other than SIGKILL wait for it.
 */
export async function untilExecuted(
  pid: number,
  timeoutMs = 2_000,
  isRuncInit: (pid: number) => boolean = stillRuncInit,
): Promise<void> {
  const t0 = Date.now();
  while (isRuncInit(pid) && Date.now() - t0 < timeoutMs) await sleep(2);
}
