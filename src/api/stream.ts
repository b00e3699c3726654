/**
 * Docker's stdio stream framing and the glue between an IoSession and a
 * hijacked connection.
 *
 * Without a TTY, output is multiplexed: each frame is an 8-byte header
 * [STREAM, 0, 0, 0, SIZE (uint32 big-endian)] then SIZE bytes
 * (STREAM 0 = stdin, 1 = stdout, 2 = stderr). With a TTY, bytes go raw.
 */
import type { Readable, Writable } from 'node:stream';
import type { IoSession } from '../runtime/types.js';
import type { Hijacked } from './reply.js';

export const RAW_STREAM = 'application/vnd.docker.raw-stream';
export const MULTIPLEXED_STREAM = 'application/vnd.docker.multiplexed-stream';

export function frame(stream: 0 | 1 | 2, data: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(data.length, 4);
  return Buffer.concat([header, data]);
}

/** Parses multiplexed frames incrementally (used by the CLI and tests). */
export class Demuxer {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly onFrame: (stream: number, data: Buffer) => void) {}
  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf.length >= 8) {
      const size = this.buf.readUInt32BE(4);
      if (this.buf.length < 8 + size) break;
      this.onFrame(this.buf[0]!, this.buf.subarray(8, 8 + size));
      this.buf = this.buf.subarray(8 + size);
    }
  }
}

/** Copies one output stream to the connection, framed unless TTY; resolves when it ends. */
function pump(src: Readable | null, out: Writable, stream: 1 | 2, tty: boolean): Promise<void> {
  if (!src) return Promise.resolve();
  return new Promise((resolve) => {
    src.on('data', (chunk: Buffer | string) => {
      const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      if (data.length === 0) return;
      const ok = out.write(tty ? data : frame(stream, data));
      if (!ok) {
        src.pause();
        out.once('drain', () => src.resume());
      }
    });
    src.once('end', resolve);
    src.once('close', resolve);
    src.once('error', () => resolve());
  });
}

/**
 * How long output waits after the connection was taken over. docker-py (so
 * docker-compose) parses the 101 answer with a buffered reader and then reads
 * the raw socket underneath it: output that arrives in the same read as the
 * headers is lost (`compose exec` printed nothing about one time in two).
 * Docker never shows this because it starts the process only after answering;
 * our process is already running, so its first bytes wait a moment instead.
 */
export const HIJACK_SETTLE_MS = 25;

/**
 * Runs a session over a hijacked connection until it ends:
 * client bytes → session.stdin (client half-close → stdin end),
 * session stdout/stderr → client; the connection ends when the output ends
 * or the session is detached; the session is closed if the client leaves.
 */
export function runSession(session: IoSession, conn: Hijacked, opts: { stdin: boolean }): Promise<void> {
  return new Promise((resolve) => {
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      conn.end();
      resolve();
    };
    conn.onClose(() => {
      if (!finished) {
        finished = true;
        session.close();
        resolve();
      }
    });
    if (opts.stdin && session.stdin) {
      const stdin = session.stdin;
      stdin.on('error', () => {});
      conn.in.on('data', (chunk: Buffer) => {
        if (!finished && !stdin.writableEnded && !stdin.destroyed) stdin.write(chunk);
      });
      conn.in.on('end', () => {
        // Client half-close = stdin EOF, but not once the session is over:
        // after a detach the process keeps its stdin.
        if (!finished && !stdin.writableEnded && !stdin.destroyed) stdin.end();
      });
    } else {
      // Drain whatever the client sends so the connection never stalls.
      conn.in.resume();
    }
    // Output starts a moment after the 101 answer (see HIJACK_SETTLE_MS); it waits in the session's streams meanwhile.
    const outputs = new Promise((r) => setTimeout(r, HIJACK_SETTLE_MS)).then(() =>
      Promise.all([
        pump(session.stdout, conn.out, 1, session.tty),
        pump(session.tty ? null : session.stderr, conn.out, 2, false),
      ]),
    );
    const hasOutput = Boolean(session.stdout || (!session.tty && session.stderr));
    // A broken pump (client gone) ends the session too; never an unhandled rejection.
    if (hasOutput) void outputs.then(finish, finish);
    void session.done.then((how) => {
      // Output streams end on exit by themselves; after a detach they stay
      // open (the process runs on), so end the connection here.
      if (how !== 'exited' || !hasOutput) setImmediate(finish);
      else setTimeout(finish, 2000).unref();
    }, finish);
  });
}
