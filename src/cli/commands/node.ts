/** `cove node ls|inspect|promote|demote|update|rm`, with docker's tables and words. */
import type { Cli } from '../cli.js';
import { CliError } from '../client.js';
import { filtersFrom, eachName } from '../util.js';
import { formatEach, formatList, inspectJson } from '../format.js';

interface NodeObj {
  ID: string;
  Version: { Index: number };
  CreatedAt: string;
  Spec: { Name?: string; Labels: Record<string, string>; Role: string; Availability: string };
  Description: {
    Hostname: string;
    Platform: { Architecture: string; OS: string };
    Resources: { NanoCPUs: number; MemoryBytes: number };
    Engine: { EngineVersion: string; Plugins: Array<{ Type: string; Name: string }> };
    TLSInfo?: { TrustRoot: string; CertIssuerSubject: string; CertIssuerPublicKey: string };
  };
  Status: { State: string; Addr: string; Message?: string };
  ManagerStatus?: { Leader?: boolean; Reachability: string; Addr: string };
}

const cap = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

async function selfId(cli: Cli): Promise<string> {
  const info = await cli.client.get<{ Swarm: { NodeID: string } }>('/info');
  return info.Swarm.NodeID;
}

async function resolveRef(cli: Cli, ref: string): Promise<string> {
  return ref === 'self' ? selfId(cli) : ref;
}

export async function ls(cli: Cli, o: { quiet?: boolean; filter?: string[]; format?: string }): Promise<void> {
  const nodes = await cli.client.get<NodeObj[]>('/nodes', { filters: JSON.stringify(filtersFrom(o.filter)) });
  const self = await selfId(cli);
  const rows = nodes.map((n) => ({
    ID: n.ID === self ? `${n.ID} *` : n.ID,
    Self: String(n.ID === self),
    Hostname: n.Description.Hostname,
    Status: cap(n.Status.State),
    Availability: cap(n.Spec.Availability),
    ManagerStatus: n.ManagerStatus ? (n.ManagerStatus.Leader ? 'Leader' : cap(n.ManagerStatus.Reachability)) : '',
    EngineVersion: n.Description.Engine.EngineVersion,
    TLSStatus: 'Ready',
  }));
  if (o.quiet) {
    cli.out(nodes.map((n) => n.ID + '\n').join(''));
    return;
  }
  cli.out(
    formatList(rows, o.format, {
      headers: {
        ID: 'ID',
        Self: '',
        Hostname: 'HOSTNAME',
        Status: 'STATUS',
        Availability: 'AVAILABILITY',
        ManagerStatus: 'MANAGER STATUS',
        EngineVersion: 'ENGINE VERSION',
        TLSStatus: 'TLS STATUS',
      },
      defaultTable:
        'table {{.ID}}\t{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}\t{{.EngineVersion}}',
      quietField: 'ID',
    }),
  );
}

function humanBytes(b: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = b;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${Number(v.toFixed(2))}${units[i]}`;
}

function pretty(n: NodeObj): string {
  const l: string[] = [];
  l.push(`ID:\t\t\t${n.ID}`);
  if (n.Spec.Name) l.push(`Name:\t\t\t${n.Spec.Name}`);
  const labels = Object.entries(n.Spec.Labels ?? {});
  if (labels.length) {
    l.push('Labels:');
    for (const [k, v] of labels) l.push(` - ${k}=${v}`);
  }
  l.push(`Hostname:              \t${n.Description.Hostname}`);
  l.push(`Joined at:             \t${n.CreatedAt.replace('T', ' ').replace('Z', ' +0000 utc')}`);
  l.push('Status:');
  l.push(` State:\t\t\t${cap(n.Status.State)}`);
  if (n.Status.Message) l.push(` Message:              \t${n.Status.Message}`);
  l.push(` Availability:         \t${cap(n.Spec.Availability)}`);
  l.push(` Address:\t\t${n.Status.Addr}`);
  if (n.ManagerStatus) {
    l.push('Manager Status:');
    l.push(` Address:\t\t${n.ManagerStatus.Addr}`);
    l.push(` Raft Status:\t\t${cap(n.ManagerStatus.Reachability)}`);
    l.push(` Leader:\t\t${n.ManagerStatus.Leader ? 'Yes' : 'No'}`);
  }
  l.push('Platform:');
  l.push(` Operating System:\t${n.Description.Platform.OS}`);
  l.push(` Architecture:\t\t${n.Description.Platform.Architecture}`);
  l.push('Resources:');
  l.push(` CPUs:\t\t\t${n.Description.Resources.NanoCPUs / 1e9}`);
  l.push(` Memory:\t\t${humanBytes(n.Description.Resources.MemoryBytes)}`);
  const plugins = new Map<string, string[]>();
  for (const p of n.Description.Engine.Plugins ?? []) plugins.set(p.Type, [...(plugins.get(p.Type) ?? []), p.Name]);
  if (plugins.size) {
    l.push('Plugins:');
    for (const t of [...plugins.keys()].sort()) l.push(` ${t}:\t\t${plugins.get(t)!.sort().join(', ')}`);
  }
  l.push(`Engine Version:\t\t${n.Description.Engine.EngineVersion}`);
  if (n.Description.TLSInfo) {
    l.push('TLS Info:');
    l.push(` TrustRoot:\n${n.Description.TLSInfo.TrustRoot}`);
    l.push(` Issuer Subject:\t${n.Description.TLSInfo.CertIssuerSubject}`);
    l.push(` Issuer Public Key:\t${n.Description.TLSInfo.CertIssuerPublicKey}`);
  }
  return l.join('\n') + '\n';
}

export async function inspect(cli: Cli, refs: string[], o: { format?: string; pretty?: boolean }): Promise<void> {
  const found: NodeObj[] = [];
  await eachName(cli, refs, async (ref) => {
    found.push(await cli.client.get<NodeObj>(`/nodes/${encodeURIComponent(await resolveRef(cli, ref))}`));
  });
  if (o.pretty) cli.out(found.map(pretty).join('\n'));
  else if (o.format) cli.out(formatEach(found, o.format));
  else cli.out(inspectJson(found));
}

async function updateSpec(cli: Cli, ref: string, fn: (spec: NodeObj['Spec']) => void): Promise<void> {
  const n = await cli.client.get<NodeObj>(`/nodes/${encodeURIComponent(await resolveRef(cli, ref))}`);
  const spec = { ...n.Spec, Labels: { ...(n.Spec.Labels ?? {}) } };
  fn(spec);
  await cli.client.post(`/nodes/${n.ID}/update`, spec, { version: n.Version.Index });
}

export async function promote(cli: Cli, refs: string[]): Promise<void> {
  await eachName(cli, refs, async (ref) => {
    const n = await cli.client.get<NodeObj>(`/nodes/${encodeURIComponent(await resolveRef(cli, ref))}`);
    if (n.Spec.Role === 'manager') {
      cli.out(`Node ${ref} is already a manager.\n`);
      return;
    }
    await updateSpec(cli, ref, (s) => {
      s.Role = 'manager';
    });
    cli.out(`Node ${ref} promoted to a manager in the swarm.\n`);
  });
}

export async function demote(cli: Cli, refs: string[]): Promise<void> {
  await eachName(cli, refs, async (ref) => {
    const n = await cli.client.get<NodeObj>(`/nodes/${encodeURIComponent(await resolveRef(cli, ref))}`);
    if (n.Spec.Role === 'worker') {
      cli.out(`Node ${ref} is already a worker.\n`);
      return;
    }
    await updateSpec(cli, ref, (s) => {
      s.Role = 'worker';
    });
    cli.out(`Manager ${ref} demoted in the swarm.\n`);
  });
}

export async function update(
  cli: Cli,
  ref: string,
  o: { availability?: string; role?: string; labelAdd?: string[]; labelRm?: string[] },
): Promise<void> {
  if (o.availability && !['active', 'pause', 'drain'].includes(o.availability.toLowerCase())) {
    throw new CliError(
      `invalid argument "${o.availability}" for "--availability" flag: invalid availability ${o.availability}`,
      125,
    );
  }
  if (o.role && !['worker', 'manager'].includes(o.role.toLowerCase())) {
    throw new CliError(`invalid argument "${o.role}" for "--role" flag: invalid role ${o.role}`, 125);
  }
  await updateSpec(cli, ref, (s) => {
    if (o.availability) s.Availability = o.availability.toLowerCase();
    if (o.role) s.Role = o.role.toLowerCase();
    for (const kv of o.labelAdd ?? []) {
      const i = kv.indexOf('=');
      s.Labels[i < 0 ? kv : kv.slice(0, i)] = i < 0 ? '' : kv.slice(i + 1);
    }
    for (const k of o.labelRm ?? []) delete s.Labels[k];
  });
  cli.out(`${ref}\n`);
}

export async function rm(cli: Cli, refs: string[], o: { force?: boolean }): Promise<void> {
  await eachName(cli, refs, async (ref) => {
    await cli.client.json('DELETE', `/nodes/${encodeURIComponent(await resolveRef(cli, ref))}`, {
      query: { force: Boolean(o.force) },
    });
    cli.out(`${ref}\n`);
  });
}
