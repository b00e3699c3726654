/**
 * Reading conmon's k8s-file log: one line per record,
 * `<RFC3339Nano time> <stdout|stderr> <F|P> <text>`, where P marks a partial
 * line (no newline yet) and F the end of one. Docker's log options (tail,
 * since/until, timestamps, stream filter, follow) are applied here.
 */
import { open, stat } from 'node:fs/promises';
import type { LogEntry, LogOptions } from '../types.js';
import { logFiles } from './log-rotation.js';

export interface ParsedLine {
  time: string;
  /** Nanoseconds since the epoch, for since/until. */
  ns: bigint;
  stream: 'stdout' | 'stderr';
  partial: boolean;
  text: string;
}

export function parseTimeNs(t: string): bigint {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(t);
  if (!m) return 0n;
  const ms = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(ms)) return 0n;
  const frac = BigInt((m[2] ?? '').padEnd(9, '0') || '0');
  return BigInt(ms) * 1_000_000n + frac;
}

export function parseK8sLine(line: string): ParsedLine | undefined {
  const a = line.indexOf(' ');
  const b = line.indexOf(' ', a + 1);
  const c = line.indexOf(' ', b + 1);
  if (a < 0 || b < 0) return undefined;
  const stream = line.slice(a + 1, b);
  if (stream !== 'stdout' && stream !== 'stderr') return undefined;
  const tag = c < 0 ? line.slice(b + 1) : line.slice(b + 1, c);
  const text = c < 0 ? '' : line.slice(c + 1);
  const time = line.slice(0, a);
  return { time, ns: parseTimeNs(time), stream, partial: tag.includes('P'), text };
}

/** Docker's timestamp format for `logs -t`: RFC3339Nano in UTC. */
export function rfc3339NanoUtc(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  const d = new Date(ms).toISOString().slice(0, 19);
  const frac = (ns % 1_000_000_000n).toString().padStart(9, '0').replace(/0+$/, '');
  return `${d}${frac ? '.' + frac : ''}Z`;
}

/** Joins partial records into entries (one entry per line of output, newline kept). */
function toEntries(lines: ParsedLine[]): LogEntry[] {
  const out: LogEntry[] = [];
  const open: Partial<Record<'stdout' | 'stderr', { time: string; parts: string[] }>> = {};
  for (const l of lines) {
    const cur = open[l.stream] ?? { time: l.time, parts: [] };
    cur.parts.push(l.text);
    if (l.partial) {
      open[l.stream] = cur;
      continue;
    }
    delete open[l.stream];
    out.push({
      stream: l.stream,
      time: rfc3339NanoUtc(parseTimeNs(cur.time)),
      data: Buffer.from(cur.parts.join('') + '\n'),
    });
  }
  return out;
}

interface Cursor {
  offset: number;
  rest: string;
  /** The inode read so far: a different one at the path means the log rotated. */
  ino?: number;
}

async function readFrom(path: string, cur: Cursor, expectIno?: number): Promise<{ lines: ParsedLine[]; ino?: number }> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch {
    return { lines: [] };
  }
  try {
    const st = await fh.stat();
    if (expectIno !== undefined && st.ino !== expectIno) return { lines: [], ino: st.ino };
    if (st.size < cur.offset) {
      cur.offset = 0; // truncated
      cur.rest = '';
    }
    if (st.size === cur.offset) return { lines: [], ino: st.ino };
    const buf = Buffer.alloc(st.size - cur.offset);
    await fh.read(buf, 0, buf.length, cur.offset);
    cur.offset = st.size;
    const text = cur.rest + buf.toString('utf8');
    const lines = text.split('\n');
    cur.rest = lines.pop() ?? '';
    return { lines: lines.map(parseK8sLine).filter((x): x is ParsedLine => !!x), ino: st.ino };
  } finally {
    await fh.close();
  }
}

/**
 * New lines of the log at `path`. When the file there is no longer the one
 * the cursor read (rotated: log-rotation.ts renamed it to `path.1`), the rest
 * of the old file is read first, then the new one from its start.
 */
async function readNew(path: string, cur: Cursor): Promise<ParsedLine[]> {
  const now = await stat(path).then(
    (s) => s.ino,
    () => undefined,
  );
  if (cur.ino !== undefined && now !== undefined && now !== cur.ino) {
    const tail = await readFrom(`${path}.1`, cur, cur.ino);
    cur.offset = 0;
    cur.rest = '';
    cur.ino = undefined;
    const fresh = await readFrom(path, cur);
    cur.ino = fresh.ino;
    return [...tail.lines, ...fresh.lines];
  }
  const r = await readFrom(path, cur);
  if (r.ino !== undefined) cur.ino = r.ino;
  return r.lines;
}

/** The lines of the rotated files (oldest first), read whole. */
async function readRotated(path: string): Promise<ParsedLine[]> {
  const out: ParsedLine[] = [];
  // One push per line: spreading a rotated file's lines as arguments overflows the stack (a 20 MiB file is ~200k lines).
  for (const f of (await logFiles(path)).slice(0, -1))
    for (const l of (await readFrom(f, { offset: 0, rest: '' })).lines) out.push(l);
  return out;
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
  const keep = (e: { stream: string; time: string }): boolean => {
    if (e.stream === 'stdout' && !opts.stdout) return false;
    if (e.stream === 'stderr' && !opts.stderr) return false;
    const ns = parseTimeNs(e.time);
    if (sinceNs && ns < sinceNs) return false;
    if (untilNs && ns > untilNs) return false;
    return true;
  };
  const cur: Cursor = { offset: 0, rest: '' };
  let pending: ParsedLine[] = [];
  const drain = (lines: ParsedLine[]): LogEntry[] => {
    // Hold back a trailing partial record until its line completes.
    const all = [...pending, ...lines];
    let cut = all.length;
    const seenFull = new Set<string>();
    for (let i = all.length - 1; i >= 0; i--) {
      const l = all[i]!;
      if (!l.partial) seenFull.add(l.stream);
      else if (!seenFull.has(l.stream)) cut = Math.min(cut, i);
    }
    pending = all.slice(cut);
    return toEntries(all.slice(0, cut));
  };
  let entries = drain([...(await readRotated(path)), ...(await readNew(path, cur))]).filter(keep);
  const tail = opts.tail === 'all' || opts.tail === '' || opts.tail === undefined ? -1 : Number.parseInt(opts.tail, 10);
  if (tail >= 0 && !Number.isNaN(tail)) entries = tail === 0 ? [] : entries.slice(-tail);
  for (const e of entries) yield e;
  if (!opts.follow || !follow) {
    for (const e of toEntries(pending).filter(keep)) yield e;
    return;
  }
  for (;;) {
    const live = follow.isLive();
    const fresh = drain(await readNew(path, cur)).filter(keep);
    for (const e of fresh) {
      if (untilNs && parseTimeNs(e.time) > untilNs) return;
      yield e;
    }
    if (!live) {
      // One last read after the stop, then the partial leftovers.
      for (const e of drain(await readNew(path, cur)).filter(keep)) yield e;
      for (const e of toEntries(pending).filter(keep)) yield e;
      return;
    }
    if (untilNs && BigInt(Date.now()) * 1_000_000n > untilNs) return;
    await follow.changed(250);
  }
}

export async function logSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}
