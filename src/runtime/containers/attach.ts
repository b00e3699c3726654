/**
 * IoSession over conmon's attach socket: output packets carry a one-byte
 * stream prefix (2 stdout, 3 stderr); stdin bytes go through as they are,
 * scanned for the detach keys (Docker's ctrl-p,ctrl-q by default), which end
 * the session as 'detached' and leave the process running.
 */
import { PassThrough, Writable } from 'node:stream';
import { SeqpacketSocket } from '../../kernel/seqpacket.js';
import { InvalidParameter } from '../../common/errors.js';
import type { IoSession } from '../types.js';

const STDOUT_PIPE = 2;
const STDERR_PIPE = 3;

/** Docker's detach-keys notation ("ctrl-p,ctrl-q", "a,ctrl-@") to bytes. */
export function parseDetachKeys(spec: string | undefined): Buffer {
  const s = spec === undefined || spec === '' ? 'ctrl-p,ctrl-q' : spec;
  const out: number[] = [];
  for (const key of s.split(',')) {
    const k = key.trim();
    if (k.length === 1) {
      out.push(k.charCodeAt(0));
      continue;
    }
    const m = /^ctrl-(.)$/i.exec(k);
    if (!m) throw new InvalidParameter(`Invalid detach keys (${s}) provided`);
    const c = m[1]!;
    if (/[a-z]/i.test(c)) out.push(c.toLowerCase().charCodeAt(0) - 96);
    else {
      const special: Record<string, number> = { '@': 0, '[': 27, '\\': 28, ']': 29, '^': 30, _: 31 };
      if (!(c in special)) throw new InvalidParameter(`Invalid detach keys (${s}) provided`);
      out.push(special[c]!);
    }
  }
  return Buffer.from(out);
}

/**
 * Finds the detach sequence in a stream of input chunks. Bytes that might
 * start the sequence are held back until it is clear they do not.
 */
export class DetachScanner {
  private held: number[] = [];
  constructor(private readonly keys: Buffer) {}

  /** Returns the bytes to pass on, and whether the sequence was completed. */
  feed(chunk: Buffer): { pass: Buffer; detached: boolean } {
    if (!this.keys.length) return { pass: chunk, detached: false };
    const pass: number[] = [];
    for (const b of chunk) {
      if (b === this.keys[this.held.length]) {
        this.held.push(b);
        if (this.held.length === this.keys.length) {
          this.held = [];
          return { pass: Buffer.from(pass), detached: true };
        }
        continue;
      }
      if (this.held.length) {
        pass.push(...this.held);
        this.held = [];
        if (b === this.keys[0]) {
          this.held.push(b);
          continue;
        }
      }
      pass.push(b);
    }
    return { pass: Buffer.from(pass), detached: false };
  }
}

export interface AttachSessionOptions {
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  detachKeys?: string;
  /**
   * When the client's input ends: true closes the process's stdin and keeps
   * streaming output until it exits (Docker's StdinOnce without a TTY, and
   * exec); false ends the session, leaving the process and its stdin alone.
   */
  closeStdinOnEof?: boolean;
  resize: (rows: number, cols: number) => Promise<void>;
  /** Awaited before `done` settles as 'exited' (exec: its exit code must be known first). */
  exitGate?: () => Promise<unknown>;
}

export class AttachSession implements IoSession {
  readonly tty: boolean;
  readonly stdout: PassThrough | null;
  readonly stderr: PassThrough | null;
  readonly stdin: Writable | null;
  readonly done: Promise<'exited' | 'detached' | 'closed'>;
  private settle!: (v: 'exited' | 'detached' | 'closed') => void;
  private socket: SeqpacketSocket | null = null;
  private pending: Buffer[] = [];
  private stdinEnded = false;
  private finished = false;
  private readonly scanner: DetachScanner;
  private readonly opts: AttachSessionOptions;

  constructor(opts: AttachSessionOptions) {
    this.opts = opts;
    this.tty = opts.tty;
    this.scanner = new DetachScanner(parseDetachKeys(opts.detachKeys));
    this.stdout = opts.stdout || (opts.tty && opts.stderr) ? new PassThrough() : null;
    this.stderr = opts.stderr && !opts.tty ? new PassThrough() : null;
    this.done = new Promise((resolve) => {
      this.settle = resolve;
    });
    this.stdin = opts.stdin
      ? new Writable({
          write: (chunk: Buffer, _enc, cb) => {
            if (this.finished) return cb();
            const { pass, detached } = this.scanner.feed(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
            if (pass.length) this.send(pass);
            if (detached) this.finish('detached');
            cb();
          },
          final: (cb) => {
            this.stdinEnded = true;
            if (this.opts.closeStdinOnEof) {
              // conmon closes the process's stdin when our side stops writing.
              if (this.socket) this.socket.end();
            } else {
              this.finish('closed');
            }
            cb();
          },
        })
      : null;
    this.stdin?.on('error', () => undefined);
  }

  /** True once the session ended (detached, closed or the process exited). */
  get ended(): boolean {
    return this.finished;
  }

  private send(buf: Buffer): void {
    if (this.socket) this.socket.write(buf);
    else this.pending.push(buf);
  }

  /** Writes earlier output (attach with logs=true) before the live stream. */
  replay(stream: 'stdout' | 'stderr', data: Buffer): void {
    const target = stream === 'stderr' && !this.tty ? this.stderr : this.stdout;
    if (stream === 'stdout' && !this.opts.stdout) return;
    if (stream === 'stderr' && !this.opts.stderr) return;
    target?.write(data);
  }

  /** Connects to conmon's attach socket; output flows from here on. */
  async connect(path: string): Promise<void> {
    if (this.finished) return;
    const sock = await SeqpacketSocket.connect(path);
    if (this.finished) {
      sock.destroy();
      return;
    }
    sock.on('error', () => this.onSocketEnd());
    sock.on('data', (buf: Buffer) => {
      if (!buf.length) return;
      const kind = buf[0];
      const data = buf.subarray(1);
      if (kind === STDOUT_PIPE) {
        if (this.opts.stdout || this.tty) this.stdout?.write(data);
      } else if (kind === STDERR_PIPE) {
        if (this.tty) this.stdout?.write(data);
        else if (this.opts.stderr) this.stderr?.write(data);
      }
    });
    sock.on('close', () => this.onSocketEnd());
    this.socket = sock;
    for (const b of this.pending.splice(0)) sock.write(b);
    if (this.stdinEnded && this.opts.closeStdinOnEof) sock.end();
  }

  private onSocketEnd(): void {
    if (this.finished) return;
    const gate = this.opts.exitGate?.() ?? Promise.resolve();
    void gate.catch(() => undefined).then(() => this.finish('exited'));
  }

  /** Ends the session without a live process (a stopped container, or logs-only attach). */
  endExited(): void {
    this.finish('exited');
  }

  async resize(rows: number, cols: number): Promise<void> {
    await this.opts.resize(rows, cols);
  }

  private finish(how: 'exited' | 'detached' | 'closed'): void {
    if (this.finished) return;
    this.finished = true;
    const sock = this.socket;
    this.socket = null;
    if (sock) {
      try {
        sock.destroy();
      } catch {
        // already closed
      }
    }
    this.stdout?.end();
    this.stderr?.end();
    this.settle(how);
  }

  close(): void {
    this.finish('closed');
  }
}
