/**
 * Reading a container's log for `logs` and attach's log replay. Two on-disk
 * formats, told apart line by line:
 *  - Docker's json-file, written by json-log-writer.ts:
 *    `{"log":"text\n","stream":"stdout","time":"<RFC3339Nano UTC>"}`; a "log"
 *    without its "\n" is a partial message, joined with the next one.
 *  - conmon's k8s-file (the `local` driver, and json-file containers started
 *    before the writer existed): `<RFC3339Nano time> <stdout|stderr> <F|P> <text>`,
 *    where P marks a partial line.
 * Files are streamed one after the other, oldest rotated file first, in
 * chunks (a 1M-line log is never held whole); `--tail N` seeks back N lines
 * from the end first, as Docker's tail does (then the stream and time
 * filters apply). Files are opened before reading, so a rotation while
 * reading renames what is read but changes nothing in it; follow keeps the
 * current file open and moves to the new one once the old one is done.
 */
import { open, stat, type FileHandle } from 'node:fs/promises';
import type { LogEntry, LogOptions } from '../types.js';
import { logFiles } from './log-rotation.js';

export interface ParsedLine {
  /** Docker's form: RFC3339Nano in UTC. */
  time: string;
  stream: 'stdout' | 'stderr';
  partial: boolean;
  /** The text without its line end (or, from the fast path, `data`: the text with its line end, not copied). */
  text?: string;
  data?: Buffer;
}

export function parseTimeNs(t: string): bigint {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(t);
  if (!m) return 0n;
  const ms = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(ms)) return 0n;
  const frac = BigInt((m[2] ?? '').padEnd(9, '0') || '0');
  return BigInt(ms) * 1_000_000n + frac;
}

/** Docker's timestamp format for `logs -t`: RFC3339Nano in UTC. */
export function rfc3339NanoUtc(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  const d = new Date(ms).toISOString().slice(0, 19);
  const frac = (ns % 1_000_000_000n).toString().padStart(9, '0').replace(/0+$/, '');
  return `${d}${frac ? '.' + frac : ''}Z`;
}

export function parseK8sLine(line: string): (ParsedLine & { ns: bigint }) | undefined {
  const a = line.indexOf(' ');
  const b = line.indexOf(' ', a + 1);
  const c = line.indexOf(' ', b + 1);
  if (a < 0 || b < 0) return undefined;
  const stream = line.slice(a + 1, b);
  if (stream !== 'stdout' && stream !== 'stderr') return undefined;
  const tag = c < 0 ? line.slice(b + 1) : line.slice(b + 1, c);
  const text = c < 0 ? '' : line.slice(c + 1);
  const ns = parseTimeNs(line.slice(0, a));
  return { time: rfc3339NanoUtc(ns), ns, stream, partial: tag.includes('P'), text };
}

export function parseJsonLine(line: string): ParsedLine | undefined {
  let o: { log?: unknown; stream?: unknown; time?: unknown };
  try {
    o = JSON.parse(line) as typeof o;
  } catch {
    return undefined;
  }
  if (typeof o.log !== 'string' || (o.stream !== 'stdout' && o.stream !== 'stderr')) return undefined;
  const partial = !o.log.endsWith('\n');
  return {
    time: typeof o.time === 'string' ? o.time : '',
    stream: o.stream,
    partial,
    text: partial ? o.log : o.log.slice(0, -1),
  };
}

export function parseLogLine(line: string): ParsedLine | undefined {
  return line.startsWith('{') ? parseJsonLine(line) : parseK8sLine(line);
}

const JSON_HEAD = Buffer.from('{"log":"');
const JSON_STREAM = Buffer.from('","stream":"std');
const JSON_TIME = Buffer.from('","time":"');

/**
 * The common json-file line, read without JSON.parse or a copy: a text with
 * no escape but its final `\n`, written as cove-logger and dockerd write it.
 * The `\n` escape is turned into the newline byte in place and the entry's
 * data is a view of the chunk. Anything else: undefined (the slow path).
 */
export function fastJsonLine(buf: Buffer, a: number, b: number): ParsedLine | undefined {
  if (b - a < 40 || !bytesAt(buf, a, JSON_HEAD)) return undefined;
  const textStart = a + JSON_HEAD.length;
  const mid = buf.indexOf(JSON_STREAM, textStart);
  if (mid < 0 || mid >= b) return undefined;
  let slash = -1;
  for (let i = textStart; i < mid; i++)
    if (buf[i] === 0x5c) {
      slash = i;
      break;
    }
  const partial = slash < 0;
  if (!partial && (slash !== mid - 2 || buf[mid - 1] !== 0x6e)) return undefined;
  const so = mid + JSON_STREAM.length;
  const stream = buf[so] === 0x6f ? 'stdout' : buf[so] === 0x65 ? 'stderr' : undefined;
  // `out` or `err`, then `","time":"`
  if (!stream || !bytesAt(buf, so + 3, JSON_TIME)) return undefined;
  if (buf[b - 1] !== 0x7d || buf[b - 2] !== 0x22) return undefined;
  const time = buf.toString('latin1', so + 3 + JSON_TIME.length, b - 2);
  if (partial) return { time, stream, partial, text: buf.toString('utf8', textStart, mid) };
  buf[mid - 2] = 10;
  return { time, stream, partial, data: buf.subarray(textStart, mid - 1) };
}

function bytesAt(buf: Buffer, at: number, want: Buffer): boolean {
  for (let i = 0; i < want.length; i++) if (buf[at + i] !== want[i]) return false;
  return true;
}

function textOf(l: ParsedLine): string {
  return l.text ?? l.data!.toString('utf8', 0, l.data!.length - 1);
}

/** Joins partial lines into entries (one entry per line of output, newline kept). */
class Assembler {
  private readonly open: Partial<Record<'stdout' | 'stderr', { time: string; parts: string[] }>> = {};

  push(l: ParsedLine): LogEntry | undefined {
    const cur = this.open[l.stream];
    if (l.partial) {
      if (cur) cur.parts.push(textOf(l));
      else this.open[l.stream] = { time: l.time, parts: [textOf(l)] };
      return undefined;
    }
    if (!cur) return { stream: l.stream, time: l.time, data: l.data ?? Buffer.from(l.text + '\n') };
    delete this.open[l.stream];
    cur.parts.push(textOf(l));
    return { stream: l.stream, time: cur.time, data: Buffer.from(cur.parts.join('') + '\n') };
  }

  /** What never got its line end (the container ended mid-line): as Docker, without one. */
  leftovers(): LogEntry[] {
    const out: LogEntry[] = [];
    for (const stream of ['stdout', 'stderr'] as const) {
      const cur = this.open[stream];
      if (cur) out.push({ stream, time: cur.time, data: Buffer.from(cur.parts.join('')) });
      delete this.open[stream];
    }
    return out;
  }
}

const CHUNK = 1 << 20;
const EMPTY = Buffer.alloc(0);

interface Cursor {
  offset: number;
  /** Bytes after the last line end read (a line still being written). */
  rest: Buffer;
}

/** The complete lines from the cursor to the file's end now, a chunk at a time, parsed. */
async function* linesFrom(fh: FileHandle, cur: Cursor): AsyncGenerator<ParsedLine[]> {
  for (;;) {
    const buf = Buffer.allocUnsafe(CHUNK);
    const { bytesRead } = await fh.read(buf, 0, CHUNK, cur.offset);
    if (!bytesRead) return;
    cur.offset += bytesRead;
    const data = cur.rest.length ? Buffer.concat([cur.rest, buf.subarray(0, bytesRead)]) : buf.subarray(0, bytesRead);
    const nl = data.lastIndexOf(10);
    if (nl < 0) {
      cur.rest = Buffer.from(data);
      continue;
    }
    cur.rest = nl + 1 < data.length ? Buffer.from(data.subarray(nl + 1)) : EMPTY;
    const out: ParsedLine[] = [];
    for (let a = 0; a <= nl;) {
      const b = data.indexOf(10, a);
      const p = fastJsonLine(data, a, b) ?? parseLogLine(data.toString('utf8', a, b));
      if (p) out.push(p);
      a = b + 1;
    }
    yield out;
  }
}

interface OpenFile {
  fh: FileHandle;
  size: number;
  ino: number;
}

async function openLog(path: string): Promise<OpenFile | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch {
    return undefined;
  }
  const st = await fh.stat();
  return { fh, size: st.size, ino: st.ino };
}

/** Where the last `n` lines of the files begin: the file's index and offset. */
async function tailStart(files: OpenFile[], n: number): Promise<{ idx: number; offset: number }> {
  const last = files.length - 1;
  if (n === 0) return { idx: last, offset: files[last]!.size };
  // The line end before the first line we want is the (n+1)-th from the end.
  let seen = 0;
  const block = Buffer.allocUnsafe(64 * 1024);
  for (let i = last; i >= 0; i--) {
    let pos = files[i]!.size;
    while (pos > 0) {
      const from = Math.max(0, pos - block.length);
      const { bytesRead } = await files[i]!.fh.read(block, 0, pos - from, from);
      for (let j = bytesRead - 1; j >= 0; j--) {
        if (block[j] === 10 && ++seen === n + 1) return { idx: i, offset: from + j + 1 };
      }
      pos = from;
    }
  }
  return { idx: 0, offset: 0 };
}

/**
 * The file written after the one with inode `ino` (which a rotation renamed
 * to `path.N`): `path.N-1`, or `path`; the oldest kept when `ino` is gone
 * (rotated away: what it held is lost, as in Docker).
 */
async function nextFile(path: string, ino: number): Promise<OpenFile | undefined> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const names = await logFiles(path);
    const inos = await Promise.all(
      names.map((n) =>
        stat(n).then(
          (s) => s.ino,
          () => -1,
        ),
      ),
    );
    const idx = inos.indexOf(ino);
    const want = idx >= 0 ? idx + 1 : 0;
    if (want >= names.length) return openLog(path);
    const f = await openLog(names[want]!);
    if (f && f.ino === inos[want]) return f;
    await f?.fh.close();
  }
  return openLog(path);
}

export interface FollowControl {
  /** True while more output may still come (the container runs). */
  isLive(): boolean;
  /** Resolves when something changed (new output or the container stopped), or after a while. */
  changed(ms: number): Promise<void>;
}

export async function* readLogs(path: string, opts: LogOptions, follow?: FollowControl): AsyncGenerator<LogEntry> {
  const sinceNs = opts.since && opts.since > 0 ? BigInt(Math.floor(opts.since * 1e9)) : 0n;
  const untilNs = opts.until && opts.until > 0 ? BigInt(Math.floor(opts.until * 1e9)) : 0n;
  const keep = (e: LogEntry): boolean => {
    if (e.stream === 'stdout' && !opts.stdout) return false;
    if (e.stream === 'stderr' && !opts.stderr) return false;
    if (sinceNs || untilNs) {
      const ns = parseTimeNs(e.time);
      if (sinceNs && ns < sinceNs) return false;
      if (untilNs && ns > untilNs) return false;
    }
    return true;
  };
  const asm = new Assembler();
  const files: OpenFile[] = [];
  for (const name of await logFiles(path)) {
    const f = await openLog(name);
    if (f) files.push(f);
  }
  let current: OpenFile | undefined;
  const cur: Cursor = { offset: 0, rest: EMPTY };
  try {
    if (files.length) {
      const tail =
        opts.tail === 'all' || opts.tail === '' || opts.tail === undefined ? -1 : Number.parseInt(opts.tail, 10);
      const start = tail >= 0 && !Number.isNaN(tail) ? await tailStart(files, tail) : { idx: 0, offset: 0 };
      for (let i = start.idx; i < files.length; i++) {
        const f = files[i]!;
        const c: Cursor = i === files.length - 1 ? cur : { offset: 0, rest: EMPTY };
        c.offset = i === start.idx ? start.offset : 0;
        for await (const lines of linesFrom(f.fh, c))
          for (const p of lines) {
            const e = asm.push(p);
            if (e && keep(e)) yield e;
          }
      }
      current = files[files.length - 1];
    }
    if (!opts.follow || !follow) {
      for (const e of asm.leftovers()) if (keep(e)) yield e;
      return;
    }
    let active = false;
    let drainedAfterRename = false;
    for (;;) {
      const live = follow.isLive();
      let got = false;
      if (!current) {
        current = await openLog(path);
        cur.offset = 0;
        cur.rest = EMPTY;
      }
      if (current) {
        // max-file 1 truncates the file in place.
        if ((await current.fh.stat()).size < cur.offset) {
          cur.offset = 0;
          cur.rest = EMPTY;
        }
        for await (const lines of linesFrom(current.fh, cur)) {
          got = true;
          for (const p of lines) {
            const e = asm.push(p);
            if (!e || !keep(e)) continue;
            if (untilNs && parseTimeNs(e.time) > untilNs) return;
            yield e;
          }
        }
        const now = await stat(path).then(
          (s) => s.ino,
          () => undefined,
        );
        // Rotated: once the old file gave nothing more, go on with the one written after it, from its start.
        // Its last lines may have come after the read above and before the rename seen here (the writer
        // renames a file after its last write to it): so read it once more, after seeing the rename.
        if (now !== undefined && now !== current.ino && !got && !drainedAfterRename) {
          drainedAfterRename = true;
          continue;
        }
        if (now !== undefined && now !== current.ino && !got) {
          drainedAfterRename = false;
          const next = await nextFile(path, current.ino);
          await current.fh.close();
          current = next;
          cur.offset = 0;
          cur.rest = EMPTY;
          active = true;
          continue;
        }
      }
      if (!live && !got) {
        for (const e of asm.leftovers()) if (keep(e)) yield e;
        return;
      }
      if (untilNs && BigInt(Date.now()) * 1_000_000n > untilNs) return;
      // While output flows, look again soon: a small max-size with few files rotates a file away in well under a second.
      if (!got) await follow.changed(active ? 50 : 250);
      active = got;
    }
  } finally {
    for (const f of files) await f.fh.close().catch(() => undefined);
    if (current && !files.includes(current)) await current.fh.close().catch(() => undefined);
  }
}

export async function logSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}
