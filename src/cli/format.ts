/**
 * Docker's output formatting: the tabwriter its tables go through
 * (minwidth 10, padding 3, spaces), human durations and sizes (go-units),
 * and `--format` handling (table / json / Go templates).
 */
import { parseTemplate, render, goJson, TemplateError } from './template.js';
import { CliError } from './client.js';

/**
 * Go's text/tabwriter as docker configures it: NewWriter(out, 10, 1, 3, ' ', 0).
 * Each tab-terminated cell is padded to max(10, widest cell in its column + 3);
 * the text after the last tab of a line is not padded.
 */
export function tabwrite(text: string): string {
  const lines = text.split('\n');
  const rows = lines.map((l) => l.split('\t'));
  const out: string[] = [];
  // Column blocks: consecutive lines that have a cell (tab-terminated) in column c.
  const widthFor = (row: number, col: number): number => {
    let start = row;
    while (start > 0 && rows[start - 1]!.length - 1 > col) start--;
    let end = row;
    while (end < rows.length - 1 && rows[end + 1]!.length - 1 > col) end++;
    let w = 0;
    for (let r = start; r <= end; r++) w = Math.max(w, [...rows[r]![col]!].length);
    return Math.max(10, w + 3);
  };
  for (let r = 0; r < rows.length; r++) {
    const cells = rows[r]!;
    let line = '';
    for (let c = 0; c < cells.length; c++) {
      const cell = cells[c]!;
      if (c < cells.length - 1) line += cell + ' '.repeat(widthFor(r, c) - [...cell].length);
      else line += cell;
    }
    out.push(line);
  }
  return out.join('\n');
}

/** go-units HumanDuration. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.floor(seconds / 60);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.floor(ms / 3_600_000 + 0.5);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(ms / 3_600_000 / 24 / 365)} years`;
}

/** Go's %.Ng: N significant digits, trailing zeros dropped. */
function goG(x: number, precision: number): string {
  let s = x.toPrecision(precision);
  if (s.includes('e')) {
    const [m, e] = s.split('e') as [string, string];
    const mant = m.includes('.') ? m.replace(/0+$/, '').replace(/\.$/, '') : m;
    const exp = Number(e);
    return `${mant}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  if (s.includes('.')) s = s.replace(/0+$/, '').replace(/\.$/, '');
  return s;
}

/** go-units HumanSizeWithPrecision (decimal units), as `docker images` shows sizes. */
export function humanSize(bytes: number, precision = 3): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'];
  let i = 0;
  let size = bytes;
  while (size >= 1000 && i < units.length - 1) {
    size /= 1000;
    i++;
  }
  return goG(size, precision) + units[i];
}

/** Go's time.Time.String() of an RFC 3339 date: "2026-11-28 04:00:16.046448105 +0000 UTC". */
export function goTimeString(iso: string): string {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.exec(iso);
  if (!m) return iso;
  const frac = m[3] ? m[3].replace(/0+$/, '').replace(/\.$/, '') : '';
  const zone = m[4] === 'Z' ? '+0000 UTC' : `${m[4]!.replace(':', '')} ${m[4]!.replace(':', '')}`;
  return `${m[1]} ${m[2]}${frac} ${zone}`;
}

/** Docker's "2026-11-28 05:23:14 +0000 UTC" for a unix time in seconds. */
export function unixTimeString(sec: number): string {
  return new Date(sec * 1000)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, ' +0000 UTC');
}

export interface ListFormat {
  /** Field → header text, for `table` formats. */
  headers: Record<string, string>;
  /** The default table template. */
  defaultTable: string;
  /** The field -q prints. */
  quietField: string;
}

/**
 * Renders rows (objects of strings, docker's "context" values) in the
 * requested format: '' or 'table' → the default table, 'table TEMPLATE',
 * 'json' → one JSON object per line, or a plain Go template per row.
 */
export function formatList(
  rows: Array<Record<string, unknown>>,
  format: string | undefined,
  spec: ListFormat,
  quiet = false,
): string {
  let fmt = format ?? '';
  if (quiet && !fmt) fmt = `{{.${spec.quietField}}}`;
  if (fmt === '' || fmt === 'table') fmt = spec.defaultTable;
  if (fmt === 'json') fmt = '{{json .}}';
  const isTable = fmt.startsWith('table');
  if (isTable) fmt = fmt.slice(5).trimStart();
  fmt = fmt.replace(/\\t/g, '\t').replace(/\\n/g, '\n');
  let nodes;
  try {
    nodes = parseTemplate(fmt);
  } catch (e) {
    throw new CliError(`template parsing error: ${(e as Error).message}`);
  }
  const lines: string[] = [];
  try {
    if (isTable && !quiet) lines.push(render(nodes, spec.headers));
    for (const row of rows) lines.push(render(nodes, row));
  } catch (e) {
    if (e instanceof TemplateError) throw new CliError(`template: ${e.message}`);
    throw e;
  }
  if (lines.length === 0) return '';
  const text = lines.join('\n');
  return (isTable ? tabwrite(text) : text) + '\n';
}

/** docker inspect's default output: a JSON array indented with 4 spaces. */
export function inspectJson(values: unknown[]): string {
  return goIndent(values) + '\n';
}

export function goIndent(v: unknown): string {
  return JSON.stringify(v, null, 4).replace(/[<>&]/g, (c) => ({ '<': '\\u003c', '>': '\\u003e', '&': '\\u0026' })[c]!);
}

/** inspect -f TEMPLATE: one rendered line per object. */
export function formatEach(values: unknown[], format: string): string {
  let nodes;
  try {
    nodes = parseTemplate(format.replace(/\\t/g, '\t').replace(/\\n/g, '\n'));
  } catch (e) {
    throw new CliError(`template parsing error: ${(e as Error).message}`);
  }
  try {
    return values.map((v) => render(nodes, v) + '\n').join('');
  } catch (e) {
    if (e instanceof TemplateError) throw new CliError(`template: ${e.message}`);
    throw e;
  }
}

export { goJson };

/** Sorts keys, so {{json .}} of a context matches Go's map encoding. */
export function sortedObject(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.keys(o)
      .sort()
      .map((k) => [k, o[k]]),
  );
}

const isDigit = (c: number): boolean => c >= 48 && c <= 57;

/**
 * Natural ("version") order, as docker sorts network, volume and service names: Go's
 * github.com/fvbommel/sortorder NaturalLess, as a comparator. Runs of digits compare as numbers (fewer
 * leading zeros first on a tie), digits before other characters, everything else by code unit (Go compares
 * UTF-8 bytes: the same order for the names docker allows). Not localeCompare: that loads ICU's collator
 * (~10 ms of a CLI call) and orders letters by case-folded locale rules ('a' < 'B'), where docker has 'B' < 'a'.
 */
export function naturalLess(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const c1 = a.charCodeAt(i);
    const c2 = b.charCodeAt(j);
    const d1 = isDigit(c1);
    if (d1 !== isDigit(c2)) return d1 ? -1 : 1;
    if (!d1) {
      if (c1 !== c2) return c1 - c2;
      i++;
      j++;
      continue;
    }
    while (i < a.length && a.charCodeAt(i) === 48) i++;
    while (j < b.length && b.charCodeAt(j) === 48) j++;
    const nz1 = i;
    const nz2 = j;
    while (i < a.length && isDigit(a.charCodeAt(i))) i++;
    while (j < b.length && isDigit(b.charCodeAt(j))) j++;
    if (i - nz1 !== j - nz2) return i - nz1 - (j - nz2);
    const n1 = a.slice(nz1, i);
    const n2 = b.slice(nz2, j);
    if (n1 !== n2) return n1 < n2 ? -1 : 1;
    if (nz1 !== nz2) return nz1 - nz2;
  }
  return a.length - i - (b.length - j);
}
