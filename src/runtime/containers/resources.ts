/**
 * A container's resource limits (`--memory`, `--memory-swap`, `--cpus`,
 * `--cpu-shares`, `--cpu-quota/--cpu-period`, `--cpuset-cpus`, `--pids-limit`,
 * `--device-cgroup-rule`) as the OCI `linux.resources` runc writes into the
 * container's cgroups (v1 here: /sys/fs/cgroup/<controller>/cove/<id>), and
 * `docker update`'s checks and changes, with Docker's words.
 */
import { availableParallelism } from 'node:os';
import { InvalidParameter } from '../../common/errors.js';

export interface ResourceConfig {
  Memory?: number;
  MemorySwap?: number;
  MemoryReservation?: number;
  NanoCpus?: number;
  CpuShares?: number;
  CpuQuota?: number;
  CpuPeriod?: number;
  CpusetCpus?: string;
  CpusetMems?: string;
  PidsLimit?: number | null;
  DeviceCgroupRules?: string[] | null;
}

/** The fields `POST /containers/{id}/update` may change (besides RestartPolicy). */
export const UPDATABLE = [
  'Memory',
  'MemorySwap',
  'MemoryReservation',
  'NanoCpus',
  'CpuShares',
  'CpuQuota',
  'CpuPeriod',
  'CpusetCpus',
  'CpusetMems',
  'PidsLimit',
] as const;

const DEFAULT_CFS_PERIOD = 100_000;

/** What Docker's daemon fills in at create (adaptContainerSettings): swap twice the memory when left unset. */
export function adaptResources(hc: ResourceConfig): void {
  if (hc.Memory && hc.Memory > 0 && !hc.MemorySwap) hc.MemorySwap = hc.Memory * 2;
  if (hc.PidsLimit !== undefined && hc.PidsLimit !== null && hc.PidsLimit <= 0) hc.PidsLimit = null;
}

/** Checks Docker makes at create and update that validateResources (inspect-view.ts) does not. */
export function checkResources(hc: ResourceConfig): void {
  const ncpu = availableParallelism();
  if (hc.NanoCpus && hc.NanoCpus > 0) {
    if (hc.CpuQuota || hc.CpuPeriod)
      throw new InvalidParameter('Conflicting options: Nano CPUs and CPU Period cannot both be set');
    if (hc.NanoCpus < 1e7 || hc.NanoCpus > ncpu * 1e9) {
      throw new InvalidParameter(`Range of CPUs is from 0.01 to ${ncpu}.00, as there are only ${ncpu} CPUs available`);
    }
  }
  if (hc.CpuPeriod && (hc.CpuPeriod < 1000 || hc.CpuPeriod > 1_000_000))
    throw new InvalidParameter('CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)');
  if (hc.CpuQuota && hc.CpuQuota > 0 && hc.CpuQuota < 1000)
    throw new InvalidParameter('CPU cfs quota can not be less than 1ms (i.e. 1000)');
  for (const r of hc.DeviceCgroupRules ?? []) parseDeviceRule(r);
}

/** One `--device-cgroup-rule` ("c 1:3 rwm", "a *:* r"), as runc's device entry. */
export function parseDeviceRule(rule: string): Record<string, unknown> {
  const m = /^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$/.exec(rule.trim());
  if (!m) throw new InvalidParameter(`invalid device cgroup format '${rule}'`);
  const entry: Record<string, unknown> = { allow: true, type: m[1], access: m[4] };
  if (m[2] !== '*') entry.major = Number(m[2]);
  if (m[3] !== '*') entry.minor = Number(m[3]);
  return entry;
}

/** The OCI linux.resources for memory, cpu and pids (devices are added by the bundle). */
export function ociResources(hc: ResourceConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const memory: Record<string, number> = {};
  if (hc.Memory && hc.Memory > 0) memory.limit = hc.Memory;
  if (hc.MemorySwap && hc.MemorySwap !== 0) memory.swap = hc.MemorySwap;
  if (hc.MemoryReservation && hc.MemoryReservation > 0) memory.reservation = hc.MemoryReservation;
  if (Object.keys(memory).length) out.memory = memory;
  const cpu: Record<string, unknown> = {};
  if (hc.NanoCpus && hc.NanoCpus > 0) {
    cpu.period = DEFAULT_CFS_PERIOD;
    cpu.quota = Math.round((hc.NanoCpus * DEFAULT_CFS_PERIOD) / 1e9);
  }
  if (hc.CpuQuota && hc.CpuQuota !== 0) cpu.quota = hc.CpuQuota;
  if (hc.CpuPeriod && hc.CpuPeriod > 0) cpu.period = hc.CpuPeriod;
  if (hc.CpuShares && hc.CpuShares > 0) cpu.shares = hc.CpuShares;
  if (hc.CpusetCpus) cpu.cpus = hc.CpusetCpus;
  if (hc.CpusetMems) cpu.mems = hc.CpusetMems;
  if (Object.keys(cpu).length) out.cpu = cpu;
  if (hc.PidsLimit && hc.PidsLimit > 0) out.pids = { limit: hc.PidsLimit };
  return out;
}

/**
 * `docker update`: the new resource fields merged over the current ones, with
 * Docker's refusals (moby daemon/update.go and verifyPlatformContainerResources).
 */
export function mergeUpdate(current: ResourceConfig, change: ResourceConfig): ResourceConfig {
  const next: ResourceConfig = { ...current };
  for (const k of UPDATABLE) {
    const v = change[k];
    if (v === undefined || v === null) continue;
    if (typeof v === 'number' && v === 0 && k !== 'PidsLimit') continue;
    (next as Record<string, unknown>)[k] = v;
  }
  if (
    change.Memory &&
    change.Memory > 0 &&
    !change.MemorySwap &&
    current.MemorySwap &&
    current.MemorySwap > 0 &&
    change.Memory > current.MemorySwap
  ) {
    throw new InvalidParameter(
      'Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time',
    );
  }
  if (change.NanoCpus && change.NanoCpus > 0) {
    delete next.CpuQuota;
    delete next.CpuPeriod;
  }
  if ((change.CpuQuota || change.CpuPeriod) && current.NanoCpus) {
    throw new InvalidParameter(
      'Conflicting options: CPU Quota or CPU Period cannot be updated as NanoCPUs has already been set',
    );
  }
  if (next.PidsLimit !== undefined && next.PidsLimit !== null && next.PidsLimit <= 0) next.PidsLimit = null;
  return next;
}
