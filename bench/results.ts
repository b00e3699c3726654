/** The shape of one benchmark run: every sample, per workload, metric and target. Written as results.json. */

export type Unit = 'ms' | 'q/s' | 'req/s' | 'MB/s' | 'MB' | '%';

export interface MetricRecord {
  key: string;
  label: string;
  unit: Unit;
  better: 'lower' | 'higher';
  /** For scaling curves: the series this point belongs to and its x (N). */
  series?: string;
  x?: number;
  /** target name -> every sample. */
  samples: Record<string, number[]>;
}

export interface WorkloadRecord {
  id: number;
  title: string;
  metrics: MetricRecord[];
  /** target name -> what went wrong (the workload still ran for the others). */
  errors: Record<string, string>;
  notes: string[];
}

export interface BenchResults {
  started: string;
  finished?: string;
  /** How this run was started (npm run bench -- ...). */
  command?: string;
  quick: boolean;
  machine: { cpus: number; kernel: string; node: string; load: number[]; loadAtEnd?: number[] };
  /** Earlier runs whose samples were merged in (--include). */
  included?: Array<{ file: string; started: string; targets: string[] }>;
  /** engine name -> description (versions). */
  engines: Record<string, string>;
  /** target name -> engine name, in the order they ran. */
  targets: Record<string, string>;
  /** target or engine name -> why it did not run. */
  unavailable: Record<string, string>;
  workloads: WorkloadRecord[];
}

export interface MetricDef {
  key: string;
  label: string;
  unit: Unit;
  better?: 'lower' | 'higher';
  series?: string;
  x?: number;
}

/** Collects samples as workloads run. */
export class Recorder {
  constructor(readonly results: BenchResults) {}

  workload(id: number, title: string): WorkloadRecord {
    let w = this.results.workloads.find((x) => x.id === id);
    if (!w) {
      w = { id, title, metrics: [], errors: {}, notes: [] };
      this.results.workloads.push(w);
      this.results.workloads.sort((a, b) => a.id - b.id);
    }
    return w;
  }

  add(workload: number, def: MetricDef, target: string, value: number): void {
    const w = this.results.workloads.find((x) => x.id === workload);
    if (!w) throw new Error(`workload ${workload} not opened`);
    let m = w.metrics.find((x) => x.key === def.key);
    if (!m) {
      m = { key: def.key, label: def.label, unit: def.unit, better: def.better ?? 'lower', samples: {} };
      if (def.series !== undefined) m.series = def.series;
      if (def.x !== undefined) m.x = def.x;
      w.metrics.push(m);
    }
    (m.samples[target] ??= []).push(value);
  }

  error(workload: number, target: string, message: string): void {
    const w = this.results.workloads.find((x) => x.id === workload);
    if (w) w.errors[target] = message;
  }

  note(workload: number, text: string): void {
    const w = this.results.workloads.find((x) => x.id === workload);
    if (w && !w.notes.includes(text)) w.notes.push(text);
  }
}

/**
 * Merges an earlier run's samples into this one, metric by metric: a target's
 * samples of a metric are taken when this run (or an earlier include) has none
 * for it. So slow peers can be measured once, and a failed part re-measured
 * alone and included first. Errors come along only for targets that have no
 * samples at all in that workload. Returns the targets that contributed.
 */
export function mergeEarlier(into: BenchResults, earlier: BenchResults, file: string): string[] {
  const taken = new Set<string>();
  for (const ew of earlier.workloads) {
    const w = into.workloads.find((x) => x.id === ew.id);
    if (!w) continue; // only workloads this run asked for
    for (const em of ew.metrics) {
      for (const [t, samples] of Object.entries(em.samples)) {
        if (t in into.targets && into.targets[t] !== earlier.targets[t]) continue;
        let m = w.metrics.find((x) => x.key === em.key);
        if (m?.samples[t]?.length) continue;
        if (t in into.targets && !into.included?.some((i) => i.targets.includes(t))) continue; // measured in this run
        if (!m) {
          m = { ...em, samples: {} };
          w.metrics.push(m);
        }
        m.samples[t] = samples.slice();
        taken.add(t);
      }
    }
    for (const [t, e] of Object.entries(ew.errors)) {
      const has = w.metrics.some((m) => (m.samples[t]?.length ?? 0) > 0);
      if (!has && !(t in into.targets)) {
        w.errors[t] = e;
        taken.add(t);
      }
    }
    if ([...taken].some((t) => ew.metrics.some((m) => m.samples[t])))
      for (const n of ew.notes) if (!w.notes.includes(n)) w.notes.push(n);
  }
  const list = [...taken];
  for (const t of list) into.targets[t] ??= earlier.targets[t]!;
  for (const [name, desc] of Object.entries(earlier.engines))
    if (list.some((t) => earlier.targets[t] === name)) into.engines[name] ??= desc;
  for (const [k, v] of Object.entries(earlier.unavailable))
    if (list.some((t) => k.startsWith(earlier.targets[t] ?? '\0'))) into.unavailable[k] ??= v;
  if (list.length) (into.included ??= []).push({ file, started: earlier.started, targets: list });
  return list;
}
