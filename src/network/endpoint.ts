/**
 * Endpoints as Docker shows them: EndpointSettings per network and the
 * container's NetworkSettings (with the deprecated top-level fields filled
 * from the network of the container's NetworkMode, as moby does for API <= 1.51).
 */
import { shortId } from '../common/ids.js';
import type { DockerEndpointSettings, DockerNetworkSettings, DockerPortMap } from './types.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord } from './records.js';
import { hasEmbeddedDns } from './network.js';
import { InvalidParameter } from '../common/errors.js';
import { tryParseIp } from './ipam/ip.js';

function splitCidr(cidr: string | undefined): { ip: string; prefix: number } {
  if (!cidr) return { ip: '', prefix: 0 };
  const [ip, p] = cidr.split('/');
  return { ip: ip ?? '', prefix: Number(p ?? 0) };
}

/** DNS names of an endpoint: container name, short ID, aliases (user-defined networks only). */
export function dnsNames(ep: Pick<EndpointRecord, 'name' | 'containerId' | 'aliases'>): string[] {
  return [...new Set([ep.name, shortId(ep.containerId), ...ep.aliases])];
}

export function endpointSettings(ep: EndpointRecord, net: NetworkRecord): DockerEndpointSettings {
  const v4 = splitCidr(ep.ipv4);
  const v6 = splitCidr(ep.ipv6);
  // network.EndpointIPAMConfig marshals its fields with omitempty.
  const ll = ep.request.linkLocalIPs ?? [];
  const ipam =
    ep.request.ipv4Address || ep.request.ipv6Address || ll.length
      ? {
          ...(ep.request.ipv4Address ? { IPv4Address: ep.request.ipv4Address } : {}),
          ...(ep.request.ipv6Address ? { IPv6Address: ep.request.ipv6Address } : {}),
          ...(ll.length ? { LinkLocalIPs: [...ll] } : {}),
        }
      : null;
  return {
    IPAMConfig: ipam,
    Links: ep.request.links?.length ? [...ep.request.links] : null,
    Aliases: ep.aliases.length ? [...ep.aliases] : null,
    MacAddress: ep.mac ?? '',
    DriverOpts: Object.keys(ep.options).length ? { ...ep.options } : null,
    GwPriority: ep.request.gwPriority ?? 0,
    NetworkID: net.id,
    EndpointID: ep.id,
    Gateway: ep.gatewayV4 ?? '',
    IPAddress: v4.ip,
    IPPrefixLen: v4.prefix,
    IPv6Gateway: ep.gatewayV6 ?? '',
    GlobalIPv6Address: v6.ip,
    GlobalIPv6PrefixLen: v6.prefix,
    DNSNames: hasEmbeddedDns(net) ? dnsNames(ep) : null,
  };
}

export function portMap(sb: SandboxRecord, eps: EndpointRecord[]): DockerPortMap {
  const ports: DockerPortMap = {};
  for (const e of sb.exposedPorts) ports[`${e.port}/${e.protocol}`] = null;
  for (const b of sb.portBindings) {
    for (let p = b.containerPort; p <= b.containerPortEnd; p++) ports[`${p}/${b.protocol}`] ??= null;
  }
  for (const ep of eps) {
    for (const b of ep.ports) {
      for (let i = 0; i <= b.containerPortEnd - b.containerPort; i++) {
        const key = `${b.containerPort + i}/${b.proto}`;
        const list = ports[key] ?? [];
        list.push({ HostIp: b.hostIp, HostPort: String(b.hostPort + i) });
        ports[key] = list;
      }
    }
  }
  return ports;
}

export function networkSettings(
  sb: SandboxRecord,
  eps: EndpointRecord[],
  nets: Map<string, NetworkRecord>,
): DockerNetworkSettings {
  const networks: Record<string, DockerEndpointSettings> = {};
  for (const ep of eps) {
    const n = nets.get(ep.networkId);
    if (n) networks[n.name] = endpointSettings(ep, n);
  }
  const modeNet = sb.networkMode === 'default' ? 'bridge' : sb.networkMode;
  // The network named by NetworkMode (by name or ID), else the first endpoint's.
  const primary =
    eps.find((ep) => {
      const n = nets.get(ep.networkId);
      return !!n && (n.name === modeNet || n.id === modeNet || n.id.startsWith(modeNet));
    }) ?? eps[0];
  const p = primary ? networks[nets.get(primary.networkId)?.name ?? ''] : undefined;
  return {
    Bridge: '',
    SandboxID: sb.id,
    SandboxKey: sb.netnsPath ?? '',
    Ports: portMap(sb, eps),
    HairpinMode: false,
    LinkLocalIPv6Address: '',
    LinkLocalIPv6PrefixLen: 0,
    SecondaryIPAddresses: null,
    SecondaryIPv6Addresses: null,
    EndpointID: p?.EndpointID ?? '',
    Gateway: p?.Gateway ?? '',
    GlobalIPv6Address: p?.GlobalIPv6Address ?? '',
    GlobalIPv6PrefixLen: p?.GlobalIPv6PrefixLen ?? 0,
    IPAddress: p?.IPAddress ?? '',
    IPPrefixLen: p?.IPPrefixLen ?? 0,
    IPv6Gateway: p?.IPv6Gateway ?? '',
    MacAddress: p?.MacAddress ?? '',
    Networks: networks,
  };
}

/**
 * A legacy link, "name:alias" or "name" (docker's opts.ParseLink): the
 * target container's name and the alias it is known by to the linking one.
 */
export function parseLink(link: string): { name: string; alias: string } {
  const parts = link.split(':');
  const name = (parts[0] ?? '').replace(/^\//, '');
  const alias = (parts.length === 2 ? parts[1]! : name).replace(/^\//, '');
  if (parts.length > 2 || name === '' || alias === '') throw new InvalidParameter(`bad format for links: ${link}`);
  return { name, alias };
}

/** Checks what Docker checks of an EndpointSettings at create and connect: links and link-local addresses. */
export function checkEndpointSettings(s: DockerEndpointSettings | null | undefined): void {
  for (const l of s?.Links ?? []) parseLink(l);
  for (const ip of s?.IPAMConfig?.LinkLocalIPs ?? [])
    if (!tryParseIp(ip)) throw new InvalidParameter(`invalid link-local IP address: ${ip}`);
}
