/**
 * docker's resource flags as the CLI parses them before they reach the API:
 * sizes (`64m`, `1g`: go-units RAMInBytes, binary multiples) and `--cpus`
 * (a decimal count turned into NanoCpus), shared by run/create and update.
 */
import { CliError } from '../client.js';

const RAM_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
  p: 1024 ** 5,
};

/** go-units RAMInBytes: "64m", "1.5g", "512k", "1024" (bytes); -1 stays -1 (unlimited swap). */
export function ramInBytes(flag: string, v: string): number {
  if (v === '-1') return -1;
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$/i.exec(v.trim());
  if (!m) throw new CliError(`invalid argument "${v}" for "${flag}" flag: invalid size: '${v}'`);
  return Math.floor(Number(m[1]) * RAM_UNITS[m[2]!.toLowerCase()]!);
}

/** --cpus: NanoCPUs, as docker's opts.NanoCPUs.Set does (at most 9 decimal places). */
export function nanoCpus(v: string): number {
  if (!/^\d*\.?\d+$/.test(v.trim()))
    throw new CliError(`invalid argument "${v}" for "--cpus" flag: failed to parse ${v} as a rational number`);
  const n = Math.round(Number(v) * 1e9);
  return n;
}

function int(flag: string, v: string): number {
  if (!/^-?\d+$/.test(v.trim()))
    throw new CliError(`invalid argument "${v}" for "${flag}" flag: strconv.ParseInt: parsing "${v}": invalid syntax`);
  return Number(v);
}

export interface ResourceFlags {
  memory?: string;
  memorySwap?: string;
  memoryReservation?: string;
  cpus?: string;
  cpuShares?: string;
  cpuPeriod?: string;
  cpuQuota?: string;
  cpusetCpus?: string;
  cpusetMems?: string;
  pidsLimit?: string;
}

/** The HostConfig keys the flags set (only those given). */
export function resourceFields(o: ResourceFlags): Record<string, number | string> {
  const out: Record<string, number | string> = {};
  if (o.memory !== undefined) out.Memory = ramInBytes('--memory', o.memory);
  if (o.memorySwap !== undefined) out.MemorySwap = ramInBytes('--memory-swap', o.memorySwap);
  if (o.memoryReservation !== undefined)
    out.MemoryReservation = ramInBytes('--memory-reservation', o.memoryReservation);
  if (o.cpus !== undefined) out.NanoCpus = nanoCpus(o.cpus);
  if (o.cpuShares !== undefined) out.CpuShares = int('--cpu-shares', o.cpuShares);
  if (o.cpuPeriod !== undefined) out.CpuPeriod = int('--cpu-period', o.cpuPeriod);
  if (o.cpuQuota !== undefined) out.CpuQuota = int('--cpu-quota', o.cpuQuota);
  if (o.cpusetCpus !== undefined) out.CpusetCpus = o.cpusetCpus;
  if (o.cpusetMems !== undefined) out.CpusetMems = o.cpusetMems;
  if (o.pidsLimit !== undefined) out.PidsLimit = int('--pids-limit', o.pidsLimit);
  return out;
}
