/** Durations as docker's flags take them (shared by service flags and the health flags of run/create/service). */
import { CliError } from './client.js';

const NS = 1_000_000_000;

/** Go's time.ParseDuration for the units docker users write: "10s", "1m30s", "500ms", "1h". */
export function parseDuration(v: string, flag: string): number {
  if (/^\d+$/.test(v) && Number(v) === 0) return 0;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let m: RegExpExecArray | null;
  let pos = 0;
  while ((m = re.exec(v))) {
    const unit = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: NS, m: 60 * NS, h: 3600 * NS }[m[2]!]!;
    total += Number(m[1]) * unit;
    pos = re.lastIndex;
  }
  if (!v || pos !== v.length)
    throw new CliError(`invalid argument "${v}" for "${flag}" flag: time: invalid duration "${v}"`);
  return Math.round(total);
}
