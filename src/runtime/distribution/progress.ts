/**
 * Docker's JSON progress messages (moby pkg/jsonmessage): what the daemon
 * streams for pull and push, and what docker's CLI (and ours) renders.
 */
export interface ProgressDetail {
  current?: number;
  total?: number;
  start?: number;
}

export interface JsonMessage {
  id?: string;
  status?: string;
  progressDetail?: ProgressDetail;
  progress?: string;
  aux?: Record<string, unknown>;
  error?: string;
  errorDetail?: { message: string };
}

export type ProgressSink = (m: JsonMessage) => void;

/** go-units HumanSize: 4 significant digits, 1000-based. */
export function humanSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let i = 0;
  let s = n;
  while (s >= 1000 && i < units.length - 1) {
    s /= 1000;
    i++;
  }
  return `${Number(s.toPrecision(4))}${units[i]}`;
}

/** JSONProgress.String() at the daemon's width: `[====>     ]  1.2MB/3.4MB`. */
export function progressBar(p: ProgressDetail, width = 200, now = Date.now()): string {
  const cur = p.current ?? 0;
  const total = p.total ?? 0;
  if (cur <= 0 && total <= 0) return '';
  if (total <= 0) return humanSize(cur).padStart(8);
  let pct = Math.floor(Math.floor((cur / total) * 100) / 2);
  if (pct > 50) pct = 50;
  const bar = width > 110 ? `[${'='.repeat(pct)}>${' '.repeat(Math.max(0, 50 - pct))}] ` : '';
  const numbers = cur > total ? humanSize(cur).padStart(8) : `${humanSize(cur).padStart(8)}/${humanSize(total)}`;
  let left = '';
  if (cur > 0 && p.start && pct < 50 && width > 50) {
    const fromStart = now / 1000 - p.start;
    const secs = Math.floor(((total - cur) * fromStart) / cur);
    left = ' ' + goDuration(secs);
  }
  return bar + numbers + left;
}

function goDuration(secs: number): string {
  if (secs <= 0) return '0s';
  const h = Math.floor(secs / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = secs % 60;
  return (h ? `${h}h` : '') + (h || m ? `${m}m` : '') + `${s}s`;
}

export const shortId = (digest: string): string => digest.replace(/^sha256:/, '').slice(0, 12);

/** A progress line for one layer. */
export function layerProgress(id: string, status: string, current: number, total: number, start: number): JsonMessage {
  const detail = { current, total, start };
  return { status, progressDetail: detail, progress: progressBar(detail), id };
}

/**
 * Throttles per-layer progress lines to a few per second so a fast local
 * registry does not flood the stream (docker does the same).
 */
export function throttled(sink: ProgressSink, everyMs = 100): (m: JsonMessage, force?: boolean) => void {
  const last = new Map<string, number>();
  return (m, force) => {
    const key = `${m.id ?? ''}/${m.status ?? ''}`;
    const now = Date.now();
    if (!force && now - (last.get(key) ?? 0) < everyMs) return;
    last.set(key, now);
    sink(m);
  };
}
