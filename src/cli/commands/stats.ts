/** cove stats and cove update: docker's table (CLI-side percentages as the docker CLI computes them) and flags. */
import type { Cli } from '../main.js';
import { CliError } from '../client.js';
import { formatList, humanSize } from '../format.js';
import { eachName } from '../util.js';
import { resourceFields, type ResourceFlags } from './resource-flags.js';

const enc = encodeURIComponent;

interface StatsJson {
  id?: string;
  name?: string;
  read?: string;
  pids_stats?: { current?: number };
  cpu_stats?: {
    cpu_usage?: { total_usage?: number; percpu_usage?: number[] };
    system_cpu_usage?: number;
    online_cpus?: number;
  };
  precpu_stats?: { cpu_usage?: { total_usage?: number }; system_cpu_usage?: number };
  memory_stats?: { usage?: number; limit?: number; stats?: Record<string, number> };
  networks?: Record<string, { rx_bytes?: number; tx_bytes?: number }>;
  blkio_stats?: { io_service_bytes_recursive?: Array<{ op: string; value: number }> | null };
}

/** go's %.Ng as go-units uses it. */
function goG(x: number, precision: number): string {
  let s = x.toPrecision(precision);
  if (s.includes('e')) return String(Number(s));
  if (s.includes('.')) s = s.replace(/0+$/, '').replace(/\.$/, '');
  return s;
}

/** go-units BytesSize: binary units, 4 significant digits ("1.5MiB"). */
export function bytesSize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return goG(v, 4) + units[i];
}

/** One row of docker's stats table from a stats sample (docker/cli's formatter). */
export function statsRow(s: StatsJson, id: string, name: string): Record<string, string> {
  const cpu = s.cpu_stats ?? {};
  const pre = s.precpu_stats ?? {};
  const cpuDelta = (cpu.cpu_usage?.total_usage ?? 0) - (pre.cpu_usage?.total_usage ?? 0);
  const sysDelta = (cpu.system_cpu_usage ?? 0) - (pre.system_cpu_usage ?? 0);
  const online = cpu.online_cpus || cpu.cpu_usage?.percpu_usage?.length || 0;
  const cpuPerc = sysDelta > 0 && cpuDelta > 0 ? (cpuDelta / sysDelta) * online * 100 : 0;
  const mem = s.memory_stats ?? {};
  const usage = mem.usage ?? 0;
  const inactive = mem.stats?.total_inactive_file ?? mem.stats?.inactive_file;
  const used = inactive !== undefined && inactive < usage ? usage - inactive : usage;
  const limit = mem.limit ?? 0;
  let rx = 0;
  let tx = 0;
  for (const n of Object.values(s.networks ?? {})) {
    rx += n.rx_bytes ?? 0;
    tx += n.tx_bytes ?? 0;
  }
  let rd = 0;
  let wr = 0;
  for (const e of s.blkio_stats?.io_service_bytes_recursive ?? []) {
    if (/^read$/i.test(e.op)) rd += e.value;
    else if (/^write$/i.test(e.op)) wr += e.value;
  }
  const running = Boolean(s.read) && !String(s.read).startsWith('0001-');
  if (!running)
    return {
      ID: id.slice(0, 12),
      Container: id.slice(0, 12),
      Name: name,
      CPUPerc: '--',
      MemUsage: '-- / --',
      MemPerc: '--',
      NetIO: '--',
      BlockIO: '--',
      PIDs: '--',
    };
  return {
    ID: id.slice(0, 12),
    Container: id.slice(0, 12),
    Name: name,
    CPUPerc: `${cpuPerc.toFixed(2)}%`,
    MemUsage: `${bytesSize(used)} / ${bytesSize(limit)}`,
    MemPerc: `${(limit ? (used / limit) * 100 : 0).toFixed(2)}%`,
    NetIO: `${humanSize(rx)} / ${humanSize(tx)}`,
    BlockIO: `${humanSize(rd)} / ${humanSize(wr)}`,
    PIDs: String(s.pids_stats?.current ?? 0),
  };
}

const STATS_TABLE =
  'table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}';
const STATS_HEADERS = {
  ID: 'CONTAINER ID',
  Container: 'CONTAINER',
  Name: 'NAME',
  CPUPerc: 'CPU %',
  MemUsage: 'MEM USAGE / LIMIT',
  MemPerc: 'MEM %',
  NetIO: 'NET I/O',
  BlockIO: 'BLOCK I/O',
  PIDs: 'PIDS',
};

/** docker stats [--no-stream] [-a] [--format] [CONTAINER...]: one table, or a table redrawn every second. */
export async function stats(
  cli: Cli,
  names: string[],
  o: { all?: boolean; noStream?: boolean; stream?: boolean; format?: string; trunc?: boolean },
): Promise<void> {
  let targets: Array<{ id: string; name: string }>;
  if (names.length) {
    targets = [];
    const errors: string[] = [];
    for (const n of names) {
      try {
        const c = await cli.client.get<{ Id: string; Name: string }>(`/containers/${enc(n)}/json`);
        targets.push({ id: c.Id, name: c.Name.replace(/^\//, '') });
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
    if (errors.length) throw new CliError(errors.join('\n'));
  } else {
    const list = await cli.client.get<Array<{ Id: string; Names: string[] }>>('/containers/json', {
      all: Boolean(o.all),
    });
    targets = list.map((c) => ({ id: c.Id, name: (c.Names[0] ?? '').replace(/^\//, '') }));
  }
  const render = (rows: Array<Record<string, string>>): string =>
    formatList(rows, o.format, { headers: STATS_HEADERS, defaultTable: STATS_TABLE, quietField: 'ID' });
  const sample = async (t: { id: string; name: string }): Promise<Record<string, string>> => {
    const s = await cli.client
      .get<StatsJson>(`/containers/${t.id}/stats`, { stream: false })
      .catch(() => ({}) as StatsJson);
    return statsRow(s, t.id, t.name);
  };
  // The samples in parallel: each takes a second (the daemon's precpu interval), as docker's CLI does.
  if (o.noStream || o.stream === false) {
    cli.out(render(await Promise.all(targets.map(sample))));
    return;
  }
  let stop = false;
  process.once('SIGINT', () => {
    stop = true;
  });
  while (!stop) {
    const rows = await Promise.all(targets.map(sample));
    cli.out('\x1b[2J\x1b[H' + render(rows));
  }
}

/** docker update [flags] CONTAINER...: prints each name it updated. */
export async function update(cli: Cli, names: string[], o: ResourceFlags & { restart?: string }): Promise<void> {
  const body: Record<string, unknown> = resourceFields(o);
  if (o.restart !== undefined) {
    const [name, count] = o.restart.split(':') as [string, string | undefined];
    body.RestartPolicy = { Name: name, MaximumRetryCount: count ? Number(count) : 0 };
  }
  if (!Object.keys(body).length) throw new CliError('you must provide one or more flags when using this command');
  await eachName(cli, names, async (n) => {
    await cli.client.post(`/containers/${enc(n)}/update`, body);
    cli.out(n + '\n');
  });
}
