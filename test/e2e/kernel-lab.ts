/**
 * A lab for the kernel and driver e2e tests: a network namespace `cvk-*`
 * standing in for the daemon's own netns. The test's main thread moves into
 * it (so every ip/nft it spawns, and every socket it opens, lives there), and
 * fake "containers" are plain namespaces made by src/kernel.
 * Nothing here touches the root namespace: enter() refuses to continue if the
 * main thread did not actually leave it.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { rmSync, readdirSync, existsSync } from 'node:fs';
import { enterNetnsForThisThread, netnsInode, deleteNetns } from '../../src/kernel/netns.js';

export const LAB_ROOT = '/run/cove-cvk';

export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input: input ?? '', stdio: ['pipe', 'pipe', 'pipe'] });
}

export function shOk(cmd: string, args: string[], input?: string): boolean {
  try {
    sh(cmd, args, input);
    return true;
  } catch {
    return false;
  }
}

/** Output and exit code, never throws (for commands expected to fail). */
export function shTry(cmd: string, args: string[], timeoutMs = 10_000): { code: number; out: string } {
  try {
    return { code: 0, out: execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs }) };
  } catch (e) {
    const err = e as { status?: number; stdout?: string; stderr?: string };
    return { code: err.status ?? 1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

/** Run a command inside a netns file. */
export function inNs(path: string, argv: string[]): [string, string[]] {
  return ['nsenter', [`--net=${path}`, '--', ...argv]];
}

export class KernelLab {
  readonly path: string;
  private readonly dir: string;
  private readonly procs: ChildProcess[] = [];
  private readonly extraNetns: string[] = [];

  constructor(readonly name: string) {
    if (!/^cvk[a-z0-9-]{1,10}$/.test(name)) throw new Error(`lab name must start with cvk: ${name}`);
    this.path = `/run/netns/${name}`;
    this.dir = `${LAB_ROOT}/${name}`;
  }

  /** Makes the lab netns and moves this test's main thread into it. */
  enter(): void {
    const startIno = netnsInode('/proc/thread-self/ns/net');
    sh('ip', ['netns', 'add', this.name]);
    enterNetnsForThisThread(this.path);
    const now = netnsInode('/proc/thread-self/ns/net');
    if (now === startIno || now !== netnsInode(this.path)) throw new Error('failed to enter the lab netns');
    sh('ip', ['link', 'set', 'lo', 'up']);
  }

  /** Path for a fake container netns. */
  ns(name: string): string {
    return `${this.dir}/${name}`;
  }

  /** A classic `ip netns` namespace (e.g. an "outside" host), removed by destroy(). */
  addNamedNetns(name: string): string {
    if (!name.startsWith('cvk')) throw new Error('lab names start with cvk');
    sh('ip', ['netns', 'add', name]);
    this.extraNetns.push(name);
    return `/run/netns/${name}`;
  }

  /** Starts a long-running process (e.g. busybox httpd) and remembers its PID for destroy(). */
  start(argv: string[]): ChildProcess {
    const [cmd, ...args] = argv as [string, ...string[]];
    const p = spawn(cmd, args, { stdio: 'ignore' });
    this.procs.push(p);
    return p;
  }

  async destroy(): Promise<void> {
    for (const p of this.procs) {
      if (p.pid && p.exitCode === null && p.signalCode === null) {
        try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
      }
    }
    if (existsSync(this.dir)) {
      for (const f of readdirSync(this.dir)) await deleteNetns(`${this.dir}/${f}`);
      rmSync(this.dir, { recursive: true, force: true });
    }
    for (const n of this.extraNetns) shTry('ip', ['netns', 'del', n]);
    shTry('ip', ['netns', 'del', this.name]);
    try { rmSync(LAB_ROOT); } catch { /* other labs still there */ }
  }
}
