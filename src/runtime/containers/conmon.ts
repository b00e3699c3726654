/**
 * Driving conmon, the small per-container monitor that runs runc, holds the
 * container's stdio/TTY, writes the k8s-file log (or into the json-file
 * writer's FIFO, json-log-writer.ts) and the exit file, and
 * outlives the daemon. The protocol (as podman's libpod uses it, API v1):
 *  - fd 3 (_OCI_SYNCPIPE): conmon writes `{"data": <pid>}` once the runtime
 *    created the process, or `{"data": -1, "message": "..."}`; for exec it
 *    writes the exit status as a second message.
 *  - fd 4 (_OCI_STARTPIPE): conmon waits for one write before it forks; with
 *    --exec-attach, the runtime waits for a second write, so the caller can
 *    connect to the attach socket before the process produces output.
 *  - fd 5 (_OCI_ATTACHPIPE, --exec-attach): `{"data": 0}` when the attach
 *    socket is listening.
 *  - attach socket `<socket-dir>/<cuuid>/attach` (SOCK_SEQPACKET): each
 *    packet conmon sends starts with one byte, 2 = stdout, 3 = stderr; what
 *    the client sends is written to the container's stdin as is; closing the
 *    client closes stdin unless --leave-stdin-open.
 *  - `<bundle>/ctl` FIFO: "1 <rows> <cols>\n" resizes the TTY.
 */
import { readFile, open } from 'node:fs/promises';
import { constants as fsConstants, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { spawnDetached, type DetachedChild } from '../../kernel/spawn.js';

export interface ConmonPaths {
  conmon: string;
  runtime: string;
  /** runc --root: where runc keeps container state. */
  runcRoot: string;
  socketDir: string;
}

export interface SyncMessage {
  data: number;
  message?: string;
}

/** Reads newline-delimited JSON messages from a conmon pipe. */
class PipeReader {
  private buf = '';
  private readonly queue: SyncMessage[] = [];
  private waiters: Array<{ resolve: (m: SyncMessage | null) => void }> = [];
  private ended = false;

  constructor(stream: Readable) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      this.buf += chunk;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl).trim();
        this.buf = this.buf.slice(nl + 1);
        if (!line) continue;
        try {
          this.push(JSON.parse(line) as SyncMessage);
        } catch {
          this.push({ data: -1, message: `bad message from conmon: ${line}` });
        }
      }
    });
    const end = (): void => {
      this.ended = true;
      for (const w of this.waiters.splice(0)) w.resolve(null);
    };
    stream.on('end', end);
    stream.on('close', end);
    stream.on('error', end);
  }

  private push(m: SyncMessage): void {
    const w = this.waiters.shift();
    if (w) w.resolve(m);
    else this.queue.push(m);
  }

  /** The next message, or null when the pipe closed first. */
  next(timeoutMs: number): Promise<SyncMessage | null> {
    const m = this.queue.shift();
    if (m) return Promise.resolve(m);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              this.waiters = this.waiters.filter((x) => x !== waiter);
              reject(new Error(`conmon did not answer within ${timeoutMs} ms`));
            }, timeoutMs)
          : undefined;
      const waiter = {
        resolve: (v: SyncMessage | null) => {
          if (timer) clearTimeout(timer);
          resolve(v);
        },
      };
      this.waiters.push(waiter);
    });
  }
}

function collect(stream: Readable | null | undefined): () => string {
  let text = '';
  stream?.setEncoding('utf8');
  stream?.on('data', (c: string) => {
    if (text.length < 8192) text += c;
  });
  stream?.on('error', () => undefined);
  return () => text.trim();
}

function writeStart(stream: Writable): Promise<void> {
  return new Promise((resolve) => {
    stream.write('0', () => resolve());
  });
}

export interface CreateOptions {
  id: string;
  /** conmon's name for the attach socket dir (`<socket-dir>/<cuuid>/attach`). */
  cuuid: string;
  name: string;
  bundle: string;
  logPath: string;
  /** The log is the json-file writer's FIFO: no fsync (it fails on a FIFO). */
  logIsFifo?: boolean;
  exitDir: string;
  tty: boolean;
  stdin: boolean;
  leaveStdinOpen: boolean;
  /** Where conmon writes its own (the monitor's) pid. */
  conmonPidFile: string;
  pidFile: string;
  /** Called once conmon has been told to go on (it then forks and runs `runc create`). */
  onRuncCreate?: () => void;
  /** Where conmonCreate's time goes (ms per step), filled in when given. */
  phases?: Record<string, number>;
  /** Program and args conmon runs when the container exits (tells the daemon). */
  exitCommand?: string[];
}

function baseArgs(paths: ConmonPaths): string[] {
  return [
    '--api-version',
    '1',
    '-r',
    paths.runtime,
    '--runtime-arg',
    `--root=${paths.runcRoot}`,
    '--socket-dir-path',
    paths.socketDir,
    '--log-level',
    'error',
    '--syslog',
  ];
}

/**
 * Starts conmon (posix_spawn from the addon, src/kernel/spawn.ts: no fork of
 * the daemon). A start that fails (ENOENT, EMFILE) is this promise's
 * rejection, never an 'error' event nobody hears.
 */
async function spawnConmon(paths: ConmonPaths, args: string[], fds: number, cwd: string): Promise<ConmonChild> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    _OCI_SYNCPIPE: '3',
    _OCI_STARTPIPE: '4',
  };
  if (fds > 5) env._OCI_ATTACHPIPE = '5';
  const stdio: Array<'ignore' | 'pipe'> = ['ignore', 'pipe', 'pipe'];
  for (let i = 3; i < fds; i++) stdio.push('pipe');
  let child: DetachedChild;
  try {
    // cwd: conmon writes an `oom` file into its working directory when the container is OOM-killed; in the bundle
    // it goes with the container instead of landing wherever the daemon was started.
    child = spawnDetached(paths.conmon, args, { env, stdio, cwd });
  } catch (e) {
    throw new Error(`starting conmon: ${(e as Error).message}`);
  }
  return {
    stdio: child.stdio,
    stdout: child.stdio[1]!,
    stderr: child.stdio[2]!,
    exited: child.exited.then((r) => r.code ?? -1),
  };
}

/** What the callers hold of a conmon they started: its pipes and its (first process's) end. */
interface ConmonChild {
  stdio: Array<Readable | Writable | undefined>;
  stdout: Readable;
  stderr: Readable;
  /** conmon's first process exits once it has forked the monitor (or failed): its exit code. */
  exited: Promise<number>;
}

/**
 * Starts conmon, which runs `runc create`. Resolves with the container's and
 * conmon's pids once the container process exists (not yet started).
 */
export async function conmonCreate(paths: ConmonPaths, o: CreateOptions): Promise<{ pid: number; conmonPid: number }> {
  const args = [
    ...baseArgs(paths),
    '-c',
    o.id,
    '-u',
    o.cuuid,
    '-n',
    o.name,
    '-b',
    o.bundle,
    '-p',
    o.pidFile,
    '--conmon-pidfile',
    o.conmonPidFile,
    // No log path: the `none` log driver keeps nothing.
    '-l',
    o.logPath ? `k8s-file:${o.logPath}` : 'none',
    '--exit-dir',
    o.exitDir,
  ];
  if (o.logIsFifo) args.push('--no-sync-log');
  if (o.tty) args.push('-t');
  if (o.stdin) args.push('-i');
  if (o.stdin && o.leaveStdinOpen) args.push('--leave-stdin-open');
  if (o.exitCommand?.length) {
    args.push('--exit-command', o.exitCommand[0]!);
    for (const a of o.exitCommand.slice(1)) args.push('--exit-command-arg', a);
  }
  let t = performance.now();
  const lap = (name: string): void => {
    const now = performance.now();
    if (o.phases) o.phases[name] = Math.round((now - t) * 10) / 10;
    t = now;
  };
  const child = await spawnConmon(paths, args, 5, o.bundle);
  lap('conmonSpawn');
  const stderr = collect(child.stderr);
  collect(child.stdout);
  const sync = new PipeReader(child.stdio[3] as Readable);
  const startPipe = child.stdio[4] as Writable;
  try {
    startPipe.on('error', () => undefined);
    await writeStart(startPipe);
    lap('conmonStartPipe');
    o.onRuncCreate?.();
    const msg = await sync.next(60_000);
    lap('runcCreate');
    const code = await child.exited;
    lap('conmonExited');
    if (!msg) throw new Error(stderr() || `conmon exited (${code}) before the container was created`);
    if (msg.data < 0)
      throw new Error(ociCreateError(msg.message || stderr() || 'the OCI runtime failed to create the container'));
    const conmonPid = Number(readFileSync(o.conmonPidFile, 'utf8').trim());
    lap('conmonPidFile');
    return { pid: msg.data, conmonPid };
  } finally {
    startPipe.destroy();
    (child.stdio[3] as Readable).destroy();
    child.stdout.destroy();
    child.stderr.destroy();
  }
}

export interface ExecOptions {
  containerId: string;
  execId: string;
  /** The exec session's directory (conmon's bundle: ctl FIFO, attach socket link target). */
  dir: string;
  processSpecPath: string;
  tty: boolean;
  stdin: boolean;
  attach: boolean;
  pidFile: string;
  conmonPidFile: string;
  exitDir: string;
}

export interface ExecHandle {
  pid: number;
  /** Settles with the exec's exit status (or -1 and a message when the runtime failed). */
  exit: Promise<SyncMessage>;
}

/**
 * Runs `runc exec` under conmon. With attach, `onAttachReady` is called once
 * the attach socket listens and must connect before it resolves: the process
 * starts only after that, so no output is lost.
 */
export async function conmonExec(
  paths: ConmonPaths,
  o: ExecOptions,
  onAttachReady?: () => Promise<void>,
): Promise<ExecHandle> {
  const args = [
    ...baseArgs(paths),
    '-c',
    o.containerId,
    '-u',
    o.execId,
    '-b',
    o.dir,
    '-p',
    o.pidFile,
    '--conmon-pidfile',
    o.conmonPidFile,
    '-l',
    'none',
    '--exit-dir',
    o.exitDir,
    '-e',
    '--exec-process-spec',
    o.processSpecPath,
  ];
  if (o.attach) args.push('--exec-attach');
  if (o.tty) args.push('-t');
  if (o.stdin) args.push('-i');
  const child = await spawnConmon(paths, args, o.attach ? 6 : 5, o.dir);
  const stderr = collect(child.stderr);
  collect(child.stdout);
  const sync = new PipeReader(child.stdio[3] as Readable);
  const startPipe = child.stdio[4] as Writable;
  startPipe.on('error', () => undefined);
  const cleanup = (): void => {
    startPipe.destroy();
    (child.stdio[3] as Readable).destroy();
    if (o.attach) (child.stdio[5] as Readable).destroy();
    child.stdout.destroy();
    child.stderr.destroy();
  };
  try {
    await writeStart(startPipe);
    if (o.attach) {
      const attachPipe = new PipeReader(child.stdio[5] as Readable);
      const ready = await attachPipe.next(30_000);
      if (!ready || ready.data < 0)
        throw new Error(ready?.message || stderr() || 'conmon did not open the exec attach socket');
      await onAttachReady?.();
      await writeStart(startPipe);
    }
    const first = await sync.next(60_000);
    if (!first) throw new Error(stderr() || 'conmon exited before the exec process started');
    if (first.data < 0) {
      cleanup();
      return { pid: 0, exit: Promise.resolve(first) };
    }
    const exit = sync.next(0).then((m) => m ?? { data: -1, message: 'conmon exited without an exit status' });
    exit.finally(cleanup).catch(() => undefined);
    return { pid: first.data, exit };
  } catch (e) {
    cleanup();
    throw e;
  }
}

/** Asks conmon to resize the TTY (through the ctl FIFO in its bundle dir). */
export async function resizeTty(bundleDir: string, rows: number, cols: number): Promise<void> {
  const fh = await open(join(bundleDir, 'ctl'), fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
  try {
    await fh.write(`1 ${Math.max(0, Math.floor(rows))} ${Math.max(0, Math.floor(cols))}\n`);
  } finally {
    await fh.close();
  }
}

/** Is this pid a live conmon (and not a recycled pid)? When /proc cannot be read for another reason than the process being gone: yes. */
export async function isConmonAlive(pid: number, id: string): Promise<boolean> {
  if (!pid || pid <= 0) return false;
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    if (/\) Z /.test(stat)) return false;
    return cmdline.includes('conmon') && cmdline.includes(id);
  } catch (e) {
    // Only "no such process" means gone. EMFILE, ENOMEM, EACCES... say nothing
    // about the container: reading them as "gone" would tear down the
    // networking of a running container whenever the daemon is short of fds.
    // So it counts as alive; the exit-dir watch and the next poll look again.
    const code = (e as NodeJS.ErrnoException).code;
    return !(code === 'ENOENT' || code === 'ESRCH');
  }
}

/**
 * The runtime's create error in Docker's words. runc logs in logrus form
 * (`time="..." level=error msg="runc create failed: ... exec: \"x\": ..."`);
 * Docker (containerd's shim) shows the msg, unquoted, as
 * `failed to create shim task: OCI runtime create failed: <msg>: unknown`,
 * and the docker CLI picks its exit code (127, 126) from those words.
 */
export function ociCreateError(raw: string): string {
  const lines = raw.trim().split('\n');
  const msgs: string[] = [];
  for (const line of lines) {
    const m = /\bmsg="((?:[^"\\]|\\.)*)"/.exec(line);
    if (m && /\blevel=(error|fatal)\b/.test(line)) msgs.push(m[1]!.replace(/\\(.)/g, '$1'));
  }
  const text = msgs.length ? msgs[msgs.length - 1]! : raw.trim();
  return `failed to create shim task: OCI runtime create failed: ${text}: unknown`;
}
