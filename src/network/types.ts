/**
 * Contracts of the network layer (the CNM), shared by the runtime (which asks
 * for sandboxes), the API (which serves Docker's JSON) and the drivers.
 * Docker-shaped types (PascalCase) are the Engine API's JSON, produced here so
 * the API layer stays thin.
 */

// ---------- Docker Engine API shapes (v1.51) ----------

export interface DockerIpamConfig {
  Subnet?: string;
  IPRange?: string;
  Gateway?: string;
  AuxiliaryAddresses?: Record<string, string>;
}

export interface DockerIpam {
  Driver?: string;
  Config?: DockerIpamConfig[];
  Options?: Record<string, string> | null;
}

/** POST /networks/create body. */
export interface DockerNetworkCreate {
  Name: string;
  Driver?: string;
  Scope?: string;
  Internal?: boolean;
  Attachable?: boolean;
  Ingress?: boolean;
  ConfigOnly?: boolean;
  ConfigFrom?: { Network?: string } | null;
  IPAM?: DockerIpam;
  EnableIPv4?: boolean;
  EnableIPv6?: boolean;
  Options?: Record<string, string>;
  Labels?: Record<string, string>;
  CheckDuplicate?: boolean;
}

export interface DockerNetworkContainer {
  Name: string;
  EndpointID: string;
  MacAddress: string;
  IPv4Address: string;
  IPv6Address: string;
}

/** GET /networks/{id} response. */
export interface DockerNetwork {
  Name: string;
  Id: string;
  Created: string;
  Scope: string;
  Driver: string;
  EnableIPv4: boolean;
  EnableIPv6: boolean;
  IPAM: { Driver: string; Options: Record<string, string> | null; Config: DockerIpamConfig[] };
  Internal: boolean;
  Attachable: boolean;
  Ingress: boolean;
  ConfigFrom: { Network: string };
  ConfigOnly: boolean;
  Containers: Record<string, DockerNetworkContainer>;
  Options: Record<string, string>;
  Labels: Record<string, string>;
  Peers?: Array<{ Name: string; IP: string }>;
}

/** EndpointSettings: request (connect/create) and response (inspect) alike. */
export interface DockerEndpointSettings {
  IPAMConfig?: { IPv4Address?: string; IPv6Address?: string; LinkLocalIPs?: string[] } | null;
  Links?: string[] | null;
  Aliases?: string[] | null;
  MacAddress?: string;
  DriverOpts?: Record<string, string> | null;
  GwPriority?: number;
  NetworkID?: string;
  EndpointID?: string;
  Gateway?: string;
  IPAddress?: string;
  IPPrefixLen?: number;
  IPv6Gateway?: string;
  GlobalIPv6Address?: string;
  GlobalIPv6PrefixLen?: number;
  DNSNames?: string[] | null;
}

export interface DockerPortBinding {
  HostIp?: string;
  HostPort?: string;
}
/** "80/tcp" -> bindings */
export type DockerPortMap = Record<string, DockerPortBinding[] | null>;

/** NetworkSettings of GET /containers/{id}/json. */
export interface DockerNetworkSettings {
  Bridge: string;
  SandboxID: string;
  SandboxKey: string;
  Ports: DockerPortMap;
  HairpinMode: boolean;
  LinkLocalIPv6Address: string;
  LinkLocalIPv6PrefixLen: number;
  SecondaryIPAddresses: null;
  SecondaryIPv6Addresses: null;
  EndpointID: string;
  Gateway: string;
  GlobalIPv6Address: string;
  GlobalIPv6PrefixLen: number;
  IPAddress: string;
  IPPrefixLen: number;
  IPv6Gateway: string;
  MacAddress: string;
  Networks: Record<string, DockerEndpointSettings>;
}

export type Filters = Record<string, string[]>;

// ---------- Sandboxes: what the runtime asks of the network layer ----------

export interface EndpointRequest {
  /** Network name, ID or unique ID prefix. */
  network: string;
  aliases?: string[];
  ipv4Address?: string;
  ipv6Address?: string;
  macAddress?: string;
  driverOpts?: Record<string, string>;
  gwPriority?: number;
  /** Legacy links on a user-defined network, as given ("other:alias" or "other"): alias resolves to other, for this container only. */
  links?: string[];
  /** EndpointIPAMConfig.LinkLocalIPs: extra addresses on the interface (/16 for IPv4, /64 for IPv6, as Docker). */
  linkLocalIPs?: string[];
}

export interface PortBinding {
  containerPort: number;
  /** Last port of a range; equals containerPort for a single port. */
  containerPortEnd: number;
  protocol: 'tcp' | 'udp' | 'sctp';
  /** '' or '0.0.0.0' = all IPv4 addresses, '::' = all IPv6. */
  hostIp: string;
  /** 0 = pick a free ephemeral port. */
  hostPort: number;
  hostPortEnd: number;
}

export interface SandboxSpec {
  containerId: string;
  /** Without the leading slash. */
  containerName: string;
  hostname: string;
  domainname: string;
  /** 'bridge' | 'none' | 'host' | 'default' | a network name or ID | 'container:<id>'. */
  networkMode: string;
  /** Every network to join, in order; the first gives the default route. */
  endpoints: EndpointRequest[];
  portBindings: PortBinding[];
  /** Ports from the image's EXPOSE, for -P (PublishAllPorts). */
  exposedPorts: Array<{ port: number; protocol: 'tcp' | 'udp' | 'sctp' }>;
  publishAllPorts: boolean;
  dns: string[];
  dnsSearch: string[];
  dnsOptions: string[];
  /** "host:ip" entries for /etc/hosts. */
  extraHosts: string[];
  /** Directory (the container's) where hosts, hostname and resolv.conf are written. */
  dir: string;
  /**
   * A swarm service task (src/services): may join swarm networks that are not
   * --attachable (standalone containers may not, as in Docker).
   */
  swarmTask?: boolean;
}

export interface SandboxOptions {
  /** See createSandbox; the sandbox goes on once what it returns settles (and must, or the sandbox waits). */
  onNamespace?: (h: SandboxHandle) => Promise<void> | void;
}

export interface SandboxHandle {
  /** The sandbox ID (64 hex). */
  id: string;
  containerId: string;
  /** Path of the network namespace to join; null for the host's namespace. */
  netnsPath: string | null;
  hostsPath: string;
  resolvConfPath: string;
  hostnamePath: string;
}

/**
 * The network controller: the entry point into the CNM (libnetwork's
 * NetworkController). Owns networks, endpoints and sandboxes; asks drivers to
 * make the kernel objects; keeps its state in the Store.
 */
export interface NetworkService {
  createNetwork(req: DockerNetworkCreate): Promise<{ Id: string; Warning: string }>;
  listNetworks(filters?: Filters): Promise<DockerNetwork[]>;
  inspectNetwork(idOrName: string, opts?: { verbose?: boolean; scope?: string }): Promise<DockerNetwork>;
  removeNetwork(idOrName: string): Promise<void>;
  pruneNetworks(filters?: Filters): Promise<string[]>;
  /** Resolves a name/ID/prefix to the network's ID and name, or throws NotFound. */
  resolveNetwork(idOrName: string): Promise<{ id: string; name: string; driver: string }>;

  /**
   * Creates the container's sandbox and joins every requested network (container start).
   * `onNamespace`, when given, is called as soon as the namespace and the name files exist (their
   * content is rewritten in place once the endpoints are there), before the endpoints are made: what
   * only needs those paths (the OCI runtime's create) can go ahead meanwhile, and the endpoints wait
   * until the promise it returns settles. It may not be called at all (no namespace of its own): then
   * the returned handle is the first word.
   */
  createSandbox(spec: SandboxSpec, opts?: SandboxOptions): Promise<SandboxHandle>;
  /** Leaves every network, releases addresses and ports, removes the namespace (container stop). */
  deleteSandbox(containerId: string): Promise<void>;
  /** Joins one more network (docker network connect of a running container). */
  connect(containerId: string, req: EndpointRequest): Promise<void>;
  /** Leaves one network (docker network disconnect). */
  disconnect(containerId: string, network: string, force: boolean): Promise<void>;
  /** The container's NetworkSettings as docker inspect shows them, or undefined when it has no sandbox. */
  networkSettings(containerId: string): Promise<DockerNetworkSettings | undefined>;
  /** Called when a container is renamed, so its DNS names follow. */
  renameContainer(containerId: string, newName: string): Promise<void>;

  /** Re-creates what the kernel lost and removes what the store no longer knows (daemon start). */
  restore(liveContainerIds: Set<string>): Promise<void>;
  close(): Promise<void>;
}
