/**
 * What the controller keeps in the Store, one JSON object per key:
 *   network/networks/<id>     NetworkRecord
 *   network/names/<name>      network ID (makes names unique with a txn)
 *   network/endpoints/<id>    EndpointRecord
 *   network/sandboxes/<cid>   SandboxRecord (keyed by container ID)
 *   network/ipam/<netId>/<i>  SubnetState (ipam/allocator.ts)
 */
import type { DockerIpamConfig, EndpointRequest, PortBinding } from './types.js';
import type { ResolvedPortBinding } from './driver.js';
import type { SubnetPlan } from './ipam/plan.js';
import type { RemotePool } from './ipam/remote.js';

export interface NetworkRecord {
  id: string;
  name: string;
  /** RFC 3339 with nanoseconds, as Docker prints it. */
  created: string;
  driver: string;
  scope: 'local' | 'global' | 'swarm';
  internal: boolean;
  attachable: boolean;
  ingress: boolean;
  configOnly: boolean;
  configFrom: string;
  enableIPv4: boolean;
  enableIPv6: boolean;
  ipamDriver: string;
  ipamOptions: Record<string, string> | null;
  /** IPAM.Config as inspect shows it. */
  ipamConfig: DockerIpamConfig[];
  /** The subnets actually in use (user-given or picked from the default pools). */
  subnets: SubnetPlan[];
  options: Record<string, string>;
  labels: Record<string, string>;
  /** bridge, host and none: made by the daemon, cannot be removed. */
  predefined: boolean;
  /** True for the default bridge ("bridge"). */
  defaultBridge: boolean;
  driverState?: Record<string, unknown>;
  /** Pools held from a third-party IPAM plugin (ipamDriver), released with the network. */
  ipamPools?: RemotePool[];
}

export interface EndpointRecord {
  id: string;
  /** Endpoint name = container name (without slash). */
  name: string;
  networkId: string;
  containerId: string;
  sandboxId: string;
  ifName: string;
  /** CIDRs as handed out, e.g. 172.18.0.2/16. */
  ipv4?: string;
  ipv6?: string;
  gatewayV4?: string;
  gatewayV6?: string;
  mac?: string;
  aliases: string[];
  /** What the user asked for (EndpointSettings.IPAMConfig). */
  request: EndpointRequest;
  options: Record<string, string>;
  /** Gives the sandbox its default route (and carries the published ports). */
  defaultGateway: boolean;
  joinState?: Record<string, unknown>;
  /** Published ports programmed on this endpoint. */
  ports: ResolvedPortBinding[];
  /** Progress, so a restart can undo a half-made endpoint. */
  state: 'creating' | 'ready';
  created: number;
}

export interface SandboxRecord {
  id: string;
  containerId: string;
  containerName: string;
  hostname: string;
  domainname: string;
  networkMode: string;
  /** null = the host's namespace. */
  netnsPath: string | null;
  dir: string;
  dns: string[];
  dnsSearch: string[];
  dnsOptions: string[];
  extraHosts: string[];
  portBindings: PortBinding[];
  exposedPorts: Array<{ port: number; protocol: 'tcp' | 'udp' | 'sctp' }>;
  publishAllPorts: boolean;
  /** Endpoint IDs in join order (eth0 first). */
  endpoints: string[];
  /** Host ports picked for hostPort 0 / -P, kept so a reconnect publishes the same ports. */
  pickedPorts?: Record<string, number>;
  /** A swarm service task (may join non-attachable swarm networks). */
  swarmTask?: boolean;
}
