/** Pure number helpers for the benchmark: summaries, ratios, formatting. */

export interface Summary {
  n: number;
  min: number;
  median: number;
  max: number;
  mean: number;
}

export function summarize(values: readonly number[]): Summary | undefined {
  const xs = values
    .filter((v) => Number.isFinite(v))
    .slice()
    .sort((a, b) => a - b);
  if (xs.length === 0) return undefined;
  const mid = xs.length >> 1;
  const median = xs.length % 2 ? xs[mid]! : (xs[mid - 1]! + xs[mid]!) / 2;
  const mean = xs.reduce((s, v) => s + v, 0) / xs.length;
  return { n: xs.length, min: xs[0]!, median, max: xs[xs.length - 1]!, mean };
}

/** a / b, or undefined when either is missing or b is zero. */
export function ratio(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return undefined;
  return a / b;
}

/** Milliseconds since a process.hrtime.bigint() stamp. */
export function msSince(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** Times one async call in milliseconds. */
export async function timeMs<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = process.hrtime.bigint();
  const value = await fn();
  return { ms: msSince(t0), value };
}

/** Three significant digits, never scientific: 0.0123, 1.23, 12.3, 123, 12345. */
export function formatNumber(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return '–';
  const a = Math.abs(x);
  if (a === 0) return '0';
  if (a >= 100) return Math.round(x).toString();
  const decimals = Math.min(6, Math.max(0, 2 - Math.floor(Math.log10(a))));
  return x.toFixed(decimals);
}

/** "1.25×" for a ratio, "–" when there is none. */
export function formatRatio(r: number | undefined): string {
  if (r === undefined || !Number.isFinite(r)) return '–';
  return `${r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(2) : r.toFixed(3)}×`;
}

/** Linear least-squares slope of y over x (how much y grows per unit of x); undefined with < 2 distinct x. */
export function slope(points: ReadonlyArray<{ x: number; y: number }>): number | undefined {
  if (points.length < 2) return undefined;
  const mx = points.reduce((s, p) => s + p.x, 0) / points.length;
  const my = points.reduce((s, p) => s + p.y, 0) / points.length;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den === 0 ? undefined : num / den;
}
