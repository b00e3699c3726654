/**
 * nftables from Node.
 * - nftApply: one atomic transaction (the whole script applies or nothing
 *   does), run in-process by libnftables inside the target netns (the addon's
 *   nftRun: ~1 ms), or, where the library cannot be loaded, by one spawned
 *   `nft -f -` (10-20 ms, and nsenter's exec too for another netns).
 * - NetnsNft: transactions into one sandbox's netns, run beside those of
 *   other netns (the addon's `shared` calls), without a co-process.
 * - NftSession: a long-lived `nft -i` co-process; each line is one atomic
 *   transaction (0.2 ms instead of 3-17 ms for a spawned nft). Lines are
 *   followed by a fence `fence <n>` (a syntax error whose echo we await).
 * - nftListJson: `nft -j list ...` parsed.
 */
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { KernelError } from './errors.js';
import { endCoprocess, inNetns, runTool, spawnPiped } from './exec.js';
import { addon, type NetnsAddon } from './native.js';

/** The addon when its libnftables is usable; null (spawn nft) otherwise. Decided once. */
let inProcess: NetnsAddon | null | undefined;
function libnftables(): NetnsAddon | null {
  if (inProcess !== undefined) return inProcess;
  try {
    const a = addon();
    inProcess = a.nftAvailable() === null ? a : null;
  } catch {
    inProcess = null;
  }
  return inProcess;
}

/** True when transactions run in-process (libnftables through the addon), not through a spawned or co-process nft. */
export function nftInProcess(): boolean {
  return libnftables() !== null;
}

/** `list tables` in a netns (null: this thread's): "family name" of each table. */
export async function nftTables(netnsPath: string | null, opts: NftApplyOptions = {}): Promise<Set<string>> {
  const lib = libnftables();
  let out: string;
  if (lib) {
    const r = await libRun(lib, netnsPath, 'list tables', opts.shared ?? false);
    if (r.rc !== 0) throw new KernelError('nft list tables', r.errors.trim());
    out = r.output;
  } else {
    const r = await runTool(inNetns(netnsPath, ['nft', 'list', 'tables']));
    if (r.code !== 0) throw new KernelError('nft list tables', r.stderr || r.stdout);
    out = r.stdout;
  }
  const have = new Set<string>();
  for (const l of out.split('\n')) {
    const m = /^table (\S+) (\S+)$/.exec(l.trim());
    if (m) have.add(`${m[1]} ${m[2]}`);
  }
  return have;
}

/** One libnftables call (see native/nft.c): nft's return code, output and error texts. */
function libRun(
  lib: NetnsAddon,
  netnsPath: string | null,
  script: string,
  shared: boolean,
): Promise<{ rc: number; output: string; errors: string }> {
  if (netnsPath !== null && (!netnsPath.startsWith('/') || netnsPath.includes('\0')))
    return Promise.reject(new KernelError('nft -f', `netns path must be absolute: ${netnsPath}`, 'EINVAL'));
  return new Promise((resolve, reject) => {
    try {
      lib.nftRun(
        netnsPath,
        script,
        (err, code, out, errs) => {
          if (err !== null) reject(new KernelError('nft -f', err));
          else resolve({ rc: code ?? -1, output: out ?? '', errors: errs ?? '' });
        },
        shared,
      );
    } catch (e) {
      // The netns could not be opened (gone: ENOENT).
      reject(new KernelError('nft -f', e instanceof Error ? e.message : String(e)));
    }
  });
}

export interface NftApplyOptions {
  /**
   * Run beside other shared calls (libnftables in-process only; see native/nft.c): for callers that keep at
   * most one transaction per netns in flight, e.g. NetnsNft. Default: one libnftables call at a time.
   */
  shared?: boolean;
}

/** Applies `script` as ONE transaction (inside the netns when given): libnftables in-process, else `nft -f -`. */
export async function nftApply(
  script: string,
  netnsPath: string | null = null,
  opts: NftApplyOptions = {},
): Promise<void> {
  if (script.trim() === '') return;
  const lib = libnftables();
  if (lib) {
    const { rc, errors } = await libRun(lib, netnsPath, script, opts.shared ?? false);
    if (rc !== 0) throw new KernelError('nft -f', summarizeNftError(errors, script));
    return;
  }
  const r = await runTool(inNetns(netnsPath, ['nft', '-f', '-']), script);
  if (r.code !== 0) throw new KernelError('nft -f', summarizeNftError(r.stderr || r.stdout, script));
}

/**
 * nftables in one sandbox's netns, for a daemon that programs many of them (the service load balancer): each
 * transaction is one libnftables call of its own on a pool thread (`shared`: calls into different netns run side
 * by side, the kernel's commit lock being per netns), queued behind the previous one of this netns. No
 * co-process per netns (an `nft -i` each would be 50 processes beside 50 services); where libnftables is
 * missing, one spawned `nft` per call.
 */
export class NetnsNft {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly netnsPath: string) {
    if (!netnsPath.startsWith('/') || netnsPath.includes('\0'))
      throw new KernelError('nft', `netns path must be absolute: ${netnsPath}`, 'EINVAL');
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** One atomic transaction (an `nft -f` script). */
  apply(script: string): Promise<void> {
    return this.serial(() => nftApply(script, this.netnsPath, { shared: true }));
  }

  /** `list tables`: "family name" of each table in the netns. */
  tables(): Promise<Set<string>> {
    return this.serial(() => nftTables(this.netnsPath, { shared: true }));
  }
}

/** nft's error output is long (it echoes the script line and carets); keep the error and the offending line. */
function summarizeNftError(out: string, script: string): string {
  const lines = out.split('\n');
  const errs: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.includes('Error:')) {
      const echo = lines[i + 1]?.trim();
      errs.push(echo ? `${l.replace(/^.*?Error:/, 'Error:')} [${echo}]` : l);
    }
  }
  const text = errs.join('; ') || out.trim();
  return text.length > 2000 ? text.slice(0, 2000) + '…' : text || `failed to apply: ${script.slice(0, 200)}`;
}

/** `nft -j ARGS` (e.g. ['list', 'table', 'inet', 'cove']) parsed; `nftables` array of the result. */
export async function nftListJson(args: string[], netnsPath: string | null = null): Promise<unknown> {
  const r = await runTool(inNetns(netnsPath, ['nft', '-j', ...args]));
  if (r.code !== 0) throw new KernelError(`nft ${args.join(' ')}`, r.stderr || r.stdout);
  return JSON.parse(r.stdout || '{"nftables":[]}');
}

/** True when `table FAMILY NAME` exists. */
export async function nftTableExists(family: string, name: string, netnsPath: string | null = null): Promise<boolean> {
  const r = await runTool(inNetns(netnsPath, ['nft', 'list', 'tables', family]));
  if (r.code !== 0) throw new KernelError('nft list tables', r.stderr);
  return r.stdout.split('\n').some((l) => l.trim() === `table ${family} ${name}`);
}

interface PendingTx {
  lines: string[];
  fence: string;
  errors: string[];
  output: string[];
  resolve: (out: string) => void;
  reject: (e: Error) => void;
}

/** A long-lived `nft -i`: every line is one atomic transaction. Restarts if nft dies. */
export class NftSession {
  private child: ChildProcessWithoutNullStreams | undefined;
  private pending: PendingTx[] = [];
  private buf = '';
  private seq = 0;
  private closed = false;
  private lastError: string | undefined;

  constructor(readonly netnsPath: string | null = null) {}

  private start(): ChildProcessWithoutNullStreams {
    const argv = inNetns(this.netnsPath, ['nft', '-i']);
    const child = spawnPiped(['sh', '-c', 'exec "$0" "$@" 2>&1', ...argv]);
    this.child = child;
    child.on('error', (e) => this.onExit(child, e.message));
    this.buf = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s: string) => this.onData(s));
    child.stdin.on('error', () => {
      /* exit handler reports */
    });
    child.on('exit', (code) => this.onExit(child, `nft -i exited ${code}`));
    return child;
  }

  private onData(s: string): void {
    this.buf += s;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const l = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      const tx = this.pending[0];
      if (!tx) continue;
      if (l.startsWith('Error:')) {
        this.lastError = l;
        continue;
      }
      if (this.lastError !== undefined) {
        // The line after an error is the echo of the failing input line (then a caret line).
        const err = this.lastError;
        this.lastError = undefined;
        if (l === tx.fence) {
          this.pending.shift();
          if (tx.errors.length)
            tx.reject(
              new KernelError(
                `nft ${tx.errors[0]!.split(' :: ')[0]}`,
                tx.errors.map((e) => e.split(' :: ')[1]).join('; '),
              ),
            );
          else tx.resolve(tx.output.join('\n'));
        } else {
          tx.errors.push(`${l} :: ${err}`);
        }
        continue;
      }
      if (/^\s*\^+\s*$/.test(l)) continue;
      tx.output.push(l);
    }
  }

  private onExit(child: ChildProcessWithoutNullStreams, why: string): void {
    if (this.child !== child) return;
    this.child = undefined;
    const txs = this.pending;
    this.pending = [];
    for (const t of txs) t.reject(new KernelError('nft -i', why));
  }

  /** Runs each line as its own transaction; rejects naming the failed line(s). Resolves with any output. */
  run(lines: string[]): Promise<string> {
    if (this.closed) return Promise.reject(new KernelError('nft -i', 'closed'));
    for (const l of lines) {
      if (/[\n\r\0]/.test(l) || l.trim() === '' || /^fence /.test(l))
        return Promise.reject(new KernelError('nft -i', `invalid line ${JSON.stringify(l)}`));
    }
    if (lines.length === 0) return Promise.resolve('');
    let child: ChildProcessWithoutNullStreams;
    try {
      child = this.child ?? this.start();
    } catch (e) {
      return Promise.reject(e);
    }
    const fence = `fence ${++this.seq}`;
    return new Promise<string>((resolve, reject) => {
      this.pending.push({ lines, fence, errors: [], output: [], resolve, reject });
      child.stdin.write(lines.join('\n') + '\n' + fence + '\n');
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await endCoprocess(this.child);
  }
}

/** `nft list ...` as text (diagnostics: what the kernel has, not what we meant to give it). */
export async function nftListText(args: string[], netnsPath: string | null = null): Promise<string> {
  const r = await runTool(inNetns(netnsPath, ['nft', 'list', ...args]));
  if (r.code !== 0) throw new KernelError(`nft list ${args.join(' ')}`, r.stderr || r.stdout);
  return r.stdout;
}
