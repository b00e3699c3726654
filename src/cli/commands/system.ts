/** cove version | info | events */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../../common/repo-root.js';
import type { Cli } from '../cli.js';
import { CLIENT_API_VERSION, readProgress } from '../client.js';
import { formatEach, goJson } from '../format.js';
import { filtersFrom } from '../util.js';
import { renderTemplate } from '../template.js';

export function clientVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(repoRoot(import.meta.url), 'package.json'), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export async function version(cli: Cli, o: { format?: string }): Promise<void> {
  const client = {
    Version: clientVersion(),
    ApiVersion: CLIENT_API_VERSION,
    DefaultAPIVersion: CLIENT_API_VERSION,
    GoVersion: process.version,
    Os: process.platform,
    Arch: process.arch === 'x64' ? 'amd64' : process.arch,
  };
  let server: Record<string, unknown> | undefined;
  let serverErr: Error | undefined;
  try {
    server = await cli.client.get<Record<string, unknown>>('/version');
  } catch (e) {
    serverErr = e as Error;
  }
  if (o.format) {
    cli.out(renderTemplate(o.format, { Client: client, Server: server ?? null }) + '\n');
  } else {
    const pad = (k: string, n: number) => (k + ':').padEnd(n);
    let out = 'Client:\n';
    out += ` ${pad('Version', 18)} ${client.Version}\n ${pad('API version', 18)} ${client.ApiVersion}\n ${pad('Node version', 18)} ${client.GoVersion}\n ${pad('OS/Arch', 18)} ${client.Os}/${client.Arch}\n`;
    if (server) {
      const platform = (server.Platform as { Name?: string } | undefined)?.Name ?? '';
      out += `\nServer:${platform ? ' ' + platform : ''}\n`;
      const comps =
        (server.Components as Array<{ Name: string; Version: string; Details?: Record<string, string> }> | undefined) ??
        [];
      // docker's layout: the Engine's lines from its Details, every other component's Version and Details.
      for (const c of comps) {
        const d = c.Details ?? {};
        out += ` ${c.Name}:\n  ${pad('Version', 17)} ${c.Version}\n`;
        if (c.Name === 'Engine') {
          out += `  ${pad('API version', 17)} ${d.ApiVersion ?? String(server.ApiVersion)} (minimum version ${d.MinAPIVersion ?? String(server.MinAPIVersion)})\n`;
          out += `  ${pad('Node version', 17)} ${d.GoVersion ?? String(server.GoVersion ?? '')}\n`;
          out += `  ${pad('Git commit', 17)} ${d.GitCommit ?? String(server.GitCommit ?? '')}\n`;
          out += `  ${pad('Built', 17)} ${d.BuildTime ?? String(server.BuildTime ?? '')}\n`;
          out += `  ${pad('OS/Arch', 17)} ${d.Os ?? String(server.Os)}/${d.Arch ?? String(server.Arch)}\n`;
          out += `  ${pad('Experimental', 17)} ${d.Experimental ?? 'false'}\n`;
        } else {
          for (const [k, v] of Object.entries(d)) out += `  ${pad(k, 17)} ${v}\n`;
        }
      }
    }
    cli.out(out);
  }
  if (serverErr) throw serverErr;
}

export async function info(cli: Cli, o: { format?: string }): Promise<void> {
  const i = await cli.client.get<Record<string, unknown>>('/info');
  if (o.format) {
    cli.out(formatEach([i], o.format));
    return;
  }
  const line = (k: string, v: unknown, indent = 1) =>
    `${' '.repeat(indent)}${k}: ${v === undefined || v === null ? '' : String(v)}\n`;
  let out = 'Client:\n' + line('Version', clientVersion()) + line('Context', 'default') + '\nServer:\n';
  out +=
    line('Containers', i.Containers) +
    line('Running', i.ContainersRunning, 2) +
    line('Paused', i.ContainersPaused, 2) +
    line('Stopped', i.ContainersStopped, 2);
  out += line('Images', i.Images) + line('Server Version', i.ServerVersion) + line('Storage Driver', i.Driver);
  const plugins = i.Plugins as { Network?: string[] } | undefined;
  if (plugins?.Network) out += ' Plugins:\n' + line('Network', plugins.Network.join(' '), 2);
  const swarm = i.Swarm as { LocalNodeState?: string } | undefined;
  out += line('Swarm', swarm?.LocalNodeState ?? 'inactive');
  out +=
    line('Kernel Version', i.KernelVersion) +
    line('Operating System', i.OperatingSystem) +
    line('OSType', i.OSType) +
    line('Architecture', i.Architecture);
  out +=
    line('CPUs', i.NCPU) +
    line('Total Memory', typeof i.MemTotal === 'number' ? `${(i.MemTotal / 1024 ** 3).toFixed(2)}GiB` : '') +
    line('Name', i.Name) +
    line('ID', i.ID);
  const pools = i.DefaultAddressPools as Array<{ Base: string; Size: number }> | undefined;
  if (pools?.length)
    out += ' Default Address Pools:\n' + pools.map((p) => `   Base: ${p.Base}, Size: ${p.Size}\n`).join('');
  cli.out(out);
  for (const w of (i.Warnings as string[] | undefined) ?? []) cli.err(w + '\n');
}

/** docker's default event line: time type action id (k=v, ...). */
function eventLine(ev: {
  Type: string;
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  timeNano: number;
}): string {
  const ns = BigInt(ev.timeNano);
  const iso = new Date(Number(ns / 1_000_000n)).toISOString().replace(/\.\d+Z$/, '');
  const frac = String(ns % 1_000_000_000n).padStart(9, '0');
  const attrs = Object.keys(ev.Actor.Attributes)
    .sort()
    .map((k) => `${k}=${ev.Actor.Attributes[k]}`)
    .join(', ');
  return `${iso}.${frac}Z ${ev.Type} ${ev.Action} ${ev.Actor.ID}${attrs ? ` (${attrs})` : ''}\n`;
}

export async function events(
  cli: Cli,
  o: { since?: string; until?: string; filter?: string[]; format?: string },
): Promise<void> {
  const query: Record<string, string> = { filters: JSON.stringify(filtersFrom(o.filter)) };
  if (o.since) query.since = o.since;
  if (o.until) query.until = o.until;
  const res = await cli.client.raw('GET', '/events', { query });
  await readProgress(res, (ev) => {
    if (!o.format) cli.out(eventLine(ev as Parameters<typeof eventLine>[0]));
    else if (o.format === 'json' || o.format === '{{json .}}') cli.out(goJson(ev) + '\n');
    else cli.out(formatEach([ev], o.format));
  });
}
