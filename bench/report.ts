/**
 * Turns a BenchResults into: plain-text tables for stdout, a Markdown report,
 * and an SVG chart of the scaling curves (workloads 5 and 6), written by hand.
 * Every figure carries its ratio to the floor and to each peer. Pure functions.
 */
import type { BenchResults, MetricRecord, WorkloadRecord } from './results.js';
import { formatNumber, formatRatio, ratio, summarize, type Summary } from './stats.js';

export const PEER_ENGINES = ['docker', 'podman'];

/** Targets in run order, and which of them are peers (their engine is docker or podman). */
export function targetOrder(r: BenchResults): { all: string[]; peers: string[] } {
  const all = Object.keys(r.targets);
  return { all, peers: all.filter((t) => PEER_ENGINES.includes(r.targets[t]!)) };
}

export interface Row {
  metric: MetricRecord;
  target: string;
  summary: Summary;
  /** column name (floor or a peer target) -> this row's median / that target's median */
  ratios: Record<string, number | undefined>;
}

export function rowsOf(r: BenchResults, w: WorkloadRecord): Row[] {
  const { all, peers } = targetOrder(r);
  const cols = ['floor', ...peers];
  const rows: Row[] = [];
  for (const m of w.metrics) {
    const med = (t: string) => summarize(m.samples[t] ?? [])?.median;
    for (const t of all) {
      const s = summarize(m.samples[t] ?? []);
      if (!s) continue;
      const ratios: Record<string, number | undefined> = {};
      for (const c of cols) ratios[c] = ratio(s.median, med(c));
      rows.push({ metric: m, target: t, summary: s, ratios });
    }
  }
  return rows;
}

function unitLabel(m: MetricRecord): string {
  return `${m.unit}${m.better === 'higher' ? ', higher is better' : ''}`;
}

// ---------- targets (Cove's goals; reported, not asserted) ----------

export interface TargetCheck {
  goal: string;
  measured: string;
  met: boolean | undefined;
  /** The table row the goal is about, to print the verdict next to it. */
  where?: { workload: number; key: string; target: string; short: string };
}

function metricOf(r: BenchResults, workload: number, key: string): MetricRecord | undefined {
  return r.workloads.find((w) => w.id === workload)?.metrics.find((m) => m.key === key);
}

function medianOf(r: BenchResults, workload: number, key: string, target: string): number | undefined {
  return summarize(metricOf(r, workload, key)?.samples[target] ?? [])?.median;
}

/** The engine's first target that has samples for this metric (cove-api before cove-cli). */
function coveTarget(r: BenchResults, workload: number, key: string, prefer: string[]): string | undefined {
  const m = metricOf(r, workload, key);
  return prefer.find((t) => (m?.samples[t]?.length ?? 0) > 0);
}

export function checkTargets(r: BenchResults): TargetCheck[] {
  const out: TargetCheck[] = [];
  const limit = (
    goal: string,
    workload: number,
    key: string,
    max: number,
    unit: string,
    prefer = ['cove-api', 'cove-cli'],
    higher = false,
  ) => {
    const short = `${higher ? '≥' : '≤'} ${formatNumber(max)} ${unit}`;
    const t = coveTarget(r, workload, key, prefer);
    const s = t ? summarize(metricOf(r, workload, key)?.samples[t] ?? []) : undefined;
    const v = s?.median;
    const range = s && s.n > 1 ? `; ${formatNumber(s.min)}–${formatNumber(s.max)} over ${s.n}` : '';
    out.push({
      goal,
      measured: v === undefined ? 'not measured' : `${formatNumber(v)} ${unit} (${t}, median${range})`,
      met: v === undefined ? undefined : higher ? v >= max : v <= max,
      ...(t ? { where: { workload, key, target: t, short } } : {}),
    });
  };
  limit('network create + rm ≤ 10 ms via API', 1, 'create+rm', 10, 'ms', ['cove-api']);
  limit("network's share of a container start ≤ 5 ms", 2, 'share', 5, 'ms');
  limit('container run on a bridge ≤ 60 ms via API', 2, 'run-bridge', 60, 'ms', ['cove-api']);
  limit('connect + disconnect ≤ 15 ms', 3, 'connect+disconnect', 15, 'ms');
  limit('one DNS query ≤ 0.02 ms', 4, 'lookup', 0.02, 'ms');
  {
    const key = metricOf(r, 4, 'qps-dnsperf') ? 'qps-dnsperf' : 'qps-node';
    limit(
      `≥ 50k DNS lookups/s (${key === 'qps-dnsperf' ? 'dnsperf' : 'node client'})`,
      4,
      key,
      50_000,
      'q/s',
      ['cove-api', 'cove-cli'],
      true,
    );
  }
  // Flat per-container cost: the median at the largest N within 1.5× of the median at N=10.
  {
    const t = coveTarget(r, 5, 'each@10', ['cove-api', 'cove-cli']);
    const w = r.workloads.find((x) => x.id === 5);
    const curve = (w?.metrics ?? [])
      .filter((m) => m.series === 'per container' && t && m.samples[t]?.length)
      .sort((a, b) => a.x! - b.x!);
    const base = t ? medianOf(r, 5, 'each@10', t) : undefined;
    const last = curve[curve.length - 1];
    const lastMed = last && t ? summarize(last.samples[t]!)?.median : undefined;
    const rr = ratio(lastMed, base);
    out.push({
      goal: 'flat per-container cost up to N=500 (median at the largest N ≤ 1.5× the median at N=10)',
      measured:
        rr === undefined || !last
          ? 'not measured'
          : `N=${last.x}: ${formatNumber(lastMed)} ms vs N=10: ${formatNumber(base)} ms = ${formatRatio(rr)} (${t})${last.x! < 500 ? ' — N=500 not run' : ''}`,
      met: rr === undefined ? undefined : rr <= 1.5 && last!.x! >= 500 ? true : rr > 1.5 ? false : undefined,
      ...(t && last ? { where: { workload: 5, key: last.key, target: t, short: '≤ 1.5× N=10' } } : {}),
    });
  }
  limit('published-port throughput ≥ 95% of direct', 7, 'throughput-share', 95, '%', ['cove-api', 'cove-cli'], true);
  limit('engine RSS idle ≤ 60 MB', 8, 'engine@0', 60, 'MB');
  limit('engine RSS with 20 containers ≤ 100 MB', 8, 'engine@20', 100, 'MB');
  {
    const cli = medianOf(r, 1, 'roundtrip', 'cove-cli');
    const node = medianOf(r, 1, 'roundtrip', 'floor');
    const rr = ratio(cli, node);
    out.push({
      goal: 'CLI round trip (`cove network ls`) ≤ 1.3× bare `node -e 0`',
      measured:
        rr === undefined ? 'not measured' : `${formatNumber(cli)} ms vs ${formatNumber(node)} ms = ${formatRatio(rr)}`,
      met: rr === undefined ? undefined : rr <= 1.3,
      ...(rr !== undefined
        ? { where: { workload: 1, key: 'roundtrip', target: 'cove-cli', short: '≤ 1.3× floor' } }
        : {}),
    });
  }
  return out;
}

const verdict = (m: boolean | undefined) => (m === undefined ? 'not measured' : m ? 'met' : 'MISSED');

/** "≤ 10 ms: MISSED" for the row a Cove goal is about, else "". */
export function goalNote(checks: TargetCheck[], workload: number, key: string, target: string): string {
  const c = checks.find(
    (x) => x.where && x.where.workload === workload && x.where.key === key && x.where.target === target,
  );
  return c ? `${c.where!.short}: ${verdict(c.met)}` : '';
}

// ---------- plain text ----------

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

export function textTable(header: string[], rows: string[][], rightFrom = 1): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => pad(c, widths[i]!, i >= rightFrom))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function renderText(r: BenchResults): string {
  const { peers } = targetOrder(r);
  const cols = ['floor', ...peers];
  const parts: string[] = [];
  const checks = checkTargets(r);
  for (const w of r.workloads) {
    parts.push(`\n== ${w.id}. ${w.title}`);
    const rows = rowsOf(r, w);
    if (rows.length) {
      parts.push(
        textTable(
          ['metric', 'target', 'n', 'min', 'median', 'max', ...cols.map((c) => `×${c}`), 'Cove target'],
          rows.map((x) => [
            `${x.metric.label} [${unitLabel(x.metric)}]`,
            x.target,
            String(x.summary.n),
            formatNumber(x.summary.min),
            formatNumber(x.summary.median),
            formatNumber(x.summary.max),
            ...cols.map((c) => formatRatio(x.ratios[c])),
            goalNote(checks, w.id, x.metric.key, x.target),
          ]),
          2,
        ),
      );
    }
    for (const [t, e] of Object.entries(w.errors)) parts.push(`! ${t}: ${e}`);
    for (const n of w.notes) parts.push(`  note: ${n}`);
  }
  parts.push('\n== Targets for Cove (reported, not asserted)');
  parts.push(
    textTable(
      ['goal', 'measured', 'verdict'],
      checks.map((c) => [c.goal, c.measured, verdict(c.met)]),
      99,
    ),
  );
  if (Object.keys(r.unavailable).length) {
    parts.push('\n== Not run');
    for (const [k, v] of Object.entries(r.unavailable)) parts.push(`- ${k}: ${v}`);
  }
  return parts.join('\n') + '\n';
}

// ---------- markdown ----------

function mdEscape(s: string): string {
  return s.replace(/\|/g, '\\|');
}

export function renderMarkdown(r: BenchResults, chartFile: string | undefined): string {
  const { peers } = targetOrder(r);
  const cols = ['floor', ...peers];
  const out: string[] = [];
  const checks = checkTargets(r);
  out.push(`# Cove benchmark${r.quick ? ' (quick run)' : ''}`, '');
  out.push(
    `Run ${r.started}${r.finished ? ` – ${r.finished}` : ''} on ${r.machine.cpus} CPUs, kernel ${r.machine.kernel}, Node ${r.machine.node}; load average (1/5/15 min) at start ${r.machine.load.map((l) => l.toFixed(2)).join(' / ')}${r.machine.loadAtEnd ? `, at the end ${r.machine.loadAtEnd.map((l) => l.toFixed(2)).join(' / ')}` : ''}. Other sessions shared this machine, so compare rows of one table, not absolute numbers with other machines.`,
    '',
  );
  if (r.command) out.push(`Made with \`${r.command}\`.`, '');
  if (r.included?.length)
    out.push(
      `Samples of ${r.included.map((i) => `${i.targets.join(', ')} (run ${i.started})`).join('; ')} were measured in an earlier run on the same machine and merged in with \`--include\`.`,
      '',
    );
  out.push(
    "Every engine ran in a lab network namespace of its own with no uplink; numbers are min / median / max over the samples named in `n` (all samples are in `results.json`). `×floor` and `×<peer>` are this row's median over theirs: for times below 1× is faster, for rates above 1× is more.",
    '',
  );
  out.push('## Engines', '');
  for (const [k, v] of Object.entries(r.engines)) out.push(`- **${k}**: ${mdEscape(v)}`);
  for (const [k, v] of Object.entries(r.unavailable)) out.push(`- **${k}**: not run — ${mdEscape(v)}`);
  out.push('', '## Targets for Cove (reported, not asserted)', '', '| goal | measured | verdict |', '|---|---|---|');
  for (const c of checks)
    out.push(`| ${mdEscape(c.goal)} | ${mdEscape(c.measured)} | ${c.met === false ? '**missed**' : verdict(c.met)} |`);
  if (chartFile) out.push('', '## Scaling curves', '', `![per-container and per-network cost against N](${chartFile})`);
  for (const w of r.workloads) {
    out.push('', `## ${w.id}. ${w.title}`, '');
    const rows = rowsOf(r, w);
    if (rows.length) {
      out.push(`| metric | target | n | min | median | max | ${cols.map((c) => `×${c}`).join(' | ')} | Cove target |`);
      out.push(`|---|---|--:|--:|--:|--:|${cols.map(() => '--:').join('|')}|---|`);
      let last = '';
      for (const x of rows) {
        const label = x.metric.key === last ? '' : `${mdEscape(x.metric.label)} (${unitLabel(x.metric)})`;
        last = x.metric.key;
        out.push(
          `| ${label} | ${x.target} | ${x.summary.n} | ${formatNumber(x.summary.min)} | **${formatNumber(x.summary.median)}** | ${formatNumber(x.summary.max)} | ${cols.map((c) => formatRatio(x.ratios[c])).join(' | ')} | ${goalNote(checks, w.id, x.metric.key, x.target).replace('MISSED', '**MISSED**')} |`,
        );
      }
    } else out.push('No samples.');
    for (const [t, e] of Object.entries(w.errors)) out.push('', `- **${t} failed**: ${mdEscape(e)}`);
    for (const n of w.notes) out.push('', `- ${mdEscape(n)}`);
  }
  return out.join('\n') + '\n';
}

// ---------- SVG ----------

const COLORS = ['#444444', '#1f77b4', '#17becf', '#d62728', '#ff7f0e', '#9467bd', '#2ca02c', '#8c564b'];

export interface Curve {
  target: string;
  points: Array<{ x: number; y: number }>;
}

/** Median per x of one series of one workload, per target. */
export function curvesOf(r: BenchResults, workload: number, series: string): Curve[] {
  const w = r.workloads.find((x) => x.id === workload);
  if (!w) return [];
  const curves: Curve[] = [];
  for (const t of targetOrder(r).all) {
    const points = w.metrics
      .filter((m) => m.series === series && m.x !== undefined && (m.samples[t]?.length ?? 0) > 0)
      .map((m) => ({ x: m.x!, y: summarize(m.samples[t]!)!.median }))
      .sort((a, b) => a.x - b.x);
    if (points.length) curves.push({ target: t, points });
  }
  return curves;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** One log-log panel: x = N, y = ms. Returns SVG elements placed at (ox, oy). */
export function panel(
  title: string,
  curves: Curve[],
  colorOf: (t: string) => string,
  ox: number,
  oy: number,
  w: number,
  h: number,
): string {
  const m = { l: 56, r: 12, t: 26, b: 36 };
  const pw = w - m.l - m.r;
  const ph = h - m.t - m.b;
  const xs = curves.flatMap((c) => c.points.map((p) => p.x));
  const ys = curves.flatMap((c) => c.points.map((p) => p.y)).filter((y) => y > 0);
  const parts: string[] = [
    `<text x="${ox + w / 2}" y="${oy + 16}" text-anchor="middle" font-weight="bold">${esc(title)}</text>`,
  ];
  if (!xs.length || !ys.length)
    return parts.concat(`<text x="${ox + w / 2}" y="${oy + h / 2}" text-anchor="middle">no data</text>`).join('\n');
  const lx0 = Math.log10(Math.min(...xs));
  const lx1 = Math.max(lx0 + 1, Math.log10(Math.max(...xs)));
  const ly0 = Math.floor(Math.log10(Math.min(...ys)));
  const ly1 = Math.max(ly0 + 1, Math.ceil(Math.log10(Math.max(...ys))));
  const X = (x: number) => ox + m.l + ((Math.log10(x) - lx0) / (lx1 - lx0)) * pw;
  const Y = (y: number) => oy + m.t + ph - ((Math.log10(Math.max(y, 10 ** ly0)) - ly0) / (ly1 - ly0)) * ph;
  parts.push(`<rect x="${ox + m.l}" y="${oy + m.t}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
  for (let e = ly0; e <= ly1; e++) {
    const y = Y(10 ** e);
    parts.push(`<line x1="${ox + m.l}" x2="${ox + m.l + pw}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
    parts.push(
      `<text x="${ox + m.l - 4}" y="${y + 4}" text-anchor="end">${e >= 0 ? String(10 ** e) : (10 ** e).toFixed(-e)}</text>`,
    );
  }
  for (const x of [...new Set(xs)].sort((a, b) => a - b)) {
    parts.push(`<line x1="${X(x)}" x2="${X(x)}" y1="${oy + m.t}" y2="${oy + m.t + ph}" stroke="#eee"/>`);
    parts.push(`<text x="${X(x)}" y="${oy + m.t + ph + 14}" text-anchor="middle">${x}</text>`);
  }
  parts.push(`<text x="${ox + m.l + pw / 2}" y="${oy + h - 4}" text-anchor="middle">N</text>`);
  parts.push(
    `<text x="${ox + 12}" y="${oy + m.t + ph / 2}" text-anchor="middle" transform="rotate(-90 ${ox + 12} ${oy + m.t + ph / 2})">ms (median, log)</text>`,
  );
  for (const c of curves) {
    const col = colorOf(c.target);
    const pts = c.points.map((p) => `${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`).join(' ');
    parts.push(`<polyline points="${pts}" fill="none" stroke="${col}" stroke-width="2"/>`);
    for (const p of c.points)
      parts.push(
        `<circle cx="${X(p.x).toFixed(1)}" cy="${Y(p.y).toFixed(1)}" r="3" fill="${col}"><title>${esc(c.target)} N=${p.x}: ${formatNumber(p.y)} ms</title></circle>`,
      );
  }
  return parts.join('\n');
}

export function renderScalingSvg(r: BenchResults): string | undefined {
  const panels = [
    { title: '5. per container, N on one network', curves: curvesOf(r, 5, 'per container') },
    { title: '5. total to start N', curves: curvesOf(r, 5, 'total') },
    { title: '6. per network (create + run), N networks', curves: curvesOf(r, 6, 'per network') },
    { title: '6. total for N networks', curves: curvesOf(r, 6, 'total') },
  ];
  if (panels.every((p) => p.curves.length === 0)) return undefined;
  const targets = targetOrder(r).all;
  const colorOf = (t: string) => COLORS[Math.max(0, targets.indexOf(t)) % COLORS.length]!;
  const W = 420;
  const H = 280;
  const legendH = 28;
  const width = 2 * W;
  const height = 2 * H + legendH;
  const body = panels.map((p, i) =>
    panel(p.title, p.curves, colorOf, (i % 2) * W, legendH + Math.floor(i / 2) * H, W, H),
  );
  const legend = targets.map(
    (t, i) =>
      `<rect x="${10 + i * 110}" y="8" width="14" height="4" fill="${colorOf(t)}"/><text x="${28 + i * 110}" y="14">${esc(t)}</text>`,
  );
  return (
    [
      `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
      `<rect width="100%" height="100%" fill="white"/>`,
      ...legend,
      ...body,
      '</svg>',
    ].join('\n') + '\n'
  );
}
