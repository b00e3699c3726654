/** cove network ls|create|rm|inspect|connect|disconnect|prune */
import type { Cli } from '../cli.js';
import { ApiError, CliError } from '../client.js';
import { formatEach, formatList, goTimeString, inspectJson, naturalLess, sortedObject } from '../format.js';
import { filtersFrom, keyValues, confirm } from '../util.js';
import type { DockerNetwork, DockerIpamConfig } from '../../network/types.js';

const shortId = (id: string) => id.replace(/^sha256:/, '').slice(0, 12);

function labelsString(labels: Record<string, string> | null | undefined): string {
  return Object.keys(labels ?? {})
    .sort()
    .map((k) => `${k}=${labels![k]}`)
    .join(',');
}

export async function ls(
  cli: Cli,
  opts: { quiet?: boolean; format?: string; filter?: string[]; trunc?: boolean },
): Promise<void> {
  const nets = await cli.client.get<DockerNetwork[]>('/networks', {
    filters: JSON.stringify(filtersFrom(opts.filter)),
  });
  nets.sort((a, b) => naturalLess(a.Name, b.Name));
  const trunc = opts.trunc !== false;
  const rows = nets.map((n) =>
    sortedObject({
      ID: trunc ? shortId(n.Id) : n.Id,
      Name: n.Name,
      Driver: n.Driver,
      Scope: n.Scope,
      IPv4: String(n.EnableIPv4 ?? true),
      IPv6: String(Boolean(n.EnableIPv6)),
      Internal: String(Boolean(n.Internal)),
      Labels: labelsString(n.Labels),
      CreatedAt: goTimeString(n.Created),
    }),
  );
  cli.out(
    formatList(
      rows,
      opts.format,
      {
        headers: {
          ID: 'NETWORK ID',
          Name: 'NAME',
          Driver: 'DRIVER',
          Scope: 'SCOPE',
          IPv4: 'IPV4',
          IPv6: 'IPV6',
          Internal: 'INTERNAL',
          Labels: 'LABELS',
          CreatedAt: 'CREATED AT',
        },
        defaultTable: 'table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}',
        quietField: 'ID',
      },
      Boolean(opts.quiet),
    ),
  );
}

interface CreateOpts {
  driver?: string;
  subnet?: string[];
  gateway?: string[];
  ipRange?: string[];
  auxAddress?: string[];
  ipv6?: boolean;
  ipv4?: boolean;
  internal?: boolean;
  attachable?: boolean;
  ingress?: boolean;
  opt?: string[];
  label?: string[];
  scope?: string;
  ipamDriver?: string;
  ipamOpt?: string[];
  configOnly?: boolean;
  configFrom?: string;
}

/** The docker CLI's createIPAMConfig: each gateway/range/aux address goes with the one subnet that holds it. */
async function ipamConfigs(o: CreateOpts): Promise<DockerIpamConfig[]> {
  const subnets = o.subnet ?? [];
  const { default: ipaddr } = await import('ipaddr.js');
  const contains = (subnet: string, ip: string): boolean => {
    try {
      const range = ipaddr.parseCIDR(subnet);
      const addr = ipaddr.parse(ip.includes('/') ? ip.split('/')[0]! : ip);
      return addr.kind() === range[0].kind() && addr.match(range);
    } catch {
      return false;
    }
  };
  for (const s of subnets) {
    try {
      ipaddr.parseCIDR(s);
    } catch {
      throw new CliError(`invalid subnet ${s}: invalid CIDR address: ${s}`);
    }
  }
  const configs: DockerIpamConfig[] = subnets.map((s) => ({ Subnet: s }));
  const place = (
    value: string,
    what: string,
    set: (c: DockerIpamConfig) => void,
    existing: (c: DockerIpamConfig) => boolean,
  ) => {
    const idx = subnets.findIndex((s) => contains(s, value));
    if (idx < 0) throw new CliError(`no matching subnet for ${what} ${value}`);
    const c = configs[idx]!;
    if (existing(c))
      throw new CliError(
        `cannot configure multiple ${what === 'range' ? 'ranges' : 'gateways'} (${value}) for the same subnet (${subnets[idx]})`,
      );
    set(c);
  };
  for (const g of o.gateway ?? [])
    place(
      g,
      'gateway',
      (c) => {
        c.Gateway = g;
      },
      (c) => c.Gateway !== undefined,
    );
  for (const r of o.ipRange ?? [])
    place(
      r,
      'range',
      (c) => {
        c.IPRange = r;
      },
      (c) => c.IPRange !== undefined,
    );
  for (const a of o.auxAddress ?? []) {
    const [k, v] = a.split('=', 2) as [string, string | undefined];
    if (v === undefined) throw new CliError(`invalid aux-address ${a}: expected key=ip`);
    place(
      v,
      'aux-address',
      (c) => {
        c.AuxiliaryAddresses = { ...(c.AuxiliaryAddresses ?? {}), [k]: v };
      },
      () => false,
    );
  }
  return configs;
}

export async function create(cli: Cli, name: string, o: CreateOpts): Promise<void> {
  if (!o.subnet?.length && (o.gateway?.length || o.ipRange?.length || o.auxAddress?.length)) {
    throw new CliError('every ip-range or gateway must have a corresponding subnet');
  }
  const body: Record<string, unknown> = {
    Name: name,
    Driver: o.driver ?? 'bridge',
    Scope: o.scope ?? '',
    Internal: Boolean(o.internal),
    Attachable: Boolean(o.attachable),
    Ingress: Boolean(o.ingress),
    ConfigOnly: Boolean(o.configOnly),
    IPAM: { Driver: o.ipamDriver ?? 'default', Config: await ipamConfigs(o), Options: keyValues(o.ipamOpt) },
    Options: keyValues(o.opt),
    Labels: keyValues(o.label),
  };
  if (o.configFrom) body.ConfigFrom = { Network: o.configFrom };
  if (o.ipv6 !== undefined) body.EnableIPv6 = o.ipv6;
  if (o.ipv4 !== undefined) body.EnableIPv4 = o.ipv4;
  const res = await cli.client.post<{ Id: string; Warning?: string }>('/networks/create', body);
  if (res.Warning) cli.err(res.Warning + '\n');
  cli.out(res.Id + '\n');
}

/** docker's question before removing the routing-mesh network (cli/command/network/remove.go, word for word). */
export const INGRESS_WARNING =
  'WARNING! Before removing the routing-mesh network, make sure all the nodes in your swarm run the same docker engine version. ' +
  'Otherwise, removal may not be effective and functionality of newly create ingress networks will be impaired.\nAre you sure you want to continue?';

export async function rm(cli: Cli, names: string[], opts: { force?: boolean }): Promise<void> {
  let failed = false;
  for (const n of names) {
    try {
      // As docker does: look first; the ingress network is removed only on a yes (a no skips it, quietly).
      const net = await cli.client.get<DockerNetwork>(`/networks/${encodeURIComponent(n)}`).catch(() => undefined);
      if (net?.Ingress && !(await confirm(cli, INGRESS_WARNING + ' [y/N] '))) continue;
      await cli.client.json('DELETE', `/networks/${encodeURIComponent(n)}`);
      cli.out(n + '\n');
    } catch (e) {
      if (opts.force && e instanceof ApiError && e.status === 404) continue;
      if (!(e instanceof ApiError)) throw e;
      cli.err(e.display + '\n');
      failed = true;
    }
  }
  if (failed) cli.exitCode = 1;
}

export async function inspect(cli: Cli, names: string[], opts: { format?: string; verbose?: boolean }): Promise<void> {
  const found: DockerNetwork[] = [];
  const errors: string[] = [];
  for (const n of names) {
    try {
      found.push(
        await cli.client.get<DockerNetwork>(`/networks/${encodeURIComponent(n)}`, { verbose: Boolean(opts.verbose) }),
      );
    } catch (e) {
      // docker 28 prints the daemon's words ("Error response from daemon: network x not found").
      if (e instanceof ApiError && e.status === 404) errors.push(e.display);
      else throw e;
    }
  }
  if (opts.format) cli.out(formatEach(found, opts.format));
  else cli.out(inspectJson(found));
  for (const e of errors) cli.err(e + '\n');
  if (errors.length) cli.exitCode = 1;
}

export async function connect(
  cli: Cli,
  network: string,
  container: string,
  o: {
    alias?: string[];
    ip?: string;
    ip6?: string;
    link?: string[];
    linkLocalIp?: string[];
    driverOpt?: string[];
    gwPriority?: string;
  },
): Promise<void> {
  const ipam: Record<string, unknown> = {};
  if (o.ip) ipam.IPv4Address = o.ip;
  if (o.ip6) ipam.IPv6Address = o.ip6;
  if (o.linkLocalIp?.length) ipam.LinkLocalIPs = o.linkLocalIp;
  const endpoint: Record<string, unknown> = {
    IPAMConfig: ipam,
    Links: o.link ?? null,
    Aliases: o.alias ?? null,
    DriverOpts: o.driverOpt ? keyValues(o.driverOpt) : null,
  };
  if (o.gwPriority !== undefined) endpoint.GwPriority = Number(o.gwPriority);
  await cli.client.post(`/networks/${encodeURIComponent(network)}/connect`, {
    Container: container,
    EndpointConfig: endpoint,
  });
}

export async function disconnect(cli: Cli, network: string, container: string, o: { force?: boolean }): Promise<void> {
  await cli.client.post(`/networks/${encodeURIComponent(network)}/disconnect`, {
    Container: container,
    Force: Boolean(o.force),
  });
}

export async function prune(cli: Cli, o: { force?: boolean; filter?: string[] }): Promise<void> {
  if (!o.force) {
    const ok = await confirm(
      cli,
      'WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ',
    );
    if (!ok) return;
  }
  const res = await cli.client.post<{ NetworksDeleted: string[] | null }>('/networks/prune', undefined, {
    filters: JSON.stringify(filtersFrom(o.filter)),
  });
  let output = '';
  if (res.NetworksDeleted?.length) output = 'Deleted Networks:\n' + res.NetworksDeleted.map((n) => n + '\n').join('');
  cli.out(output + '\n');
}
