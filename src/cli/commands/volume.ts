/** cove volume create|ls|inspect|rm|prune, as docker's. */
import type { Cli } from '../cli.js';
import { ApiError } from '../client.js';
import { formatEach, formatList, inspectJson, naturalLess, sortedObject } from '../format.js';
import { confirm, eachName, filtersFrom, keyValues } from '../util.js';
import type { DockerVolume } from '../../runtime/volumes/store.js';

const enc = encodeURIComponent;

export async function create(
  cli: Cli,
  name: string | undefined,
  o: { driver?: string; opt?: string[]; label?: string[]; name?: string },
): Promise<void> {
  const v = await cli.client.post<DockerVolume>('/volumes/create', {
    Name: name ?? o.name ?? '',
    Driver: o.driver ?? 'local',
    DriverOpts: keyValues(o.opt),
    Labels: keyValues(o.label),
  });
  cli.out(v.Name + '\n');
}

export async function ls(cli: Cli, o: { quiet?: boolean; format?: string; filter?: string[] }): Promise<void> {
  const res = await cli.client.get<{ Volumes: DockerVolume[] | null; Warnings: string[] | null }>('/volumes', {
    filters: JSON.stringify(filtersFrom(o.filter)),
  });
  const vols = (res.Volumes ?? []).sort((a, b) => naturalLess(a.Name, b.Name));
  const rows = vols.map((v) =>
    sortedObject({
      Driver: v.Driver,
      Name: v.Name,
      Scope: v.Scope,
      Mountpoint: v.Mountpoint,
      CreatedAt: v.CreatedAt,
      Labels: Object.keys(v.Labels ?? {})
        .sort()
        .map((k) => `${k}=${v.Labels![k]}`)
        .join(','),
      Size: 'N/A',
      Links: 'N/A',
      Availability: 'N/A',
      Group: 'N/A',
    }),
  );
  cli.out(
    formatList(
      rows,
      o.format,
      {
        headers: {
          Driver: 'DRIVER',
          Name: 'VOLUME NAME',
          Scope: 'SCOPE',
          Mountpoint: 'MOUNTPOINT',
          CreatedAt: 'CREATED',
          Labels: 'LABELS',
          Size: 'SIZE',
          Links: 'LINKS',
        },
        defaultTable: 'table {{.Driver}}\t{{.Name}}',
        quietField: 'Name',
      },
      Boolean(o.quiet),
    ),
  );
  for (const w of res.Warnings ?? []) cli.err(w + '\n');
}

export async function inspect(cli: Cli, names: string[], o: { format?: string }): Promise<void> {
  const found: DockerVolume[] = [];
  const errors: string[] = [];
  for (const n of names) {
    try {
      found.push(await cli.client.get<DockerVolume>(`/volumes/${enc(n)}`));
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) errors.push(`Error: No such volume: ${n}`);
      else throw e;
    }
  }
  cli.out(o.format ? formatEach(found, o.format) : inspectJson(found));
  for (const e of errors) cli.err(e + '\n');
  if (errors.length) cli.exitCode = 1;
}

export async function rm(cli: Cli, names: string[], o: { force?: boolean }): Promise<void> {
  await eachName(cli, names, async (n) => {
    await cli.client.json('DELETE', `/volumes/${enc(n)}`, { query: { force: Boolean(o.force) } });
    cli.out(n + '\n');
  });
}

export async function prune(cli: Cli, o: { force?: boolean; all?: boolean; filter?: string[] }): Promise<void> {
  if (!o.force) {
    const what = o.all
      ? 'all local volumes not used by at least one container'
      : 'all anonymous local volumes not used by at least one container';
    if (!(await confirm(cli, `WARNING! This will remove ${what}.\nAre you sure you want to continue? [y/N] `))) return;
  }
  const filters = filtersFrom(o.filter);
  if (o.all) filters.all = ['true'];
  const res = await cli.client.post<{ VolumesDeleted: string[] | null; SpaceReclaimed: number }>(
    '/volumes/prune',
    undefined,
    { filters: JSON.stringify(filters) },
  );
  let out = '';
  if (res.VolumesDeleted?.length) out = 'Deleted Volumes:\n' + res.VolumesDeleted.map((n) => n + '\n').join('') + '\n';
  out += `Total reclaimed space: ${humanBytes(res.SpaceReclaimed)}\n`;
  cli.out(out);
}

/** docker's units.HumanSize (decimal, 4 significant digits). */
function humanBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number(v.toPrecision(4))}${units[i]}`;
}
