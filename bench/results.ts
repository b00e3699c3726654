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
  quick: boolean;
  machine: { cpus: number; kernel: string; node: string; load: number[] };
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
