/** Milliseconds spent in named phases of one operation, for logs the benchmarks read (phasesMs). */
export interface Phases {
  /** Closes the phase that ran since the previous mark (or the start) under `name`. */
  mark(name: string): void;
  done(): Record<string, number>;
}

export function phases(): Phases {
  let last = performance.now();
  const out: Record<string, number> = {};
  return {
    mark(name) {
      const now = performance.now();
      out[name] = Math.round((now - last + (out[name] ?? 0)) * 10) / 10;
      last = now;
    },
    done: () => out,
  };
}
