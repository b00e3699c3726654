/** cove stop|kill|restart|rm|ps|logs|inspect|wait|rename|port */
import type { Cli } from '../cli.js';
import { ApiError, CliError } from '../client.js';
import {
  formatEach,
  formatList,
  humanDuration,
  humanSize,
  inspectJson,
  sortedObject,
  unixTimeString,
} from '../format.js';
import { confirm, eachName, filtersFrom, reportErrors } from '../util.js';
import { Demuxer } from '../../api/stream.js';
import type { DockerContainerSummary } from '../../runtime/types.js';

/** Runs `fn` for each name, printing the name on success; docker keeps going after errors and exits 1. */
async function eachContainer(cli: Cli, names: string[], fn: (name: string) => Promise<void>): Promise<void> {
  await eachName(cli, names, async (n) => {
    await fn(n);
    cli.out(n + '\n');
  });
}

const enc = encodeURIComponent;

export async function stop(cli: Cli, names: string[], o: { timeout?: string; signal?: string }): Promise<void> {
  const query: Record<string, string> = {};
  if (o.timeout !== undefined) query.t = o.timeout;
  if (o.signal) query.signal = o.signal;
  await eachContainer(cli, names, (n) =>
    cli.client.post(`/containers/${enc(n)}/stop`, undefined, query).then(() => {}),
  );
}

export async function kill(cli: Cli, names: string[], o: { signal?: string }): Promise<void> {
  await eachContainer(cli, names, (n) =>
    cli.client
      .post(`/containers/${enc(n)}/kill`, undefined, o.signal ? { signal: o.signal } : undefined)
      .then(() => {}),
  );
}

export async function restart(cli: Cli, names: string[], o: { timeout?: string; signal?: string }): Promise<void> {
  const query: Record<string, string> = {};
  if (o.timeout !== undefined) query.t = o.timeout;
  if (o.signal) query.signal = o.signal;
  await eachContainer(cli, names, (n) =>
    cli.client.post(`/containers/${enc(n)}/restart`, undefined, query).then(() => {}),
  );
}

export async function rm(
  cli: Cli,
  names: string[],
  o: { force?: boolean; volumes?: boolean; link?: boolean },
): Promise<void> {
  await eachContainer(cli, names, (n) =>
    cli.client
      .json('DELETE', `/containers/${enc(n)}`, {
        query: { force: Boolean(o.force), v: Boolean(o.volumes), link: Boolean(o.link) },
      })
      .then(() => {}),
  );
}

export async function prune(cli: Cli, o: { force?: boolean; filter?: string[] }): Promise<void> {
  if (
    !o.force &&
    !(await confirm(
      cli,
      'WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ',
    ))
  )
    return;
  const res = await cli.client.post<{ ContainersDeleted: string[] | null; SpaceReclaimed: number }>(
    '/containers/prune',
    undefined,
    { filters: JSON.stringify(filtersFrom(o.filter)) },
  );
  let out = '';
  if (res.ContainersDeleted?.length)
    out = 'Deleted Containers:\n' + res.ContainersDeleted.map((n) => n + '\n').join('') + '\n';
  out += `Total reclaimed space: ${humanSize(res.SpaceReclaimed)}\n`;
  cli.out(out);
}

export async function rename(cli: Cli, container: string, newName: string): Promise<void> {
  await cli.client.post(`/containers/${enc(container)}/rename`, undefined, { name: newName });
}

/** go-connections DisplayablePorts, simplified: one entry per binding, sorted. */
export function displayPorts(ports: DockerContainerSummary['Ports']): string {
  const seen = new Set<string>();
  const out: string[] = [];
  const sorted = [...ports].sort(
    (a, b) =>
      a.PrivatePort - b.PrivatePort ||
      (a.PublicPort ?? 0) - (b.PublicPort ?? 0) ||
      (a.IP ?? '').localeCompare(b.IP ?? ''),
  );
  for (const p of sorted) {
    let s: string;
    if (p.PublicPort) {
      const ip = p.IP ?? '';
      const host = ip.includes(':') ? `[${ip}]` : ip;
      s = `${host ? host + ':' : ''}${p.PublicPort}->${p.PrivatePort}/${p.Type}`;
    } else {
      s = `${p.PrivatePort}/${p.Type}`;
    }
    if (!seen.has(s)) {
      seen.add(s);
      out.push(s);
    }
  }
  return out.join(', ');
}

/** Docker's Ellipsis: at most n characters, the last one "…" when cut. */
function ellipsis(s: string, n: number): string {
  const chars = [...s];
  return chars.length <= n ? s : chars.slice(0, n - 1).join('') + '…';
}

function containerRow(
  c: DockerContainerSummary & { SizeRw?: number; SizeRootFs?: number },
  trunc: boolean,
): Record<string, unknown> {
  const names = c.Names.map((n) => n.replace(/^\//, ''));
  const shownNames = trunc ? names.filter((n) => !n.includes('/')).slice(0, 1) : names;
  let image = c.Image || '<no image>';
  if (trunc && /^sha256:[0-9a-f]{64}$/.test(image)) image = image.slice(7, 19);
  const srw = humanSize(c.SizeRw ?? 0);
  const size = (c.SizeRootFs ?? 0) > 0 ? `${srw} (virtual ${humanSize(c.SizeRootFs!)})` : srw;
  return sortedObject({
    ID: trunc ? c.Id.slice(0, 12) : c.Id,
    Image: image,
    Command: JSON.stringify(trunc ? ellipsis(c.Command, 20) : c.Command),
    CreatedAt: unixTimeString(c.Created),
    RunningFor: `${humanDuration(Date.now() - c.Created * 1000)} ago`,
    Ports: displayPorts(c.Ports ?? []),
    State: c.State,
    Status: c.Status,
    Size: size,
    Names: shownNames.join(','),
    Labels: Object.keys(c.Labels ?? {})
      .sort()
      .map((k) => `${k}=${c.Labels[k]}`)
      .join(','),
    Mounts: '',
    LocalVolumes: '0',
    Networks: Object.keys(c.NetworkSettings?.Networks ?? {})
      .sort()
      .join(','),
    Platform: null,
  });
}

export async function ps(
  cli: Cli,
  o: {
    all?: boolean;
    quiet?: boolean;
    filter?: string[];
    format?: string;
    last?: string;
    latest?: boolean;
    size?: boolean;
    trunc?: boolean;
  },
): Promise<void> {
  const query: Record<string, string | boolean | number> = {
    all: Boolean(o.all),
    filters: JSON.stringify(filtersFrom(o.filter)),
  };
  const limit = o.latest ? 1 : o.last !== undefined ? Number(o.last) : -1;
  if (limit > 0) {
    query.limit = limit;
    query.all = true;
  }
  if (o.size) query.size = true;
  const list = await cli.client.get<DockerContainerSummary[]>('/containers/json', query);
  const trunc = o.trunc !== false;
  const rows = list.map((c) => containerRow(c, trunc));
  const table = o.size
    ? 'table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}'
    : 'table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}';
  cli.out(
    formatList(
      rows,
      o.format,
      {
        headers: {
          ID: 'CONTAINER ID',
          Image: 'IMAGE',
          Command: 'COMMAND',
          CreatedAt: 'CREATED AT',
          RunningFor: 'CREATED',
          Ports: 'PORTS',
          State: 'STATE',
          Status: 'STATUS',
          Size: 'SIZE',
          Names: 'NAMES',
          Labels: 'LABELS',
          Mounts: 'MOUNTS',
          LocalVolumes: 'LOCAL VOLUMES',
          Networks: 'NETWORKS',
          Platform: 'PLATFORM',
        },
        defaultTable: table,
        quietField: 'ID',
      },
      Boolean(o.quiet),
    ),
  );
}

/** "42m", "10s", "2h" → unix seconds before now; anything else passes through (RFC 3339 or unix time). */
function relativeTime(v: string): string {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(v);
  if (!m) return v;
  const mult = { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return String(Math.floor(Date.now() / 1000 - Number(m[1]) * mult));
}

export async function logs(
  cli: Cli,
  container: string,
  o: { follow?: boolean; tail?: string; timestamps?: boolean; since?: string; until?: string },
): Promise<void> {
  const info = await cli.client.get<{ Config: { Tty: boolean } }>(`/containers/${enc(container)}/json`);
  const query: Record<string, string | boolean> = {
    stdout: true,
    stderr: true,
    follow: Boolean(o.follow),
    timestamps: Boolean(o.timestamps),
    tail: o.tail ?? 'all',
  };
  if (o.since) query.since = relativeTime(o.since);
  if (o.until) query.until = relativeTime(o.until);
  const res = await cli.client.raw('GET', `/containers/${enc(container)}/logs`, { query });
  const demux = new Demuxer((stream, data) => (stream === 2 ? process.stderr : process.stdout).write(data));
  for await (const chunk of res) {
    if (info.Config.Tty) process.stdout.write(chunk as Buffer);
    else demux.push(chunk as Buffer);
  }
}

async function inspectOne(cli: Cli, kind: string, name: string): Promise<unknown> {
  const path =
    kind === 'container'
      ? `/containers/${enc(name)}/json`
      : kind === 'image'
        ? `/images/${name}/json`
        : `/networks/${enc(name)}`;
  return cli.client.get(path);
}

async function inspectKinds(cli: Cli, names: string[], kinds: string[], o: { format?: string }): Promise<void> {
  const found: unknown[] = [];
  const errors: string[] = [];
  for (const n of names) {
    let hit: unknown;
    for (const kind of kinds) {
      try {
        hit = await inspectOne(cli, kind, n);
        break;
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 404) throw e;
      }
    }
    if (hit === undefined)
      errors.push(kinds.length === 1 ? `Error: No such ${kinds[0]}: ${n}` : `Error: No such object: ${n}`);
    else found.push(hit);
  }
  if (o.format) cli.out(formatEach(found, o.format));
  else cli.out(inspectJson(found));
  reportErrors(cli, errors);
}

export async function inspect(cli: Cli, names: string[], o: { format?: string }): Promise<void> {
  await inspectKinds(cli, names, ['container'], o);
}

/** `cove inspect`: a container, else an image, else a network (or --type). */
export async function inspectAny(cli: Cli, names: string[], o: { format?: string; type?: string }): Promise<void> {
  if (o.type && !['container', 'image', 'network'].includes(o.type))
    throw new CliError(`"${o.type}" is not a valid value for --type`);
  await inspectKinds(cli, names, o.type ? [o.type] : ['container', 'image', 'network'], o);
}

export async function wait(cli: Cli, names: string[]): Promise<void> {
  await eachName(cli, names, async (n) => {
    const r = await cli.client.post<{ StatusCode: number }>(`/containers/${enc(n)}/wait`, undefined, {
      condition: 'not-running',
    });
    cli.out(`${r.StatusCode}\n`);
  });
}

export async function port(cli: Cli, container: string, privatePort?: string): Promise<void> {
  const info = await cli.client.get<{
    Id: string;
    NetworkSettings: { Ports: Record<string, Array<{ HostIp: string; HostPort: string }> | null> | null };
  }>(`/containers/${enc(container)}/json`);
  const ports = info.NetworkSettings.Ports ?? {};
  const fmt = (b: { HostIp: string; HostPort: string }) =>
    `${b.HostIp.includes(':') ? `[${b.HostIp}]` : b.HostIp || '0.0.0.0'}:${b.HostPort}`;
  if (privatePort) {
    const key = privatePort.includes('/') ? privatePort : `${privatePort}/tcp`;
    const bindings = ports[key];
    if (!bindings || bindings.length === 0)
      throw new CliError(`Error: No public port '${key}' published for ${container}`);
    for (const b of bindings) cli.out(fmt(b) + '\n');
    return;
  }
  const keys = Object.keys(ports).sort((a, b) => parseInt(a, 10) - parseInt(b, 10) || a.localeCompare(b));
  for (const k of keys) for (const b of ports[k] ?? []) cli.out(`${k} -> ${fmt(b)}\n`);
}

export async function pause(cli: Cli, names: string[]): Promise<void> {
  await eachContainer(cli, names, (n) => cli.client.post(`/containers/${enc(n)}/pause`).then(() => {}));
}

export async function unpause(cli: Cli, names: string[]): Promise<void> {
  await eachContainer(cli, names, (n) => cli.client.post(`/containers/${enc(n)}/unpause`).then(() => {}));
}

/** docker top: the daemon's ps table, columns padded as docker's tabwriter does. */
export async function top(cli: Cli, name: string, psArgs: string[] | undefined): Promise<void> {
  const res = await cli.client.get<{ Titles: string[]; Processes: string[][] }>(
    `/containers/${enc(name)}/top`,
    psArgs?.length ? { ps_args: psArgs.join(' ') } : undefined,
  );
  const rows = [res.Titles, ...res.Processes];
  const widths = res.Titles.map((_t, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  cli.out(
    rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 3))).join('')).join('\n') + '\n',
  );
}
