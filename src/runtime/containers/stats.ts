/**
 * `docker stats` and `docker top` from the kernel: a container's cgroup v1
 * controllers under `/sys/fs/cgroup/<controller>/cove/<id>` (CPU, memory,
 * pids, block I/O) and its network namespace's interfaces as its init
 * process sees them (`/proc/<pid>/net/dev`), shaped as Docker's StatsJSON.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoveError } from '../../common/errors.js';

const run = promisify(execFile);
const CGROUP = '/sys/fs/cgroup';
const ZERO_TIME = '0001-01-01T00:00:00Z';
/** USER_HZ: /proc/stat counts in 1/100 s. */
const CLK_TCK = 100;

async function readText(p: string): Promise<string | undefined> {
  try {
    return await readFile(p, 'utf8');
  } catch {
    return undefined;
  }
}

async function readNum(p: string): Promise<number> {
  const t = await readText(p);
  const n = t === undefined ? 0 : Number(t.trim());
  return Number.isFinite(n) ? n : 0;
}

function kv(text: string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of (text ?? '').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^\d+$/.test(v)) out[k] = Number(v);
  }
  return out;
}

function cg(controller: string, id: string, file: string): string {
  return join(CGROUP, controller, 'cove', id, file);
}

/** The host's CPU time in ns (Docker's system_cpu_usage), from /proc/stat's cpu line. */
async function systemCpuNs(): Promise<number> {
  const line = (await readText('/proc/stat'))?.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) return 0;
  const ticks = line
    .split(/\s+/)
    .slice(1, 8)
    .reduce((a, b) => a + Number(b), 0);
  return Math.round((ticks * 1e9) / CLK_TCK);
}

export interface CpuStats {
  cpu_usage: { total_usage: number; percpu_usage?: number[]; usage_in_kernelmode: number; usage_in_usermode: number };
  system_cpu_usage?: number;
  online_cpus?: number;
  throttling_data: { periods: number; throttled_periods: number; throttled_time: number };
}

async function cpuStats(id: string): Promise<CpuStats> {
  const percpu = ((await readText(cg('cpuacct', id, 'cpuacct.usage_percpu'))) ?? '')
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);
  const st = kv(await readText(cg('cpuacct', id, 'cpuacct.stat')));
  const thr = kv(await readText(cg('cpu', id, 'cpu.stat')));
  return {
    cpu_usage: {
      total_usage: await readNum(cg('cpuacct', id, 'cpuacct.usage')),
      percpu_usage: percpu,
      usage_in_kernelmode: Math.round(((st.system ?? 0) * 1e9) / CLK_TCK),
      usage_in_usermode: Math.round(((st.user ?? 0) * 1e9) / CLK_TCK),
    },
    system_cpu_usage: await systemCpuNs(),
    online_cpus: cpus().length,
    throttling_data: {
      periods: thr.nr_periods ?? 0,
      throttled_periods: thr.nr_throttled ?? 0,
      throttled_time: thr.throttled_time ?? 0,
    },
  };
}

async function blkio(
  id: string,
  file: string,
): Promise<Array<{ major: number; minor: number; op: string; value: number }>> {
  const out: Array<{ major: number; minor: number; op: string; value: number }> = [];
  for (const line of ((await readText(cg('blkio', id, file))) ?? '').split('\n')) {
    const m = /^(\d+):(\d+) (\w+) (\d+)$/.exec(line.trim());
    if (m) out.push({ major: Number(m[1]), minor: Number(m[2]), op: m[3]!.toLowerCase(), value: Number(m[4]) });
  }
  return out;
}

export type NetStats = Record<
  string,
  {
    rx_bytes: number;
    rx_packets: number;
    rx_errors: number;
    rx_dropped: number;
    tx_bytes: number;
    tx_packets: number;
    tx_errors: number;
    tx_dropped: number;
  }
>;

/** The interfaces of the process's network namespace, loopback left out (as Docker does). */
export async function netStats(pid: number): Promise<NetStats> {
  const out: NetStats = {};
  const text = pid > 0 ? await readText(`/proc/${pid}/net/dev`) : undefined;
  for (const line of (text ?? '').split('\n').slice(2)) {
    const m = /^\s*([^:]+):\s*(.*)$/.exec(line);
    if (!m || m[1] === 'lo') continue;
    const f = m[2]!.trim().split(/\s+/).map(Number);
    out[m[1]!] = {
      rx_bytes: f[0] ?? 0,
      rx_packets: f[1] ?? 0,
      rx_errors: f[2] ?? 0,
      rx_dropped: f[3] ?? 0,
      tx_bytes: f[8] ?? 0,
      tx_packets: f[9] ?? 0,
      tx_errors: f[10] ?? 0,
      tx_dropped: f[11] ?? 0,
    };
  }
  return out;
}

const UNLIMITED = 0x7ffffffffffff000;

/** One StatsJSON sample (precpu_stats filled by the caller from the previous sample). */
export async function sample(c: {
  id: string;
  name: string;
  pid: number;
  running: boolean;
  hostNetwork: boolean;
}): Promise<Record<string, unknown>> {
  const blank = {
    cpu_usage: { total_usage: 0, usage_in_kernelmode: 0, usage_in_usermode: 0 },
    throttling_data: { periods: 0, throttled_periods: 0, throttled_time: 0 },
  };
  if (!c.running) {
    return {
      read: ZERO_TIME,
      preread: ZERO_TIME,
      pids_stats: {},
      blkio_stats: nullBlkio(),
      num_procs: 0,
      storage_stats: {},
      cpu_stats: blank,
      precpu_stats: blank,
      memory_stats: {},
      name: c.name,
      id: c.id,
    };
  }
  const memStat = kv(await readText(cg('memory', c.id, 'memory.stat')));
  const memLimit = await readNum(cg('memory', c.id, 'memory.limit_in_bytes'));
  const pidsMax = ((await readText(cg('pids', c.id, 'pids.max'))) ?? '').trim();
  const stats: Record<string, unknown> = {
    read: new Date().toISOString(),
    preread: ZERO_TIME,
    pids_stats: {
      current: await readNum(cg('pids', c.id, 'pids.current')),
      ...(pidsMax && pidsMax !== 'max' ? { limit: Number(pidsMax) } : {}),
    },
    blkio_stats: {
      ...nullBlkio(),
      io_service_bytes_recursive: await blkio(c.id, 'blkio.throttle.io_service_bytes_recursive'),
      io_serviced_recursive: await blkio(c.id, 'blkio.throttle.io_serviced_recursive'),
    },
    num_procs: 0,
    storage_stats: {},
    cpu_stats: await cpuStats(c.id),
    precpu_stats: blank,
    memory_stats: {
      usage: await readNum(cg('memory', c.id, 'memory.usage_in_bytes')),
      max_usage: await readNum(cg('memory', c.id, 'memory.max_usage_in_bytes')),
      stats: memStat,
      failcnt: await readNum(cg('memory', c.id, 'memory.failcnt')),
      limit: memLimit >= UNLIMITED || memLimit === 0 ? hostMemory() : Math.min(memLimit, hostMemory()),
    },
    name: c.name,
    id: c.id,
  };
  // Host-network containers have no interfaces of their own (Docker leaves `networks` out).
  if (!c.hostNetwork) stats.networks = await netStats(c.pid);
  return stats;
}

function nullBlkio(): Record<string, unknown> {
  return {
    io_service_bytes_recursive: null,
    io_serviced_recursive: null,
    io_queue_recursive: null,
    io_service_time_recursive: null,
    io_wait_time_recursive: null,
    io_merged_recursive: null,
    io_time_recursive: null,
    sectors_recursive: null,
  };
}

/** os.totalmem() is /proc/meminfo's MemTotal: what Docker reports as the limit of an unlimited container. */
function hostMemory(): number {
  return totalmem();
}

/** `docker top`: the host's `ps` output reduced to the container's processes (pids from its cgroup). */
export async function top(id: string, psArgs: string): Promise<{ Titles: string[]; Processes: string[][] }> {
  const pids = new Set(
    ((await readText(cg('pids', id, 'cgroup.procs'))) ?? (await readText(cg('memory', id, 'cgroup.procs'))) ?? '')
      .split('\n')
      .filter(Boolean)
      .map(Number),
  );
  const args = (psArgs || '-ef').split(/\s+/).filter(Boolean);
  let stdout: string;
  try {
    ({ stdout } = await run('ps', args, { maxBuffer: 16 << 20 }));
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new CoveError(`ps: ${(err.stderr || err.message).trim()}`, 500);
  }
  const lines = stdout.split('\n').filter((l) => l.trim());
  const header = lines.shift() ?? '';
  const titles = header.trim().split(/\s+/);
  const pidCol = titles.indexOf('PID');
  if (pidCol < 0) throw new CoveError(`Couldn't find PID field in ps output`, 500);
  const processes: string[][] = [];
  for (const line of lines) {
    const fields = line.trim().split(/\s+/);
    if (!pids.has(Number(fields[pidCol]))) continue;
    // The last column (CMD) keeps its spaces.
    const head = fields.slice(0, titles.length - 1);
    processes.push([...head, fields.slice(titles.length - 1).join(' ')]);
  }
  return { Titles: titles, Processes: processes };
}
