/**
 * The terminal side of attach / run / exec / start -a: pipes the local
 * stdin to the hijacked connection and the container's output back,
 * demultiplexing Docker's 8-byte frames unless the container has a TTY.
 * With a TTY on our side: raw mode (restored on exit) and window resizes
 * forwarded. Detach keys go to the daemon, which ends the session; we also
 * watch for them so we know the end was a detach.
 */
import type { Socket } from 'node:net';
import { Demuxer } from '../api/stream.js';

export const DEFAULT_DETACH_KEYS = 'ctrl-p,ctrl-q';

/** moby/term ToBytes: "ctrl-p,ctrl-q" → [0x10, 0x11]. */
export function detachKeyBytes(spec: string): Buffer {
  const out: number[] = [];
  for (const raw of spec.split(',')) {
    const key = raw.trim().toLowerCase();
    if (key.length === 1) {
      out.push(key.charCodeAt(0));
      continue;
    }
    const m = /^ctrl-(.)$/.exec(key);
    if (!m) throw new Error(`Invalid detach keys (${spec}) provided`);
    const c = m[1]!;
    if (c >= 'a' && c <= 'z') out.push(c.charCodeAt(0) - 96);
    else {
      const special: Record<string, number> = { '@': 0, '[': 27, '\\': 28, ']': 29, '^': 30, _: 31 };
      if (!(c in special)) throw new Error(`Invalid detach keys (${spec}) provided`);
      out.push(special[c]!);
    }
  }
  return Buffer.from(out);
}

export interface SessionOptions {
  tty: boolean;
  /** Forward local stdin. */
  stdin: boolean;
  detachKeys?: string;
  /** Called with (rows, cols) now and on every local window resize (TTY only). */
  onResize?: (rows: number, cols: number) => void;
}

/** Runs until the connection ends. Resolves whether the session ended by a detach. */
export function pipeSession(socket: Socket, head: Buffer, opts: SessionOptions): Promise<{ detached: boolean }> {
  return new Promise((resolve) => {
    const stdin = process.stdin;
    const rawMode = opts.stdin && opts.tty && stdin.isTTY;
    const detachSeq = opts.tty ? detachKeyBytes(opts.detachKeys || DEFAULT_DETACH_KEYS) : Buffer.alloc(0);
    let recent = Buffer.alloc(0);
    let detached = false;

    const cleanups: Array<() => void> = [];
    if (rawMode) {
      stdin.setRawMode(true);
      cleanups.push(() => stdin.setRawMode(false));
    }
    if (opts.tty && opts.onResize && process.stdout.isTTY) {
      const send = () => opts.onResize!(process.stdout.rows, process.stdout.columns);
      process.stdout.on('resize', send);
      cleanups.push(() => process.stdout.off('resize', send));
      send();
    }

    const demux = new Demuxer((stream, data) => {
      if (stream === 2) process.stderr.write(data);
      else process.stdout.write(data);
    });
    const onOutput = (chunk: Buffer) => {
      if (opts.tty) process.stdout.write(chunk);
      else demux.push(chunk);
    };
    if (head.length) onOutput(head);
    socket.on('data', onOutput);
    socket.resume();

    const onInput = (chunk: Buffer) => {
      if (detachSeq.length) {
        recent = Buffer.concat([recent, chunk]).subarray(-detachSeq.length);
        if (recent.equals(detachSeq)) detached = true;
      }
      socket.write(chunk);
    };
    if (opts.stdin) {
      stdin.on('data', onInput);
      // stdin EOF: half-close, keep reading the container's output.
      const onEnd = () => {
        if (!socket.destroyed) socket.end();
      };
      stdin.once('end', onEnd);
      cleanups.push(() => {
        stdin.off('data', onInput);
        stdin.off('end', onEnd);
        stdin.pause();
      });
      stdin.resume();
    }

    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      for (const c of cleanups) c();
      resolve({ detached });
    };
    socket.once('end', finish);
    socket.once('close', finish);
    socket.once('error', finish);
    // A container that printed nothing and exited while the caller was still
    // starting it: its stream may have ended (and closed) before these
    // listeners existed, even though the socket was paused, since there was
    // no data to hold back. Then nothing above will fire again.
    if (socket.readableEnded || socket.destroyed) finish();
  });
}
