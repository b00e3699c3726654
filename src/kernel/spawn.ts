/**
 * Starting the daemon's long-lived helpers (conmon, cove-logger) without fork():
 * posix_spawn from the addon (native/spawn.c), whose vfork-style clone does not
 * copy the daemon's page tables. child_process.spawn forks, and blocks the event
 * loop until the child has exec'd for a time that grows with the daemon's memory
 * (measured from node here, under load: 2.8 ms at 46 MB RSS, 22 ms at 150 MB);
 * a container start spawns two of these.
 *
 * The child is detached (its own session, like `detached: true`, outliving
 * the daemon), gets default signal dispositions and an empty mask, and only
 * the fds named in `stdio`.
 */
import { accessSync, constants as fsConstants } from 'node:fs';
import { Socket } from 'node:net';
import { delimiter, isAbsolute, join } from 'node:path';
import { addon } from './native.js';

export interface DetachedChild {
  pid: number;
  /** The daemon's end of each piped stdio entry (undefined where the child has /dev/null). */
  stdio: Array<Socket | undefined>;
  /** Settles once the child ended and was reaped: its exit code, or null and the signal that ended it. */
  exited: Promise<{ code: number | null; signal: number }>;
}

const resolved = new Map<string, string>();

/** `file` as an absolute path: itself, or the first executable of that name on PATH (remembered). */
function programPath(file: string, path: string | undefined): string {
  if (isAbsolute(file)) return file;
  const key = `${file}\0${path ?? ''}`;
  const known = resolved.get(key);
  if (known) return known;
  for (const dir of (path ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, file);
    try {
      accessSync(candidate, fsConstants.X_OK);
      resolved.set(key, candidate);
      return candidate;
    } catch {
      // not here
    }
  }
  throw Object.assign(new Error(`spawn ${file}: executable file not found in $PATH`), { code: 'ENOENT' });
}

/**
 * Starts `file` with `args`, `env` as its whole environment, `stdio[i]` as fd i ('pipe': a
 * socketpair, 'ignore': /dev/null), in `cwd` (default: the daemon's). Throws (code ENOENT, EMFILE, ...) when it cannot start; never an
 * 'error' event nobody hears. The exit watch does not keep the daemon alive.
 */
export function spawnDetached(
  file: string,
  args: string[],
  opts: { env: Record<string, string | undefined>; stdio: Array<'pipe' | 'ignore'>; cwd?: string },
): DetachedChild {
  const program = programPath(file, opts.env.PATH);
  const envp = Object.entries(opts.env)
    .filter((e): e is [string, string] => e[1] !== undefined)
    .map(([k, v]) => `${k}=${v}`);
  let settle!: (r: { code: number | null; signal: number }) => void;
  const exited = new Promise<{ code: number | null; signal: number }>((r) => (settle = r));
  const [pid, ...fds] = addon().spawnDetached(
    program,
    [file, ...args],
    envp,
    opts.stdio.map((s) => (s === 'pipe' ? 1 : 0)),
    (code, signal) => settle({ code: signal ? null : code, signal }),
    opts.cwd ?? null,
  );
  const stdio = fds.map((fd) => (fd >= 0 ? new Socket({ fd, readable: true, writable: true }) : undefined));
  return { pid: pid!, stdio, exited };
}

/** A FIFO at `path` (mode 0600 unless given); one already there is fine. For a helper that reads it. */
export function makeFifo(path: string, mode = 0o600): void {
  addon().mkfifo(path, mode);
}
