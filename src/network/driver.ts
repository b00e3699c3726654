/**
 * The one small driver interface every network driver implements (bridge,
 * host, none, overlay, macvlan, ipvlan, and remote plugins). It mirrors
 * Docker's remote network-driver protocol (/NetworkDriver.CreateNetwork,
 * .CreateEndpoint, .Join, .Leave, ...), so a remote plugin is just an adapter
 * that sends these calls as JSON over HTTP.
 *
 * Drivers never touch the store; the controller passes them what they need and
 * keeps what they return. Drivers make kernel objects only through src/kernel.
 */

import type { Store } from '../store/store.js';

export type DriverScope = 'local' | 'global' | 'swarm';

export interface IpamData {
  /** CIDR of the pool, e.g. 172.18.0.0/16. */
  pool: string;
  /** Gateway as CIDR, e.g. 172.18.0.1/16. */
  gateway?: string;
  auxAddresses: Record<string, string>;
}

export interface DriverNetwork {
  id: string;
  name: string;
  /** Driver options (com.docker.network.* and driver-specific -o). */
  options: Record<string, string>;
  internal: boolean;
  enableIPv6: boolean;
  ipv4: IpamData[];
  ipv6: IpamData[];
  /** Opaque state the driver returned from createNetwork, kept by the controller. */
  driverState?: Record<string, unknown>;
}

export interface DriverEndpoint {
  id: string;
  networkId: string;
  /** CIDRs, as the IPAM handed them out. */
  ipv4?: string;
  ipv6?: string;
  mac?: string;
  options: Record<string, string>;
}

export interface JoinRequest {
  endpoint: DriverEndpoint;
  network: DriverNetwork;
  /** Network namespace path of the sandbox. */
  netnsPath: string;
  /** Interface name inside the sandbox: eth0, eth1, ... */
  ifName: string;
  /** True when this endpoint gives the sandbox its default route. */
  defaultGateway: boolean;
}

export interface JoinInfo {
  ipv4Gateway?: string;
  ipv6Gateway?: string;
  /** Extra static routes inside the sandbox. */
  routes?: Array<{ destination: string; nextHop?: string }>;
  /** True when the driver does not want a default route via this network (internal). */
  disableGatewayService?: boolean;
  /** Opaque state kept by the controller and handed back on leave. */
  driverState?: Record<string, unknown>;
}

export interface ExposedPort {
  proto: 'tcp' | 'udp' | 'sctp';
  port: number;
}

export interface NetworkDriver {
  readonly name: string;
  readonly scope: DriverScope;
  /** Throws a CoveError (Docker's wording) when the kernel lacks what the driver needs. */
  checkSupported?(): Promise<void>;
  createNetwork(net: DriverNetwork): Promise<Record<string, unknown> | void>;
  deleteNetwork(net: DriverNetwork): Promise<void>;
  /**
   * Optional fast path of a network rm: takes the network out of service at once (firewall rules,
   * addresses, in-memory state) and leaves only slow kernel work (a bridge's `link del`, ~35 ms) for
   * deleteNetwork, which the controller then runs in the background and again after a restart until
   * it succeeds (the network's "doomed" record in the store). deleteNetwork must be idempotent.
   */
  retireNetwork?(net: DriverNetwork): Promise<void>;
  /** May fill in a MAC address; returns the endpoint as it will be used. */
  createEndpoint(net: DriverNetwork, ep: DriverEndpoint): Promise<DriverEndpoint>;
  deleteEndpoint(net: DriverNetwork, ep: DriverEndpoint): Promise<void>;
  /** Makes the interface inside the sandbox (veth, macvlan, ...). */
  join(req: JoinRequest): Promise<JoinInfo>;
  leave(req: JoinRequest & { joinState?: Record<string, unknown> }): Promise<void>;
  /** Published ports and other outside connectivity (bridge: nftables DNAT). */
  programExternalConnectivity?(net: DriverNetwork, ep: DriverEndpoint, ports: ResolvedPortBinding[]): Promise<void>;
  revokeExternalConnectivity?(net: DriverNetwork, ep: DriverEndpoint): Promise<void>;
  /** Daemon start: make sure the network's kernel objects exist, and drop leftovers. */
  restoreNetwork?(net: DriverNetwork, endpoints: DriverEndpoint[]): Promise<void>;

  // ---- swarm-scope drivers (overlay): called by the controller while this node is in a swarm

  /** This node's identity in the cluster (after swarm init/join); undefined after leave. */
  setCluster?(c: ClusterInfo | undefined): void;
  /**
   * The endpoints of a swarm network on OTHER nodes, complete (not a delta):
   * the driver makes its kernel state match when the network is active on
   * this host and ignores it otherwise. Called after a join here (before
   * the API answers) and on every change under the cluster store's
   * endpoints/<network id>/ prefix.
   */
  syncPeers?(net: DriverNetwork, peers: PeerEndpoint[]): Promise<void>;
  /** Network options as this host has them (overlay: the effective MTU), merged into inspect. */
  localOptions?(net: DriverNetwork): Record<string, string>;
}

export interface ClusterInfo {
  nodeId: string;
  /** Underlay address of this node (--data-path-addr, else --advertise-addr). */
  dataPathAddr: string;
  /** The cluster store and role (for drivers that keep node keys there: encrypted overlays). */
  store?: Store;
  isManager?: () => boolean;
}

/** An endpoint of a swarm network on another node, as the cluster store has it. */
export interface PeerEndpoint {
  id: string;
  networkId: string;
  nodeId: string;
  /** The node's underlay (data path) address. */
  underlay: string;
  mac: string;
  ipv4?: string;
  ipv6?: string;
}

/** A published port after the controller resolved ephemeral host ports. */
export interface ResolvedPortBinding {
  proto: 'tcp' | 'udp' | 'sctp';
  containerIp: string;
  containerPort: number;
  containerPortEnd: number;
  hostIp: string;
  hostPort: number;
  hostPortEnd: number;
}
