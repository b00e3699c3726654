/**
 * The network controller's shared state: its options, the store collections (networks, endpoints, sandboxes,
 * doomed networks), the allocators, locks, port mapper, resolver and DNS server, the swarm it is in, and the
 * small lookups every part uses (a network by ID or name, a sandbox's networks, a driver's view of a record).
 * The operations live in the parts beside it (networks, addresses, names, sandboxes, endpoints, swarm,
 * restore); src/network/controller.ts puts them together behind one NetworkController.
 *
 * Every multi-step operation is all-or-nothing: each step that made something pushes its undo, and a failure
 * runs the undos in reverse. Records are written before kernel objects are made ("creating"), so a daemon
 * that dies half-way finds and removes the leftovers at restore().
 */
import { Collection, type Store } from '../../store/store.js';
import type { DaemonConfig } from '../../common/config.js';
import type { EventBus } from '../../common/events.js';
import type { Logger } from '../../common/log.js';
import { NotFound, InvalidParameter } from '../../common/errors.js';
import type { Membership } from '../../cluster/membership.js';
import type { KernelOps } from '../../kernel/ops.js';
import { ClusterKeys, ScopedNetworks } from '../swarm-scope.js';
import type { SandboxHandle } from '../types.js';
import type { DriverEndpoint, DriverNetwork, NetworkDriver } from '../driver.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord } from '../records.js';
import { DriverRegistry, type DriverContext } from '../drivers/registry.js';
import { AddressAllocator } from '../ipam/allocator.js';
import type { SwarmAddressClaims } from '../ipam/claims.js';
import { IpamPlugins } from '../ipam/remote.js';
import { parseCidr } from '../ipam/ip.js';
import { KeyedMutex } from '../mutex.js';
import { PortMapper } from '../ports.js';
import { Resolver } from '../dns/resolver.js';
import { DnsServer, type SocketSource } from '../dns/server.js';
import { sandboxFilePaths } from '../sandbox-files.js';
import type { NetworkOps } from './networks.js';
import type { AddressOps } from './addresses.js';
import type { NameOps } from './names.js';
import type { SandboxOps } from './sandboxes.js';
import type { EndpointOps } from './endpoints.js';
import type { SwarmOps } from './swarm.js';
import type { RestoreOps } from './restore.js';

/** The ingress routing mesh's sandbox (Docker's `ingress-sbox`), made by src/services/ingress.ts on every swarm node. */
export const INGRESS_SANDBOX = 'ingress-sbox';

/** What the controller needs from the kernel for sandboxes (src/kernel by default; fakes in unit tests). */
export interface SandboxKernel {
  createNetns(path: string, disableIpv6: boolean): Promise<void>;
  deleteNetns(path: string): Promise<void>;
  /** Brings lo up inside the netns (127.0.0.11 needs it). */
  loopbackUp(path: string): Promise<void>;
  enableIpv6(path: string): Promise<void>;
  /** Points the netns's default route(s) at a gateway through an interface (gateway failover on disconnect). */
  setDefaultRoute(path: string, ifName: string, gateways: { v4?: string; v6?: string }): Promise<void>;
  /** Adds addresses to an interface inside the netns (EndpointIPAMConfig.LinkLocalIPs). */
  addAddresses(path: string, ifName: string, addrs: Array<{ address: string; prefix: number }>): Promise<void>;
  /** Sockets of the embedded DNS inside the netns: an fd, or (tests) an address to bind here. */
  udpSocket(path: string, ip: string, port: number): SocketSource;
  tcpSocket(path: string, ip: string, port: number): SocketSource;
}

export interface NetworkControllerOptions {
  config: DaemonConfig;
  store: Store;
  events: EventBus;
  log: Logger;
  /** Drivers to use; when absent the built-in drivers are loaded at init(). */
  drivers?: NetworkDriver[] | DriverRegistry;
  kernel?: SandboxKernel;
  /** Host files read for resolv.conf/hosts (tests point them elsewhere). */
  hostResolvConf?: string;
  hostHosts?: string;
  /** Ephemeral host port range (Docker: 32768-60999). */
  portRange?: [number, number];
  /** Host address for bindings that name none (dockerd's --ip; default 0.0.0.0). */
  portDefaultHostIp?: string;
  /**
   * Also hold [::]:port (relayed to the container, like docker-proxy) when a
   * binding names no address, so `docker port` shows `[::]:8080` as Docker
   * 20.10+ does. Off by default: the seed's tests expect only 0.0.0.0.
   */
  portDualStack?: boolean;
  /** Where the embedded DNS listens inside sandboxes (127.0.0.11:53). */
  dnsListen?: { ip: string; port: number };
  /** Typed kernel operations handed to drivers that build their own namespaces (overlay); default: the real kernel. */
  kernelOps?: KernelOps;
}

/** The src/kernel implementation, loaded on first use (it loads a native addon). */
async function defaultKernel(): Promise<SandboxKernel> {
  const netns = await import('../../kernel/netns.js');
  const rtnl = await import('../../kernel/rtnl.js');
  return {
    createNetns: (path, disableIpv6) => netns.createNetns(path, disableIpv6 ? { sysctls: netns.DISABLE_IPV6 } : {}),
    deleteNetns: (path) => netns.deleteNetns(path),
    // rtnetlink from a throwaway thread inside the netns: no process spawned (~0.1 ms against ~10 ms for nsenter+ip).
    loopbackUp: (path) => rtnl.configureInNetns(path, [{ op: 'up', dev: 'lo' }]),
    enableIpv6: (path) =>
      netns.writeSysctls(path, { 'net.ipv6.conf.all.disable_ipv6': '0', 'net.ipv6.conf.default.disable_ipv6': '0' }),
    setDefaultRoute: (path, ifName, gws) => {
      const ops: Array<{ op: 'route'; dev: string; via: string }> = [];
      if (gws.v4) ops.push({ op: 'route', dev: ifName, via: gws.v4 });
      if (gws.v6) ops.push({ op: 'route', dev: ifName, via: gws.v6 });
      return rtnl.configureInNetns(path, ops);
    },
    addAddresses: (path, ifName, addrs) =>
      rtnl.configureInNetns(
        path,
        addrs.map((a) => ({ op: 'addr' as const, dev: ifName, address: a.address, prefix: a.prefix })),
      ),
    udpSocket: (path, addr, port) => netns.udpSocketInNetns(path, addr, port),
    tcpSocket: (path, addr, port) => netns.tcpListenSocketInNetns(path, addr, port),
  };
}

export type Undo = () => Promise<void> | void;

export async function runUndos(undos: Undo[], log: Logger): Promise<void> {
  for (const u of undos.reverse()) {
    try {
      await u();
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'undo step failed');
    }
  }
}

/** The lock every network create holds (names, subnets and VNIs are checked and taken under it). */
export const NETWORK_LOCK = 'networks';

/** This node's swarm, while it is in one (attachCluster .. detachCluster). */
export interface ClusterState {
  m: Membership;
  keys: ClusterKeys;
  /** Addresses of swarm networks, claimed in the cluster store (ipam/node/<node>/, ipam/addr/: ipam/claims.ts). */
  ipam: SwarmAddressClaims;
  stops: Array<() => void>;
  /** Per swarm network: a sync (peers + names) is running / another is due. */
  syncing: Map<string, Promise<void>>;
  again: Set<string>;
}

/** A removed network whose driver has kernel work left (store key network/doomed/<id>). */
export interface DoomedNetwork {
  driver: string;
  net: DriverNetwork;
}

export class ControllerCore {
  readonly config: DaemonConfig;
  readonly store: Store;
  readonly events: EventBus;
  readonly log: Logger;
  readonly registry: DriverRegistry;
  readonly loadBuiltins: boolean;
  readonly networks: ScopedNetworks;
  cluster: ClusterState | undefined;
  readonly endpoints: Collection<EndpointRecord>;
  readonly sandboxes: Collection<SandboxRecord>;
  /** Removed networks whose driver still has kernel work to finish (a bridge's deletion): done in the background, again after a crash. */
  readonly doomed: Collection<DoomedNetwork>;
  readonly doomedWork = new Set<Promise<void>>();
  readonly ipam: AddressAllocator;
  /** Third-party IPAM plugins (--ipam-driver NAME), activated on first use. */
  readonly ipamPlugins = new IpamPlugins();
  readonly mutex = new KeyedMutex();
  readonly ports: PortMapper;
  readonly resolver = new Resolver();
  dns: DnsServer | undefined;
  kernel: SandboxKernel | undefined;
  ready: Promise<void> | undefined;
  closed = false;

  // The parts of the controller (src/network/controller/*.ts), wired by NetworkController's constructor.
  networkOps!: NetworkOps;
  addressOps!: AddressOps;
  nameOps!: NameOps;
  sandboxOps!: SandboxOps;
  endpointOps!: EndpointOps;
  swarmOps!: SwarmOps;
  restoreOps!: RestoreOps;

  constructor(readonly opts: NetworkControllerOptions) {
    this.config = opts.config;
    this.store = opts.store;
    this.events = opts.events;
    this.log = opts.log;
    this.loadBuiltins = opts.drivers === undefined;
    this.registry = opts.drivers instanceof DriverRegistry ? opts.drivers : new DriverRegistry(opts.drivers ?? []);
    this.networks = new ScopedNetworks(new Collection<NetworkRecord>(opts.store, 'network/networks'));
    this.endpoints = new Collection<EndpointRecord>(opts.store, 'network/endpoints');
    this.sandboxes = new Collection<SandboxRecord>(opts.store, 'network/sandboxes');
    this.doomed = new Collection<DoomedNetwork>(opts.store, 'network/doomed');
    this.ipam = new AddressAllocator(opts.store, 'network/ipam');
    this.ports = new PortMapper(
      opts.log,
      opts.portRange,
      opts.portDualStack ?? false,
      opts.portDefaultHostIp ?? '0.0.0.0',
    );
    this.kernel = opts.kernel;
  }

  get drivers(): DriverRegistry {
    return this.registry;
  }

  /** Loads drivers, makes the predefined networks (first start) and their kernel objects. Idempotent. */
  init(): Promise<void> {
    this.ready ??= this.restoreOps.start().catch((e) => {
      this.ready = undefined;
      throw e;
    });
    return this.ready;
  }

  async getKernel(): Promise<SandboxKernel> {
    this.kernel ??= await defaultKernel();
    return this.kernel;
  }

  async getDns(): Promise<DnsServer> {
    if (!this.dns) {
      const k = await this.getKernel();
      this.dns = new DnsServer({
        resolver: this.resolver,
        sockets: { udp: (p, ip, port) => k.udpSocket(p, ip, port), tcp: (p, ip, port) => k.tcpSocket(p, ip, port) },
        log: this.log,
        ...(this.opts.dnsListen ? { listenIp: this.opts.dnsListen.ip, listenPort: this.opts.dnsListen.port } : {}),
      });
    }
    return this.dns;
  }

  /** The DNS server (for tests and stats); undefined until a sandbox needed it. */
  get dnsServer(): DnsServer | undefined {
    return this.dns;
  }

  driverContext(): DriverContext {
    return { config: this.config, log: this.log, ...(this.opts.kernelOps ? { kernel: this.opts.kernelOps } : {}) };
  }

  driverOf(n: NetworkRecord): NetworkDriver | undefined {
    return this.registry.has(n.driver) ? this.registry.get(n.driver) : undefined;
  }

  driverNetwork(n: NetworkRecord): DriverNetwork {
    const ipam = (fam: 4 | 6) =>
      n.subnets
        .filter((s) => s.family === fam)
        .map((s) => {
          const prefix = parseCidr(s.subnet).prefix;
          const d: DriverNetwork['ipv4'][number] = { pool: s.subnet, auxAddresses: { ...s.aux } };
          if (s.gateway) d.gateway = `${s.gateway}/${prefix}`;
          return d;
        });
    const out: DriverNetwork = {
      id: n.id,
      name: n.name,
      options: { ...n.options },
      internal: n.internal,
      enableIPv6: n.enableIPv6,
      ipv4: ipam(4),
      ipv6: ipam(6),
    };
    if (n.driverState) out.driverState = n.driverState;
    return out;
  }

  driverEndpoint(ep: EndpointRecord): DriverEndpoint {
    const d: DriverEndpoint = { id: ep.id, networkId: ep.networkId, options: { ...ep.options } };
    if (ep.ipv4) d.ipv4 = ep.ipv4;
    if (ep.ipv6) d.ipv6 = ep.ipv6;
    if (ep.mac) d.mac = ep.mac;
    return d;
  }

  /** Exact ID, exact name, then unique ID prefix (moby findUniqueNetwork). */
  async findNetwork(term: string): Promise<NetworkRecord> {
    const all = (await this.networks.list()).map((n) => n.value);
    const byId = all.find((n) => n.id === term);
    if (byId) return byId;
    const byName = all.filter((n) => n.name === term);
    if (byName.length === 1) return byName[0]!;
    if (byName.length > 1)
      throw new InvalidParameter(`network ${term} is ambiguous (${byName.length} matches found based on name)`);
    const byPrefix = term.length > 0 ? all.filter((n) => n.id.startsWith(term.toLowerCase())) : [];
    if (byPrefix.length === 1) return byPrefix[0]!;
    if (byPrefix.length > 1)
      throw new InvalidParameter(`network ${term} is ambiguous (${byPrefix.length} matches found based on ID prefix)`);
    throw new NotFound(`network ${term} not found`);
  }

  /** The network's endpoints, oldest first: shared records (Collection.listShared), not to be modified. */
  async endpointsOf(networkId: string): Promise<EndpointRecord[]> {
    return (await this.endpoints.listShared())
      .map((e) => e.value)
      .filter((e) => e.networkId === networkId)
      .sort((a, b) => a.created - b.created);
  }

  async sandboxNetworks(sb: SandboxRecord): Promise<Array<{ ep: EndpointRecord; net: NetworkRecord }>> {
    const out: Array<{ ep: EndpointRecord; net: NetworkRecord }> = [];
    for (const id of sb.endpoints) {
      const ep = (await this.endpoints.get(id))?.value;
      const net = ep ? (await this.networks.get(ep.networkId))?.value : undefined;
      if (ep && net) out.push({ ep, net });
    }
    return out;
  }

  async getSandbox(containerId: string): Promise<SandboxRecord | undefined> {
    return (await this.sandboxes.get(containerId))?.value;
  }

  handle(sb: SandboxRecord): SandboxHandle {
    const p = sandboxFilePaths(sb.dir);
    return { id: sb.id, containerId: sb.containerId, netnsPath: sb.netnsPath, ...p };
  }
}
