/**
 * HEALTHCHECK, as Docker runs it: a probe command exec'd in the running
 * container every Interval (every StartInterval during the StartPeriod), cut
 * after Timeout; exit 0 is a success, anything else a failure. Status goes
 * starting → healthy on a success, → unhealthy after Retries failures in a
 * row (failures in the start period do not count until a first success).
 * State.Health keeps the last 5 results; every status change is a
 * `health_status: <status>` event. Pure rules here; the container manager
 * runs the probes (exec) and stores the state.
 */
import { InvalidParameter } from '../../common/errors.js';

/** container.HealthConfig (durations in ns). */
export interface HealthConfig {
  Test?: string[] | null;
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  StartInterval?: number;
  Retries?: number;
}

export interface HealthLogEntry {
  Start: string;
  End: string;
  ExitCode: number;
  Output: string;
}
export type HealthStatus = 'starting' | 'healthy' | 'unhealthy';
export interface HealthState {
  Status: HealthStatus;
  FailingStreak: number;
  Log: HealthLogEntry[];
}

/** Docker's defaults (daemon/health.go). */
const MS = 1e6;
export const DEFAULTS = { intervalMs: 30_000, timeoutMs: 30_000, startIntervalMs: 5_000, retries: 3 };
/** Docker keeps this many results and this much output of each. */
export const MAX_LOG_ENTRIES = 5;
export const MAX_OUTPUT_LEN = 4096;

export interface Probe {
  /** The command to exec: CMD's arguments, or CMD-SHELL's string under the shell. */
  cmd: string[];
  intervalMs: number;
  timeoutMs: number;
  startPeriodMs: number;
  startIntervalMs: number;
  retries: number;
}

/**
 * The image's healthcheck under the container's, field by field, as Docker
 * merges them at create: an empty Test takes the image's, zero durations and
 * retries take the image's.
 */
export function mergeHealthcheck(
  own: HealthConfig | null | undefined,
  image: HealthConfig | null | undefined,
): HealthConfig | undefined {
  if (!own && !image) return undefined;
  if (!image) return own ?? undefined;
  if (!own) return { ...image };
  const out: HealthConfig = { ...own };
  if (!own.Test?.length) out.Test = image.Test ?? null;
  for (const k of ['Interval', 'Timeout', 'StartPeriod', 'StartInterval', 'Retries'] as const)
    if (!own[k]) out[k] = image[k] ?? 0;
  return out;
}

/** Docker's create-time checks, with its messages. */
export function validateHealthcheck(h: HealthConfig | null | undefined): void {
  if (!h) return;
  const min = 1 * MS;
  for (const k of ['Interval', 'Timeout', 'StartPeriod', 'StartInterval'] as const) {
    const v = h[k];
    if (v !== undefined && v !== null && (typeof v !== 'number' || !Number.isFinite(v) || (v !== 0 && v < min))) {
      throw new InvalidParameter(`${k} in Healthcheck cannot be less than ${min / MS}ms`);
    }
  }
  if (h.Retries !== undefined && h.Retries !== null && (typeof h.Retries !== 'number' || h.Retries < 0))
    throw new InvalidParameter('Retries in Healthcheck cannot be negative');
  if (h.Test !== undefined && h.Test !== null && (!Array.isArray(h.Test) || h.Test.some((x) => typeof x !== 'string')))
    throw new InvalidParameter('Healthcheck.Test must be a list of strings');
}

/** The probe to run, or undefined when there is none (no Test, or NONE). */
export function probeOf(h: HealthConfig | null | undefined, shell: string[] = ['/bin/sh', '-c']): Probe | undefined {
  const test = h?.Test ?? [];
  if (!test.length || test[0] === 'NONE') return undefined;
  let cmd: string[];
  if (test[0] === 'CMD') cmd = test.slice(1);
  else if (test[0] === 'CMD-SHELL') cmd = [...shell, test.slice(1).join(' ')];
  else return undefined;
  if (!cmd.length) return undefined;
  const ms = (ns: number | undefined, d: number): number => (ns && ns > 0 ? Math.max(1, Math.round(ns / MS)) : d);
  return {
    cmd,
    intervalMs: ms(h!.Interval, DEFAULTS.intervalMs),
    timeoutMs: ms(h!.Timeout, DEFAULTS.timeoutMs),
    startPeriodMs: ms(h!.StartPeriod, 0),
    startIntervalMs: ms(h!.StartInterval, DEFAULTS.startIntervalMs),
    retries: h!.Retries && h!.Retries > 0 ? h!.Retries : DEFAULTS.retries,
  };
}

export function initialHealth(): HealthState {
  return { Status: 'starting', FailingStreak: 0, Log: [] };
}

/** How long to wait before the next probe: StartInterval while still starting within the start period. */
export function nextDelayMs(p: Probe, h: HealthState, sinceStartMs: number): number {
  if (h.Status === 'starting' && sinceStartMs < p.startPeriodMs) return p.startIntervalMs;
  return p.intervalMs;
}

/** One probe's result applied (daemon/health.go handleProbeResult). */
export function applyResult(p: Probe, h: HealthState, r: HealthLogEntry, sinceStartMs: number): HealthState {
  const log = [
    ...h.Log,
    { ...r, Output: r.Output.length > MAX_OUTPUT_LEN ? r.Output.slice(0, MAX_OUTPUT_LEN) : r.Output },
  ].slice(-MAX_LOG_ENTRIES);
  if (r.ExitCode === 0) return { Status: 'healthy', FailingStreak: 0, Log: log };
  // In the start period, failures do not count while the container never was healthy.
  if (h.Status === 'starting' && sinceStartMs < p.startPeriodMs) return { ...h, Log: log };
  const streak = h.FailingStreak + 1;
  return { Status: streak >= p.retries ? 'unhealthy' : h.Status, FailingStreak: streak, Log: log };
}

/** Docker's wording for a probe cut at its timeout. */
export function timeoutMessage(p: Probe): string {
  return `Health check exceeded timeout (${goDuration(p.timeoutMs)})`;
}

function goDuration(ms: number): string {
  if (ms % 1000 === 0) {
    const s = ms / 1000;
    if (s < 60) return `${s}s`;
    const m = Math.floor(s / 60);
    return s % 60 ? `${m}m${s % 60}s` : `${m}m0s`;
  }
  if (ms < 1000) return `${ms}ms`;
  return `${ms / 1000}s`;
}
