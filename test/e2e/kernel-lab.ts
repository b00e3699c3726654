/**
 * The labs of the in-process e2e tests (kernel, drivers, network controller):
 * a network namespace standing in for the daemon's own netns. The test's main
 * thread moves into it, so every ip/nft it spawns and every socket it opens
 * lives there; fake "containers" are plain namespaces made by src/kernel.
 * Nothing here touches the root namespace: enter() refuses to continue if the
 * main thread did not actually leave it. destroy() removes everything.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { rmSync, readdirSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { enterNetnsForThisThread, netnsInode, deleteNetns } from '../../src/kernel/netns.js';

export const LAB_ROOT = '/run/cove-cvk';

export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, {
    encoding: 'utf8',
    input: input ?? '',
    stdio: ['pipe', 'pipe', 'pipe'],
    timeout: 20_000,
  });
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
    return {
      code: 0,
      out: execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs }),
    };
  } catch (e) {
    const err = e as { status?: number; stdout?: string; stderr?: string };
    return { code: err.status ?? 1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

/**
 * Output and exit code without blocking the event loop: needed whenever the
 * command talks to a server in this process (the embedded DNS, published ports).
 */
export function run(cmd: string, args: string[], timeoutMs = 10_000): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err
        ? typeof (err as { code?: unknown }).code === 'number'
          ? (err as { code: number }).code
          : 1
        : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

/** argv of a command run inside a netns file (network namespace only). */
export function inNs(path: string, argv: string[]): [string, string[]] {
  return ['nsenter', [`--net=${path}`, '--', ...argv]];
}

/** A lab namespace named `<prefix>...`, with its files under `root` and its netns files in `nsDir`. */
export class NsLab {
  readonly path: string;
  private readonly procs: ChildProcess[] = [];
  private readonly extraNetns: string[] = [];

  protected constructor(
    readonly name: string,
    private readonly prefix: string,
    readonly root: string,
    private readonly nsDir: string,
  ) {
    if (!new RegExp(`^${prefix}[a-z0-9-]{1,10}$`).test(name))
      throw new Error(`lab name must start with ${prefix}: ${name}`);
    this.path = `/run/netns/${name}`;
  }

  /** Makes the lab netns, moves this test's main thread into it, lo up. */
  enter(): void {
    const before = netnsInode('/proc/thread-self/ns/net');
    mkdirSync(this.root, { recursive: true });
    sh('ip', ['netns', 'add', this.name]);
    enterNetnsForThisThread(this.path);
    const now = netnsInode('/proc/thread-self/ns/net');
    if (now === before || now !== netnsInode(this.path)) throw new Error('failed to enter the lab netns');
    sh('ip', ['link', 'set', 'lo', 'up']);
  }

  /** A classic `ip netns` namespace (e.g. an "outside" host or a LAN host), removed by destroy(). */
  addNamedNetns(name: string): string {
    if (!name.startsWith(this.prefix)) throw new Error(`lab names start with ${this.prefix}`);
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
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    if (existsSync(this.nsDir))
      for (const f of readdirSync(this.nsDir)) await deleteNetns(join(this.nsDir, f)).catch(() => undefined);
    rmSync(this.root, { recursive: true, force: true });
    for (const n of this.extraNetns) shTry('ip', ['netns', 'del', n]);
    shTry('ip', ['netns', 'del', this.name]);
    try {
      rmSync(dirname(this.root));
    } catch {
      /* other labs still there */
    }
  }
}

/** The kernel and driver tests' lab (`cvk*`): fake container netns files under /run/cove-cvk/<name>. */
export class KernelLab extends NsLab {
  constructor(name: string) {
    super(name, 'cvk', `${LAB_ROOT}/${name}`, `${LAB_ROOT}/${name}`);
  }

  /** Path for a fake container netns. */
  ns(name: string): string {
    return `${this.root}/${name}`;
  }
}
