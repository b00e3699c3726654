/**
 * From a container's Docker-shaped config to what the network layer needs:
 * the SandboxSpec (networks to join, published ports, DNS, extra hosts).
 */
import { tryParseIp } from '../../network/ipam/ip.js';
import { InvalidParameter } from '../../common/errors.js';
import type {
  DockerEndpointSettings,
  DockerPortMap,
  EndpointRequest,
  PortBinding,
  SandboxSpec,
} from '../../network/types.js';
import type { DockerContainerConfig, DockerHostConfig } from '../types.js';

type Proto = 'tcp' | 'udp' | 'sctp';

/** "80/tcp", "53/udp", "8000-8010" (tcp by default). */
export function parsePortKey(key: string): { start: number; end: number; protocol: Proto } {
  const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i.exec(key.trim());
  if (!m) throw new InvalidParameter(`invalid port specification: "${key}"`);
  const start = Number(m[1]);
  const end = m[2] ? Number(m[2]) : start;
  if (start < 1 || end > 65535 || end < start) throw new InvalidParameter(`invalid port specification: "${key}"`);
  return { start, end, protocol: (m[3] ?? 'tcp').toLowerCase() as Proto };
}

function parseHostPort(hp: string | undefined): { start: number; end: number } {
  if (!hp) return { start: 0, end: 0 };
  const m = /^(\d+)(?:-(\d+))?$/.exec(hp.trim());
  if (!m) throw new InvalidParameter(`invalid hostPort: ${hp}`);
  const start = Number(m[1]);
  const end = m[2] ? Number(m[2]) : start;
  if (start > 65535 || end > 65535 || end < start) throw new InvalidParameter(`invalid hostPort: ${hp}`);
  return { start, end };
}

export function portBindings(map: DockerPortMap | null | undefined): PortBinding[] {
  const out: PortBinding[] = [];
  for (const [key, bindings] of Object.entries(map ?? {})) {
    const c = parsePortKey(key);
    for (const b of bindings ?? [{}]) {
      const h = parseHostPort(b.HostPort);
      // Checked here, at create: the port reservation at start would refuse it only then.
      if (b.HostIp && !tryParseIp(b.HostIp)) throw new InvalidParameter(`invalid IP address: ${b.HostIp}`);
      const cLen = c.end - c.start;
      if (h.start !== 0 && h.end - h.start !== cLen && !(cLen === 0)) {
        throw new InvalidParameter(`invalid ranges specified for container and host Ports: ${key} and ${b.HostPort}`);
      }
      out.push({
        containerPort: c.start,
        containerPortEnd: c.end,
        protocol: c.protocol,
        hostIp: b.HostIp ?? '',
        hostPort: h.start,
        hostPortEnd: cLen === 0 ? h.end : h.start === 0 ? 0 : h.start + cLen,
      });
    }
  }
  return out;
}

export function exposedPorts(
  ports: Record<string, object> | null | undefined,
): Array<{ port: number; protocol: Proto }> {
  const out: Array<{ port: number; protocol: Proto }> = [];
  for (const key of Object.keys(ports ?? {})) {
    const p = parsePortKey(key);
    for (let port = p.start; port <= p.end; port++) out.push({ port, protocol: p.protocol });
  }
  return out;
}

/** Docker's NetworkMode with "default" and "" meaning the default bridge. */
export function normalizeNetworkMode(mode: string | undefined): string {
  return !mode || mode === 'default' ? 'bridge' : mode;
}

/** Modes that are not a network to join. */
export function isSpecialMode(mode: string): boolean {
  return mode === 'host' || mode === 'none' || mode.startsWith('container:');
}

export function endpointRequest(network: string, s: DockerEndpointSettings | undefined): EndpointRequest {
  const r: EndpointRequest = { network };
  if (s?.Aliases?.length) r.aliases = [...s.Aliases];
  if (s?.IPAMConfig?.IPv4Address) r.ipv4Address = s.IPAMConfig.IPv4Address;
  if (s?.IPAMConfig?.IPv6Address) r.ipv6Address = s.IPAMConfig.IPv6Address;
  if (s?.MacAddress) r.macAddress = s.MacAddress;
  if (s?.DriverOpts && Object.keys(s.DriverOpts).length) r.driverOpts = { ...s.DriverOpts };
  if (s?.GwPriority) r.gwPriority = s.GwPriority;
  if (s?.Links?.length) r.links = [...s.Links];
  if (s?.IPAMConfig?.LinkLocalIPs?.length) r.linkLocalIPs = [...s.IPAMConfig.LinkLocalIPs];
  return r;
}

/** The networks a container joins, NetworkMode's first (it gives the default route). */
export function endpointRequests(
  mode: string,
  endpoints: Record<string, DockerEndpointSettings> | null | undefined,
): EndpointRequest[] {
  if (isSpecialMode(mode)) return [];
  // Only what the container is connected to: a `network disconnect` of the
  // NetworkMode network while stopped leaves it out at the next start.
  const eps = endpoints ?? {};
  const out: EndpointRequest[] = eps[mode] ? [endpointRequest(mode, eps[mode])] : [];
  for (const [name, s] of Object.entries(eps)) if (name !== mode) out.push(endpointRequest(name, s));
  return out;
}

export function sandboxSpec(o: {
  id: string;
  name: string;
  config: DockerContainerConfig;
  hostConfig: DockerHostConfig;
  endpoints: Record<string, DockerEndpointSettings> | null | undefined;
  dir: string;
  /** NetworkMode with container:<name> already resolved to container:<id>. */
  networkMode: string;
}): SandboxSpec {
  const hc = o.hostConfig;
  return {
    containerId: o.id,
    containerName: o.name.replace(/^\//, ''),
    hostname: o.config.Hostname || o.id.slice(0, 12),
    domainname: o.config.Domainname ?? '',
    networkMode: o.networkMode,
    endpoints: endpointRequests(o.networkMode, o.endpoints),
    portBindings: o.networkMode === 'host' ? [] : portBindings(hc.PortBindings),
    exposedPorts: exposedPorts(o.config.ExposedPorts),
    publishAllPorts: !!hc.PublishAllPorts,
    dns: [...(hc.Dns ?? [])],
    dnsSearch: [...(hc.DnsSearch ?? [])],
    dnsOptions: [...(hc.DnsOptions ?? [])],
    extraHosts: [...(hc.ExtraHosts ?? [])],
    dir: o.dir,
    // A swarm service task (src/services labels it): may join swarm networks that are not --attachable.
    ...(o.config.Labels?.['com.docker.swarm.task.id'] !== undefined ? { swarmTask: true } : {}),
  };
}
