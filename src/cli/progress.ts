/**
 * Renders Docker's JSON progress stream as the docker CLI does (moby
 * pkg/jsonmessage): on a terminal one line per layer ID, redrawn in place
 * with the progress bar; otherwise each status line once, bars left out.
 */
import type { Readable } from 'node:stream';
import { CliError } from './client.js';
import { progressBar } from '../runtime/distribution/progress.js';

interface Msg {
  id?: string;
  status?: string;
  stream?: string;
  progressDetail?: { current?: number; total?: number; start?: number };
  aux?: Record<string, unknown>;
  error?: string;
  errorDetail?: { message?: string };
}

export async function renderProgress(
  res: Readable,
  write: (t: string) => void,
  tty: boolean,
  onAux?: (aux: Record<string, unknown>) => void,
): Promise<void> {
  const lines = new Map<string, number>();
  let count = 0;
  const width = tty ? process.stderr.columns || process.stdout.columns || 200 : 200;
  const show = (m: Msg): void => {
    if (m.errorDetail || m.error) throw new CliError(String(m.errorDetail?.message ?? m.error));
    if (m.aux) {
      onAux?.(m.aux);
      return;
    }
    if (m.stream) {
      write(m.stream);
      return;
    }
    const detail = m.progressDetail ?? {};
    const bar = detail.current || detail.total ? progressBar(detail, width) : '';
    if (!tty) {
      if (bar) return; // docker leaves progress bars out when not on a terminal
      write(`${m.id ? `${m.id}: ` : ''}${m.status ?? ''}\n`);
      return;
    }
    if (m.id) {
      let diff = 0;
      const at = lines.get(m.id);
      if (at === undefined) {
        lines.set(m.id, count++);
        write('\n');
        diff = 1;
      } else {
        diff = count - at;
      }
      write(`\x1b[${diff}A\x1b[2K\r${m.id}: ${m.status ?? ''}${bar ? ' ' + bar : ''}\x1b[${diff}B\r`);
      return;
    }
    lines.clear();
    count = 0;
    write(`\x1b[2K\r${m.status ?? ''}\n`);
  };
  let buf = '';
  for await (const chunk of res) {
    buf += (chunk as Buffer).toString('utf8');
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) show(JSON.parse(line) as Msg);
    }
  }
  if (buf.trim()) show(JSON.parse(buf) as Msg);
}
