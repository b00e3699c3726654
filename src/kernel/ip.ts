/**
 * Driving iproute2 from Node without one process per command:
 * - IpBatch: a long-lived `ip -force -batch -` co-process (about 50 µs per
 *   command) for the daemon's own netns (or a long-lived netns), with a fence
 *   protocol: after each group of commands an unknown object `fence<seq>` is
 *   written; its "Command failed -:<line>" marks the group done, and any other
 *   "Command failed -:<n>" names the failed input line.
 * - ipBatchOnce: one `ip -batch -` process for a short list inside a netns.
 * - ipJson: reads (`ip -json ...`).
 *
 * Argument-syntax errors kill `ip` even with -force, so callers validate every
 * address and number first (see plan builders); commands are also checked
 * here for newlines. A dead co-process is restarted on the next run().
 */
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { KernelError, kernelErrorCode } from './errors.js';
import { endCoprocess, inNetns, runTool, spawnPiped } from './exec.js';

function checkCommands(commands: string[]): void {
  for (const c of commands) {
    if (c.trim() === '' || /[\n\r\0]/.test(c))
      throw new KernelError('ip -batch', `invalid command ${JSON.stringify(c)}`);
  }
}

interface PendingRun {
  commands: string[];
  firstLine: number;
  fenceLine: number;
  failures: Array<{ command: string; message: string }>;
  resolve: () => void;
  reject: (e: Error) => void;
}

const FAILED = /^Command failed -:(\d+)\s*$/;

export class IpBatch {
  private child: ChildProcessWithoutNullStreams | undefined;
  private line = 0;
  private seq = 0;
  private pending: PendingRun[] = [];
  private buf = '';
  private messages: string[] = [];
  private closed = false;

  /** `tool`: ip, or bridge (fdb entries): both speak the same -batch protocol. */
  constructor(
    readonly netnsPath: string | null,
    readonly tool: 'ip' | 'bridge' = 'ip',
  ) {}

  private start(): ChildProcessWithoutNullStreams {
    // sh merges stderr into stdout so error messages and "Command failed" lines stay in order.
    const argv = inNetns(this.netnsPath, [this.tool, '-force', '-batch', '-']);
    const child = spawnPiped(['sh', '-c', 'exec "$0" "$@" 2>&1', ...argv]);
    this.child = child;
    child.on('error', (e) => this.onExit(child, null, null, e.message));
    this.line = 0;
    this.buf = '';
    this.messages = [];
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s: string) => this.onData(s));
    child.stdin.on('error', () => {
      /* exit handler reports */
    });
    child.on('exit', (code, signal) => this.onExit(child, code, signal));
    return child;
  }

  private onData(s: string): void {
    this.buf += s;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const l = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      const m = FAILED.exec(l);
      if (!m) {
        if (l.trim() !== '') this.messages.push(l);
        continue;
      }
      const n = Number(m[1]);
      const run = this.pending.find((r) => n >= r.firstLine && n <= r.fenceLine);
      const msgs = this.messages;
      this.messages = [];
      if (!run) continue;
      if (n === run.fenceLine) {
        this.pending.splice(this.pending.indexOf(run), 1);
        if (run.failures.length === 0) run.resolve();
        else run.reject(failureError(run.failures, this.tool));
      } else {
        const command = run.commands[n - run.firstLine] ?? '?';
        run.failures.push({ command, message: msgs.join('; ') });
      }
    }
  }

  private onExit(
    child: ChildProcessWithoutNullStreams,
    code: number | null,
    signal: NodeJS.Signals | null,
    errMsg?: string,
  ): void {
    if (this.child !== child) return;
    this.child = undefined;
    const msgs = [...this.messages, this.buf].filter((x) => x.trim() !== '').join('; ');
    const runs = this.pending;
    this.pending = [];
    for (const r of runs) {
      const t = this.tool;
      const what = r.commands.length === 1 ? `${t} ${r.commands[0]}` : `${t} -batch [${r.commands.join(' | ')}]`;
      r.reject(
        new KernelError(
          what,
          `${msgs || errMsg || `${t} exited`} (${t} ${signal ? `killed by ${signal}` : `exited ${code}`}; later commands of this group may not have run)`,
        ),
      );
    }
  }

  /** Runs the commands in order; resolves when all ran, rejects naming each failed command (the others still ran: -force). */
  run(commands: string[]): Promise<void> {
    if (this.closed) return Promise.reject(new KernelError(`${this.tool} -batch`, 'closed'));
    if (commands.length === 0) return Promise.resolve();
    try {
      checkCommands(commands);
    } catch (e) {
      return Promise.reject(e);
    }
    let child: ChildProcessWithoutNullStreams;
    try {
      child = this.child ?? this.start();
    } catch (e) {
      return Promise.reject(e);
    }
    const firstLine = this.line + 1;
    this.line += commands.length + 1;
    const fence = `fence${++this.seq}`;
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ commands, firstLine, fenceLine: this.line, failures: [], resolve, reject });
      child.stdin.write(commands.join('\n') + '\n' + fence + '\n');
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await endCoprocess(this.child);
  }
}

function failureError(failures: Array<{ command: string; message: string }>, tool = 'ip'): KernelError {
  const first = failures[0]!;
  const more =
    failures.length > 1
      ? ` (+${failures.length - 1} more: ${failures
          .slice(1)
          .map((f) => `${tool} ${f.command}: ${f.message}`)
          .join('; ')})`
      : '';
  // The code is the first failure's: later ones are context, not the cause the caller reacts to.
  return new KernelError(`${tool} ${first.command}`, first.message + more, kernelErrorCode(first.message));
}

/** One `ip -batch -` process (inside the netns when given); stops at the first failure and names it. */
export async function ipBatchOnce(netnsPath: string | null, commands: string[]): Promise<void> {
  if (commands.length === 0) return;
  checkCommands(commands);
  const r = await runTool(inNetns(netnsPath, ['ip', '-batch', '-']), commands.join('\n') + '\n');
  if (r.code === 0) return;
  const m = /Command failed -:(\d+)/.exec(r.stderr);
  const failed = m ? commands[Number(m[1]) - 1] : undefined;
  const msg = r.stderr.replace(/Command failed -:\d+\s*/g, '').trim() || r.stdout.trim();
  throw new KernelError(failed ? `ip ${failed}` : `ip -batch [${commands.join(' | ')}]`, msg || `exit ${r.code}`);
}

/** `ip -json ARGS` parsed (inside the netns when given). */
export async function ipJson<T>(netnsPath: string | null, args: string[]): Promise<T> {
  const r = await runTool(inNetns(netnsPath, ['ip', '-json', ...args]));
  if (r.code !== 0) throw new KernelError(`ip ${args.join(' ')}`, r.stderr || r.stdout);
  const text = r.stdout.trim();
  return (text === '' ? [] : JSON.parse(text)) as T;
}
