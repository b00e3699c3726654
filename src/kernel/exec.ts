/** Spawning kernel tools (ip, nft), optionally inside a netns through nsenter. */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { KernelError } from './errors.js';

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** argv to run `argv` inside the netns at `netnsPath` (null = this process's netns). */
export function inNetns(netnsPath: string | null | undefined, argv: string[]): string[] {
  if (netnsPath === null || netnsPath === undefined) return argv;
  if (!netnsPath.startsWith('/') || /[\0\n]/.test(netnsPath))
    throw new KernelError('nsenter', `netns path must be absolute: ${netnsPath}`);
  return ['nsenter', `--net=${netnsPath}`, '--', ...argv];
}

/**
 * spawn() with three pipes that never leaves an 'error' nobody hears. Out of
 * fds (EMFILE/ENFILE) Node returns a child without stdio and emits 'error' on
 * the next tick: touching child.stdout would throw before any listener exists,
 * and the unheard 'error' would end the daemon. Here that is a KernelError,
 * thrown at once; other spawn failures (ENOENT...) reach the caller's 'error'
 * listener as usual.
 */
export function spawnPiped(argv: string[]): ChildProcessWithoutNullStreams {
  const [cmd, ...args] = argv as [string, ...string[]];
  let child: ChildProcessWithoutNullStreams;
  try {
    child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (e) {
    throw new KernelError(argv.join(' '), (e as Error).message);
  }
  if (!child.stdin || !child.stdout || !child.stderr) {
    let why = 'could not start (no file descriptors left?)';
    child.on('error', (e) => {
      why = e.message;
    });
    throw new KernelError(argv.join(' '), why);
  }
  return child;
}

export function runTool(argv: string[], input?: string): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawnPiped(argv);
    child.on('error', (e) => reject(new KernelError(argv.join(' '), e.message)));
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('close', (code, signal) => {
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
      });
    });
    child.stdin.on('error', () => {
      /* reported through exit code */
    });
    child.stdin.end(input ?? '');
  });
}

/** Ends a long-lived co-process (ip -batch, nft -i) by closing its stdin, and waits for it to exit. */
export async function endCoprocess(child: ChildProcessWithoutNullStreams | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.stdin.end();
  });
}
