/**
 * Long-lived `ip -force -batch -` and `nft -i` co-processes in one netns, so the
 * floor pays the kernel's cost per command and not a process start (measured
 * here: ~0.05 ms per ip command and ~0.2 ms per nft transaction, against ~3 ms
 * per spawn; shared/reference/kernel-floor-and-node-findings.md §5a).
 *
 * Completion is detected with a fence after each group of lines: an unknown
 * object for ip (`Command failed -:<its line>`), a listing of a table that does
 * not exist for nft (its error echoes the fence's name). Output before the fence
 * is an error of the group.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';

abstract class Coprocess {
  private proc: ChildProcessWithoutNullStreams | undefined;
  private buf = '';
  private waiting:
    { done: (out: string) => void; fail: (e: Error) => void; match: (buf: string) => number } | undefined;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly netnsPath: string,
    private readonly cmd: string,
  ) {}

  private ensure(): ChildProcessWithoutNullStreams {
    if (this.proc && this.proc.exitCode === null) return this.proc;
    this.buf = '';
    this.onRestart();
    // sh -c '... 2>&1' keeps errors and their line reports in order on one stream.
    const p = spawn('nsenter', [`--net=${this.netnsPath}`, 'sh', '-c', `exec ${this.cmd} 2>&1`], { stdio: 'pipe' });
    p.stdout.setEncoding('utf8');
    p.stdout.on('data', (d: string) => {
      this.buf += d;
      const w = this.waiting;
      if (!w) return;
      const end = w.match(this.buf);
      if (end >= 0) {
        const out = this.buf.slice(0, end);
        this.buf = this.buf.slice(end);
        this.waiting = undefined;
        w.done(out);
      }
    });
    p.on('exit', (code) => {
      const w = this.waiting;
      this.waiting = undefined;
      w?.fail(new Error(`${this.cmd} exited (${code}): ${this.buf.trim().slice(0, 300)}`));
    });
    p.stdin.on('error', () => undefined);
    this.proc = p;
    return p;
  }

  protected onRestart(): void {}
  protected abstract fence(lines: number): { line: string; match: (buf: string) => number };
  protected abstract errorsIn(out: string): string | undefined;

  /** Sends the lines and resolves when they have all been applied; rejects with the tool's error. */
  run(lines: string[]): Promise<void> {
    const next = this.queue.then(
      () =>
        new Promise<void>((resolve, reject) => {
          const p = this.ensure();
          const f = this.fence(lines.length);
          this.waiting = {
            match: f.match,
            done: (out) => {
              const err = this.errorsIn(out);
              if (err)
                reject(
                  new Error(`${this.cmd}: ${err.trim().slice(0, 400)} (input: ${lines.join(' ; ').slice(0, 300)})`),
                );
              else resolve();
            },
            fail: reject,
          };
          p.stdin.write(lines.join('\n') + '\n' + f.line + '\n');
        }),
    );
    this.queue = next.catch(() => undefined);
    return next;
  }

  close(): void {
    this.proc?.stdin.end();
    this.proc?.kill('SIGKILL');
    this.proc = undefined;
  }
}

export class IpCoprocess extends Coprocess {
  private line = 0;
  constructor(netnsPath: string) {
    // nsenter --net (not ip -n): `netns add` must bind-mount in the shared mount namespace.
    super(netnsPath, 'ip -force -batch -');
  }
  protected override onRestart(): void {
    this.line = 0;
  }
  protected fence(lines: number): { line: string; match: (buf: string) => number } {
    this.line += lines + 1; // ip counts input lines from the start of the stream
    const marker = `Command failed -:${this.line}\n`;
    return {
      line: `fence${this.line}`,
      match: (buf) => {
        const i = buf.indexOf(marker);
        return i < 0 ? -1 : i + marker.length;
      },
    };
  }
  protected errorsIn(out: string): string | undefined {
    const rest = out.replace(/Object "fence\d+" is unknown, try "ip help"\.\nCommand failed -:\d+\n$/, '');
    return rest.trim() ? rest : undefined;
  }
}

export class NftCoprocess extends Coprocess {
  private seq = 0;
  constructor(netnsPath: string) {
    super(netnsPath, 'nft -i');
  }
  protected fence(): { line: string; match: (buf: string) => number } {
    const name = `cvbfence${++this.seq}`;
    const line = `list table ip ${name}`;
    return {
      line,
      match: (buf) => {
        const i = buf.indexOf(`${line}\n`);
        if (i < 0) return -1;
        const caret = buf.indexOf('\n', i + line.length + 1); // the ^^^ line after the echo
        return caret < 0 ? -1 : caret + 1;
      },
    };
  }
  protected errorsIn(out: string): string | undefined {
    // Strip the fence's own "Error: No such file or directory" (the last Error: line before the echo).
    const idx = out.lastIndexOf('Error:');
    const rest = idx >= 0 ? out.slice(0, idx) : out;
    return rest.trim() ? rest : undefined;
  }
}
