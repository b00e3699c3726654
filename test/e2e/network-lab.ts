/**
 * The lab of the network-controller e2e tests: a network namespace `cvn-*`
 * stands in for the daemon's own netns. The test's main thread moves into it,
 * so every ip/nft the drivers spawn, every bridge, every published-port
 * socket and every DNS forward lives there; containers are namespaces the
 * controller makes under the lab's exec root. destroy() removes all of it.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { rmSync, readdirSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { enterNetnsForThisThread, netnsInode, deleteNetns } from '../../src/kernel/netns.js';

export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input: input ?? '', stdio: ['pipe', 'pipe', 'pipe'], timeout: 20_000 });
}

/** Output and exit code, never throws. */
export function shTry(cmd: string, args: string[], timeoutMs = 10_000): { code: number; out: string } {
  try {
    return { code: 0, out: execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs }) };
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
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

/** argv of a command run inside a netns file (network namespace only). */
export function inNs(path: string, argv: string[]): [string, string[]] {
  return ['nsenter', [`--net=${path}`, '--', ...argv]];
}

export class NetLab {
  readonly path: string;
  readonly root: string;
  private readonly procs: ChildProcess[] = [];
  private readonly extraNetns: string[] = [];

  constructor(readonly name: string) {
    if (!/^cvn-[a-z0-9-]{1,10}$/.test(name)) throw new Error(`lab name must start with cvn-: ${name}`);
    this.path = `/run/netns/${name}`;
    this.root = `/tmp/cvn-lab/${name}`;
  }

  get execRoot(): string {
    return join(this.root, 'run');
  }

  get dataRoot(): string {
    return join(this.root, 'data');
  }

  /** Makes the lab netns, moves this thread into it, lo up. Refuses to go on if the move did not happen. */
  enter(): void {
    const before = netnsInode('/proc/thread-self/ns/net');
    mkdirSync(this.root, { recursive: true });
    sh('ip', ['netns', 'add', this.name]);
    enterNetnsForThisThread(this.path);
    const now = netnsInode('/proc/thread-self/ns/net');
    if (now === before || now !== netnsInode(this.path)) throw new Error('failed to enter the lab netns');
    sh('ip', ['link', 'set', 'lo', 'up']);
  }

  /** One more classic named netns (e.g. a host on a LAN), removed by destroy(). */
  addNamedNetns(name: string): string {
    if (!name.startsWith('cvn-')) throw new Error('lab names start with cvn-');
    sh('ip', ['netns', 'add', name]);
    this.extraNetns.push(name);
    return `/run/netns/${name}`;
  }

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
    const nsDir = join(this.execRoot, 'netns');
    if (existsSync(nsDir)) for (const f of readdirSync(nsDir)) await deleteNetns(join(nsDir, f)).catch(() => undefined);
    rmSync(this.root, { recursive: true, force: true });
    for (const n of this.extraNetns) shTry('ip', ['netns', 'del', n]);
    shTry('ip', ['netns', 'del', this.name]);
    try { rmSync('/tmp/cvn-lab'); } catch { /* other labs */ }
  }
}
